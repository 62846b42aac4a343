-- The message protocol of persistent connections (SPEC §5, §8): one JSON object in, one
-- envelope out with its keys in SPEC order. Shared by the WebSocket and TCP transports;
-- `transport` is the connection type ("websocket" or "socket").

local core = require("gateway.core")
local inputs = require("gateway.inputs")
local processor = require("gateway.processor")
local handlers = require("gateway.handlers")
local session = require("gateway.session")

local M = {}

-- Top-level keys of a message that are not params.
local ENVELOPE_KEYS = { action = true, route = true, data = true, params = true, request_id = true,
  messageId = true }


local encode = processor.encode

-- The envelope text. `reply` = { action, route, idKey, id }; errors is nil on success.
local function envelope(rt, reply, status, errors, data)
  local errorsText, dataText = "[]", "null"
  if errors then errorsText = encode(rt, errors) end
  if not errors and data ~= nil then dataText = encode(rt, data) end
  if not errorsText or not dataText then
    status, errorsText, dataText = 500, encode(rt, { processor.INTERNAL }), "null"
  end
  local parts = {
    '{"errors":', errorsText, ',"data":', dataText,
    ',"action":', encode(rt, reply.action or "") or '""',
    ',"route":', encode(rt, reply.route or "") or '""',
    ',"status":', tostring(math.tointeger(status) or 500),
  }
  if reply.idKey then
    parts[#parts + 1] = ',"' .. reply.idKey .. '":' .. (encode(rt, reply.id) or "null")
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end
M.envelope = envelope

-- An error answered without running an action (bad message, over-long line).
local function reject(rt, ctx, transport, status, message, reply)
  core.log("info", nil, { "type", transport, "status", tostring(status), "error", message,
    "connection", tostring(ctx.connection.id) })
  return envelope(rt, reply or {}, status, { message })
end
M.reject = reject

-- The errors list of a failed action: input failures as one object of lists, a table
-- error as its fields, anything else as its message.
local function errorsOf(data)
  local e = data.error
  if e.inputs then return { inputs.messagesByField(e.inputs) } end
  if e.fields then return { e.fields } end
  return { e.message }
end

-- Decode one message: the message table, or nil, an error text and what of the
-- envelope (action, route, request id) could be read.
function M.parse(rt, text)
  local msg = processor.decode(rt, text)
  if type(msg) ~= "table" or text:match("^%s*%[") then return nil, "invalid JSON", {} end
  local null = rt.json.null
  local reply = {}
  if msg.request_id ~= nil then
    reply.idKey, reply.id = "request_id", msg.request_id
  elseif msg.messageId ~= nil then
    reply.idKey, reply.id = "messageId", msg.messageId
  end
  if type(msg.route) == "string" then reply.route = msg.route end
  if type(msg.action) ~= "string" or msg.action == "" then return nil, "action is required", reply end
  reply.action = msg.action
  local data = msg.data
  if data == nil or data == null then data = msg.params end
  if data == null then data = nil end
  if data ~= nil and (type(data) ~= "table" or #data > 0) then
    return nil, "data must be a JSON object", reply
  end
  local params = {}
  for k, v in pairs(msg) do
    if not ENVELOPE_KEYS[k] then params[k] = v end
  end
  for k, v in pairs(data or {}) do params[k] = v end
  return { action = msg.action, route = reply.route or "", params = params, reply = reply }
end

-- Run a parsed message's action on the connection and answer with the envelope. With a
-- route, a handler chooses the action and the route's params win over the message's.
function M.run(rt, ctx, transport, msg)
  ctx.reply = msg.reply
  ctx.transport = transport
  -- Sessions (SPEC §9): the built-in `authenticate` message, unless the project defines
  -- an action of that name (then theirs runs).
  if msg.action == "authenticate" and msg.route == "" and not rt.reg.versions.authenticate then
    return M.authenticate(rt, ctx, transport, msg)
  end
  ctx.route = msg.route -- ctx is the processor's `extra`
  local params = msg.params
  if msg.route == "" then
    params.action = msg.action -- as on the web (and in ActionHero)
  else
    local action, routeParams, pattern, named = handlers.resolve(rt.reg.handlerIndex, msg.route, msg.action)
    if not action then
      local message, status = routeParams, pattern
      return reject(rt, ctx, transport, status, message, msg.reply)
    end
    for k, v in pairs(routeParams) do params[k] = v end
    ctx.handlerAction, ctx.matchedRoute, ctx.routeParams = action, pattern, named
  end
  local data = processor.run(rt, ctx.connection, msg.action, params, ctx)
  return M.complete(rt, ctx, data)
end

-- {"action":"authenticate","data":{"token":...}}: restore connection.user (and
-- connection.session) from a session for the rest of the connection. 200 with {user},
-- 401 for an unknown or expired token (the connection keeps whatever user it had), 422
-- without a token, Redis's 503 when it cannot answer.
function M.authenticate(rt, ctx, transport, msg)
  local token = msg.params.token
  if token == nil or token == rt.json.null or token == "" then
    core.log("info", nil, { "action", "authenticate", "type", transport, "status", "422",
      "error", "token is required", "connection", tostring(ctx.connection.id) })
    return envelope(rt, msg.reply, 422, { { token = { inputs.REQUIRED_TEXT } } })
  end
  local user, err = rt.api.session.restore(token)
  if err then return reject(rt, ctx, transport, err.status, err.message, msg.reply) end
  if user == nil then return reject(rt, ctx, transport, 401, session.INVALID, msg.reply) end
  ctx.connection.user, ctx.connection.session = user, token
  core.log("info", nil, { "action", "authenticate", "type", transport, "status", "200",
    "connection", tostring(ctx.connection.id) })
  return envelope(rt, msg.reply, 200, nil, { user = user })
end

-- Log the action and render its envelope (nil when the action asked not to render).
function M.complete(rt, ctx, data)
  processor.log(rt, data, ctx.transport)
  if data.toRender == false then return nil end
  if data.error then return envelope(rt, ctx.reply, data.status, errorsOf(data)) end
  return envelope(rt, ctx.reply, data.status, nil, data.response)
end

-- One text message from a client.
function M.handle(rt, ctx, transport)
  local connection = ctx.connection
  connection.messageCount = connection.messageCount + 1
  if ctx.reject then return reject(rt, ctx, transport, ctx.reject.status, ctx.reject.message) end
  if ctx.binary then return reject(rt, ctx, transport, 400, "binary frames are not supported") end
  local msg, err, reply = M.parse(rt, ctx.text)
  if not msg then return reject(rt, ctx, transport, 400, err, reply) end
  return M.run(rt, ctx, transport, msg)
end

-- A message that will not complete by itself: timed out (status 504), stopped by the
-- CPU limit, or its client went away (status nil: bookkeeping only, nothing to send).
function M.fail(rt, ctx, status, message)
  local data = ctx.data
  if not data then
    if status then return envelope(rt, ctx.reply or {}, status, { message }) end
    return nil
  end
  if data._finished and not status then return nil end
  processor.abort(data, status or 499, message)
  local text = M.complete(rt, ctx, data)
  if status then return text end
  return nil
end

return M
