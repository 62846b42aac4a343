-- The message protocol of persistent connections (SPEC §5, §8): one JSON object in, one
-- envelope out with its keys in SPEC order. Shared by the WebSocket and TCP transports;
-- `transport` is the connection type ("websocket" or "socket").

local core = require("gateway.core")
local inputs = require("gateway.pipeline.inputs")
local processor = require("gateway.pipeline.processor")
local metrics = require("gateway.pipeline.metrics")
local handlers = require("gateway.registry.handlers")
local consumers = require("gateway.registry.consumers")
local permissions = require("gateway.pipeline.permissions")
local session = require("gateway.services.session")
local rooms = require("gateway.services.rooms")

local M = {}

-- Top-level keys of a message that are not params.
local ENVELOPE_KEYS = { action = true, route = true, data = true, params = true, request_id = true,
  messageId = true }

local ROOM_ACTIONS -- the built-in room messages: see M.room


local encode = processor.encode

-- The JSON text of a string: as it is between quotes when it holds only characters
-- the encoder writes as they are (it escapes '/'), else the encoder's.
local function stringJson(rt, s)
  if not s:find("[^%w_%.%-]") then return '"' .. s .. '"' end
  return encode(rt, s)
end

-- The JSON text of a request id: a whole number below 1e14 as its digits (what the
-- encoder's "%.14g" writes for it; 0 is left to it, for -0), anything else encoded.
local function idJson(rt, id)
  local t = type(id)
  if t == "string" then return stringJson(rt, id) end
  if t == "number" then
    local i = math.tointeger(id)
    if i and i ~= 0 and i > -1e14 and i < 1e14 then return tostring(i) end
  end
  return encode(rt, id)
end

local statusText = processor.statusText

-- The envelope text. `reply` = { action, route, idKey, id }; errors is nil on success.
-- One concatenation: no parts table, and the action, route and status texts are not
-- sent through the encoder when they need no escaping.
local function envelope(rt, reply, status, errors, data)
  local errorsText, dataText = "[]", "null"
  if errors then errorsText = encode(rt, errors) end
  if not errors and data ~= nil then dataText = encode(rt, data) end
  if not errorsText or not dataText then
    status, errorsText, dataText = 500, encode(rt, { processor.INTERNAL }), "null"
  end
  local action, route = reply.action or "", reply.route or ""
  local actionText = action == "" and '""' or stringJson(rt, action) or '""'
  local routeText = route == "" and '""' or stringJson(rt, route) or '""'
  if reply.idKey then
    return '{"errors":' .. errorsText .. ',"data":' .. dataText .. ',"action":' .. actionText
      .. ',"route":' .. routeText .. ',"status":' .. statusText(status, "500")
      .. ',"' .. reply.idKey .. '":' .. (idJson(rt, reply.id) or "null") .. "}"
  end
  return '{"errors":' .. errorsText .. ',"data":' .. dataText .. ',"action":' .. actionText
    .. ',"route":' .. routeText .. ',"status":' .. statusText(status, "500") .. "}"
end
M.envelope = envelope

-- An error answered without running an action (bad message, over-long line).
local function reject(rt, ctx, transport, status, message, reply)
  metrics.observe(transport, "", status)
  if core.log_enabled("info") then
    core.log("info", nil, { "type", transport, "status", status, "error", message,
      "connection", tostring(ctx.connection.id) })
  end
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

-- Decode one message into `r`: r.action, r.route (when a string), r.idKey and r.id
-- (what the envelope echoes), and r.params. Returns nil, or the error text, with what
-- of the envelope could be read on `r`. The transports pass their ctx as `r`: it is the
-- reply as well. Params are the `data` object itself (or `params`, its alias), with the
-- other top-level keys that are not the envelope's added where data has none.
local function parseInto(rt, r, text)
  local msg, why = processor.decode(rt, text)
  if why then return "invalid JSON: " .. why end
  if type(msg) ~= "table" then return "invalid JSON" end
  -- An array decodes to a table too: a non-empty one has [1], which an object (string
  -- keys) never has; an empty one is told from {} by its text.
  if (msg[1] ~= nil or next(msg) == nil) and text:match("^%s*%[") then return "invalid JSON" end
  local null = rt.json.null
  if msg.request_id ~= nil then
    r.idKey, r.id = "request_id", msg.request_id
  elseif msg.messageId ~= nil then
    r.idKey, r.id = "messageId", msg.messageId
  end
  if type(msg.route) == "string" then r.route = msg.route end
  if type(msg.action) ~= "string" or msg.action == "" then return "action is required" end
  r.action = msg.action
  local data = msg.data
  if data == nil or data == null then data = msg.params end
  if data == null then data = nil end
  if data ~= nil and (type(data) ~= "table" or #data > 0) then
    return "data must be a JSON object"
  end
  local params = data or {}
  for k, v in pairs(msg) do
    if not ENVELOPE_KEYS[k] and params[k] == nil then params[k] = v end
  end
  r.params = params
  return nil
end

-- Decode one message: the message table { action, route, params, reply }, or nil, an
-- error text and what of the envelope (action, route, request id) could be read.
function M.parse(rt, text)
  local r = {}
  local err = parseInto(rt, r, text)
  local reply = { action = r.action, route = r.route, idKey = r.idKey, id = r.id }
  if err then return nil, err, reply end
  return { action = r.action, route = r.route or "", params = r.params, reply = reply }
end

-- A message on a consumer's connection (see gateway.registry.consumers): the consumer's
-- permissions first, before routing; params are the message's data < the URL kwargs <
-- the route's named groups. Without a route: the consumer's own action (a generic or one
-- of its `actions`), else an action by name, else 405. With a route: the first of its
-- child handlers whose pattern matches, else the consumer's own action of that name
-- (the fallback), else 404. Returns the chosen handler action (nil for an action by
-- name), or nil, false and the envelope of a refusal.
local function routeConsumer(rt, ctx, transport, consumer, action, route, params)
  local connection = ctx.connection
  if #consumer.permissions > 0 then
    local message, status = permissions.check(rt.reg.permissions, consumer.permissions,
      { connection = connection, params = params, action = action, route = route })
    if message then return nil, false, reject(rt, ctx, transport, status, message, ctx) end
  end
  local kwargs = connection.kwargs
  if kwargs then
    for k, v in pairs(kwargs) do params[k] = v end
  end
  local own = consumer.actions[action]
  if route == "" then
    if own then
      ctx.routeParams = kwargs
      return own
    end
    if rt.reg.versions[action] then
      params.action = action
      return nil
    end
    return nil, false, reject(rt, ctx, transport, 405, 'Action "' .. action .. '" not allowed.', ctx)
  end
  local chosen, routeParams, pattern, named = handlers.resolve(consumer.children, route, action)
  if chosen then
    ctx.matchedRoute = pattern
  elseif pattern == 404 and own then
    -- No child takes the route: the consumer's own action, with the route's query.
    local query = route:match("%?(.*)$")
    chosen, named = own, {}
    routeParams = query and query ~= "" and core.parse_query(query) or named
  else
    return nil, false, reject(rt, ctx, transport, pattern, routeParams, ctx)
  end
  -- The route's query and groups win over the message's data; the URL kwargs give way
  -- only to a named group of the route, never to its query string.
  for k, v in pairs(routeParams) do
    if named[k] ~= nil or kwargs == nil or kwargs[k] == nil then params[k] = v end
  end
  -- Never scrubbed: the URL kwargs under the route's named groups.
  local kept = named
  if kwargs and next(kwargs) then
    kept = {}
    for k, v in pairs(kwargs) do kept[k] = v end
    for k, v in pairs(named) do kept[k] = v end
  end
  ctx.routeParams = kept
  return chosen
end

-- Run a parsed message's action on the connection and answer with the envelope. With a
-- route, a handler chooses the action and the route's params win over the message's.
-- `ctx` is the reply the envelope echoes (action, route, idKey, id) and the processor's
-- `extra` (route, handler action, matched route, data).
local function runParsed(rt, ctx, transport, action, route, params)
  ctx.transport = transport
  local connection = ctx.connection
  local consumer = consumers.of(rt.reg.consumers, connection)
  if consumer == false then
    local path = connection.rawConnection and connection.rawConnection.path or ""
    return reject(rt, ctx, transport, 404, 'consumer for "' .. path .. '" not found', ctx)
  end
  -- Sessions (SPEC §9): the built-in `authenticate` message, unless the project (or the
  -- consumer) defines an action of that name (then theirs runs).
  if action == "authenticate" and route == "" and not rt.reg.versions.authenticate
      and not (consumer and consumer.actions.authenticate) then
    return M.authenticate(rt, ctx, transport, { params = params, reply = ctx })
  end
  ctx.route = route
  -- Sessions end everywhere: a connection's session is checked on each message (a logout
  -- elsewhere or an expiry clears connection.user before middleware and permissions run).
  if connection.session ~= nil then
    local err = rt.api.session.check(connection)
    if err then return reject(rt, ctx, transport, err.status, err.message, ctx) end
  end
  -- Rooms (docs/realtime.md): the built-in roomAdd, roomLeave, roomView and say, unless
  -- the project (or the consumer) defines an action of that name.
  if ROOM_ACTIONS[action] and route == "" and not rt.reg.versions[action]
      and not (consumer and consumer.actions[action]) then
    return M.room(rt, ctx, transport, action, params)
  end
  if consumer then
    local chosen, ok, refusal = routeConsumer(rt, ctx, transport, consumer, action, route, params)
    if ok == false then return refusal end
    ctx.handlerAction = chosen
  elseif route == "" then
    params.action = action -- as on the web (and in ActionHero)
  else
    local chosen, routeParams, pattern, named = handlers.resolve(rt.reg.handlerIndex, route, action)
    if not chosen then
      local message, status = routeParams, pattern
      return reject(rt, ctx, transport, status, message, ctx)
    end
    for k, v in pairs(routeParams) do params[k] = v end
    ctx.handlerAction, ctx.matchedRoute, ctx.routeParams = chosen, pattern, named
  end
  local data = processor.run(rt, connection, action, params, ctx)
  return M.complete(rt, ctx, data)
end

-- Run a message { action, route, params, reply } (the TCP transport's action lines).
function M.run(rt, ctx, transport, msg)
  local reply = msg.reply or {}
  ctx.action, ctx.idKey, ctx.id = reply.action, reply.idKey, reply.id
  return runParsed(rt, ctx, transport, msg.action, msg.route or "", msg.params)
end

-- {"action":"authenticate","data":{"token":...}}: restore connection.user (and
-- connection.session) from a session for the rest of the connection. 200 with {user},
-- 401 for an unknown or expired token (the connection keeps whatever user it had), 422
-- without a token, Redis's 503 when it cannot answer.
function M.authenticate(rt, ctx, transport, msg)
  local token = msg.params.token
  if token == nil or token == rt.json.null or token == "" then
    metrics.observe(transport, "authenticate", 422)
    core.log("info", nil, { "action", "authenticate", "type", transport, "status", 422,
      "error", "token is required", "connection", tostring(ctx.connection.id) })
    return envelope(rt, msg.reply, 422, { { token = { inputs.REQUIRED_TEXT } } })
  end
  local user, err = rt.api.session.restore(token)
  if err then return reject(rt, ctx, transport, err.status, err.message, msg.reply) end
  if user == nil then return reject(rt, ctx, transport, 401, session.INVALID, msg.reply) end
  ctx.connection.user, ctx.connection.session = user, token
  metrics.observe(transport, "authenticate", 200)
  core.log("info", nil, { "action", "authenticate", "type", transport, "status", 200,
    "connection", tostring(ctx.connection.id) })
  return envelope(rt, msg.reply, 200, nil, { user = user })
end

-- The room messages: each function(rt, connection, room, params) -> status, data | message.
local svcOf = function(rt) return rt.rooms end
ROOM_ACTIONS = {
  roomAdd = function(rt, connection, room)
    local status, message = svcOf(rt).join(connection, room, rt.config.rooms.autoCreate ~= false)
    if status ~= 200 then return status, message end
    return 200, { room = room }
  end,
  roomLeave = function(rt, connection, room)
    local status, message = svcOf(rt).leave(connection, room, false)
    if status ~= 200 then return status, message end
    return 200, { room = room }
  end,
  -- Members only (as ActionHero's roomView): the member list holds connection ids.
  roomView = function(rt, connection, room)
    local svc = svcOf(rt)
    if not svc.isMember(connection, room) then
      if not svc.exists(room) then return 404, rooms.notFound(room) end
      return 403, rooms.notMember(room)
    end
    local view = svc.status(room)
    if not view then return 404, rooms.notFound(room) end
    return 200, view
  end,
  say = function(rt, connection, room, params)
    local message = params.message
    if message == nil then return 422, { message = { inputs.REQUIRED_TEXT } } end
    local status, why = svcOf(rt).say(connection, room, message)
    if status ~= 200 then return status, why end
    return 200, { room = room }
  end,
}
M.ROOM_ACTIONS = ROOM_ACTIONS

-- A room message: checked as an action is (shutting down, simultaneousActions), its room
-- name validated (422 as an input failure), then run; Redis's 503 when it cannot answer.
function M.room(rt, ctx, transport, action, params)
  local connection = ctx.connection
  local function answer(status, result)
    local fields = { "action", action, "type", transport, "status", status,
      "connection", tostring(connection.id) }
    metrics.observe(transport, action, status)
    if status == 200 then
      core.log("info", nil, fields)
      return envelope(rt, ctx, status, nil, result)
    end
    fields[#fields + 1] = "error"
    fields[#fields + 1] = type(result) == "string" and result or "invalid input"
    core.log("info", nil, fields)
    return envelope(rt, ctx, status, { result })
  end
  if rt.shuttingDown then return answer(503, "the server is shutting down") end
  if params.room == rt.json.null then params.room = nil end
  local problem = rt.rooms.checkName(params.room)
  if problem then
    if problem == rooms.REQUIRED then problem = inputs.REQUIRED_TEXT end
    return answer(422, { room = { problem } })
  end
  if connection.pendingActions >= rt.config.general.simultaneousActions then
    return answer(429, "you have too many pending requests")
  end
  connection.pendingActions = connection.pendingActions + 1
  ctx.roomSlot = true
  local ok, status, result = xpcall(ROOM_ACTIONS[action], function(e)
    if type(e) == "table" then return e end
    return debug.traceback(tostring(e), 2)
  end, rt, connection, params.room, params)
  if ctx.roomSlot then
    ctx.roomSlot = nil
    connection.pendingActions = connection.pendingActions - 1
  end
  if not ok then
    local e = status
    if type(e) == "table" and e.status then
      return answer(math.tointeger(tonumber(e.status)) or 500, tostring(e.message))
    end
    core.log("error", "room message failed", { "action", action, "error", tostring(e) })
    return answer(500, processor.INTERNAL)
  end
  return answer(status, result)
end

-- Log the action and render its envelope (nil when the action asked not to render).
-- The reply echoed is ctx.reply, or the ctx itself (see runParsed).
function M.complete(rt, ctx, data)
  if data.toRender == false then
    processor.log(rt, data, ctx.transport)
    return nil
  end
  local reply = ctx.reply or ctx
  local text
  if data.error then
    text = envelope(rt, reply, data.status, errorsOf(data))
  else
    local body = data.body
    if body == nil then body = data.response end
    text = envelope(rt, reply, data.status, nil, body)
  end
  processor.log(rt, data, ctx.transport, nil, text and #text)
  return text
end

-- One text message from a client.
function M.handle(rt, ctx, transport)
  local connection = ctx.connection
  connection.messageCount = connection.messageCount + 1
  if ctx.reject then
    return reject(rt, ctx, transport, ctx.reject.status, ctx.reject.message), ctx.reject.close
  end
  if ctx.binary then return reject(rt, ctx, transport, 400, "binary frames are not supported") end
  local err = parseInto(rt, ctx, ctx.text)
  if err then return reject(rt, ctx, transport, 400, err, ctx) end
  return runParsed(rt, ctx, transport, ctx.action, ctx.route or "", ctx.params)
end

-- A message that will not complete by itself: timed out (status 504), stopped by the
-- CPU limit, or its client went away (status nil: bookkeeping only, nothing to send).
function M.fail(rt, ctx, status, message)
  local data = ctx.data
  if ctx.roomSlot then
    -- A room message that will not complete: its pending slot goes back.
    ctx.roomSlot = nil
    ctx.connection.pendingActions = ctx.connection.pendingActions - 1
  end
  if not data then
    if status then return envelope(rt, ctx.reply or ctx, status, { message }) end
    return nil
  end
  if data._finished and not status then return nil end
  processor.abort(data, status or 499, message)
  local text = M.complete(rt, ctx, data)
  if status then return text end
  return nil
end

return M
