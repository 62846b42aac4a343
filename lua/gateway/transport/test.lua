-- The test transport: what the spec helper (lua/gateway/test.lua, docs/testing.md) asks
-- of a runtime it hosts in a test process (core/testhost.c). Each request is one JSON
-- object run as a call like any transport's (general.actionTimeout included); the answer
-- is JSON text, since the helper's Lua state is not this one. Kinds:
--   open   { type, fields, url, headers }  a connection kept for later requests (with
--          `url`, a WebSocket whose upgrade to that path a consumer takes, as a client's)
--   action { name, params, connection | type, fields }  run an action by name
--   route  { route, action, params, connection | type, fields, url }  a message with a
--          route, answered with the envelope (WebSocket/TCP), or over HTTP with `method`
--   messages { connection }  what was pushed to it since the last time (texts)
--   close  { connection }
-- The action's answer is the web's body (data.response with `error`, `errors` and the
-- metadata), as ActionHero's specHelper returns it, with the status and a copy of `data`.

local core = require("gateway.core")
local processor = require("gateway.pipeline.processor")
local connections = require("gateway.services.connections")
local groups = require("gateway.services.consumers")
local messages = require("gateway.transport.messages")
local web = require("gateway.transport.web")
local websocket = require("gateway.transport.websocket")

local T = {}

local TYPES = { web = true, websocket = true, socket = true }

-- Connections the helper holds, by id, and what was pushed to each (api.connections.send,
-- api.consumers), by id: their handle keeps it (services/connections.lua).
local open = {}
local inbox = {}

local function inboxHandle(id)
  inbox[id] = {}
  return function(text)
    local box = inbox[id]
    if not box then return false end
    box[#box + 1] = text
    return true
  end
end

-- A copy JSON can carry: functions, threads and userdata (but null) become their
-- tostring, cycles and depth past 20 are cut, keys are strings or array indexes.
local function plain(rt, v, depth, seen)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or v == nil or v == rt.json.null then
    if t == "number" and (v ~= v or v == math.huge or v == -math.huge) then return tostring(v) end
    return v
  end
  if t ~= "table" then return tostring(v) end
  if seen[v] or depth > 20 then return "[cycle]" end
  seen[v] = true
  local out, n = {}, #v
  if n > 0 then
    for i = 1, n do
      local x = plain(rt, v[i], depth + 1, seen)
      if x == nil then x = rt.json.null end
      out[i] = x
    end
  else
    for k, x in pairs(v) do
      if type(k) == "string" or type(k) == "number" then out[tostring(k)] = plain(rt, x, depth + 1, seen) end
    end
  end
  seen[v] = nil
  return out
end

local function snapshot(rt, connection)
  local c = {}
  for k, v in pairs(connection) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then c[k] = v end
  end
  return plain(rt, c, 0, {})
end

local function encode(rt, value)
  local text = processor.encode(rt, value)
  if not text then error("the test transport could not encode its answer", 0) end
  return text
end

local function lowerKeys(t)
  local out = {}
  for k, v in pairs(t or {}) do out[tostring(k):lower()] = tostring(v) end
  return out
end

-- A connection for one request: the one the helper opened, or a new one of `type`
-- (web by default) with the given fields, closed after the request.
local function connectionFor(rt, req)
  if req.connection then
    local c = open[req.connection]
    if not c then return nil, "no open test connection " .. tostring(req.connection) end
    return c, false
  end
  local type_ = req.type or "web"
  if not TYPES[type_] then return nil, "connection type must be web, websocket or socket" end
  local fields = { remoteIP = "127.0.0.1", remotePort = 0 }
  if type_ == "web" then
    fields.rawConnection = { method = "POST", path = "/" .. rt.config.servers.web.urlPathForActions,
      headers = lowerKeys(req.headers), query = {} }
  end
  for k, v in pairs(req.fields or {}) do fields[k] = v end
  local c = connections.new(rt, type_, fields)
  c.messageCount = c.messageCount + 1 -- its one message, as a web request's connection has
  return c, true
end

local function openConnection(rt, req)
  local type_ = req.type or (req.url and "websocket") or "websocket"
  if not TYPES[type_] then return { status = 400, error = "connection type must be web, websocket or socket" } end
  local connection
  if req.url then
    if type_ ~= "websocket" then return { status = 400, error = "a url is for a websocket connection" } end
    local path, query = tostring(req.url):match("^([^?]*)%??(.*)$")
    local status, _, body, prepared = websocket.upgrade.handle(rt, { path = path,
      query = core.parse_query(query), headers = lowerKeys(req.headers), remoteIP = "127.0.0.1",
      remotePort = 0 })
    if status == nil then return { status = 404, error = 'no consumer takes "' .. path .. '"' } end
    if status ~= 101 then
      local decoded = rt.json.decode(body)
      return { status = status, error = decoded and decoded.error or body }
    end
    connection = prepared
    for k, v in pairs(req.fields or {}) do connection[k] = v end
    connections.open(rt, connection, inboxHandle(connection.id))
    groups.opened(connection)
  else
    local fields = { remoteIP = "127.0.0.1", remotePort = 0 }
    if type_ == "websocket" then
      fields.rawConnection = { path = rt.config.servers.websocket.path, headers = lowerKeys(req.headers), query = {} }
    end
    for k, v in pairs(req.fields or {}) do fields[k] = v end
    fields.id = fields.id or core.random_id()
    connection = connections.new(rt, type_, fields, type_ ~= "web" and inboxHandle(fields.id) or nil)
  end
  open[connection.id] = connection
  return { status = 200, connection = snapshot(rt, connection) }
end

local function closeConnection(rt, id)
  local c = open[id]
  inbox[id] = nil
  if c then
    open[id] = nil
    groups.closed(c)
    connections.destroy(rt, c)
  end
end

-- The answer to an action: the web's body, status, error and a copy of data.
local function actionAnswer(rt, ctx, data)
  processor.log(rt, data, ctx.connection.type)
  local body = web.bodyTable(rt, data)
  local answer = {
    response = plain(rt, body, 0, {}), status = data.status,
    error = plain(rt, body.error, 0, {}), errors = plain(rt, data.errors, 0, {}),
    connection = snapshot(rt, ctx.connection),
    data = plain(rt, { params = data.params, headers = data.headers, toRender = data.toRender,
      toProcess = data.toProcess, body = data.body, action = data.action, route = data.route,
      messageCount = data.messageCount, actionName = data.actionTemplate and data.actionTemplate.name,
      actionVersion = data.actionTemplate and data.actionTemplate.version }, 0, {}),
  }
  if ctx.oneShot then connections.destroy(rt, ctx.connection) end
  return encode(rt, answer)
end

-- Sessions as the transports have them (README "Sessions"): a web request's
-- `Authorization: Bearer` header restores its user; a persistent connection's session is
-- checked before each message. Returns the error to answer (Redis failing), or nil.
local function sessionError(rt, connection, oneShot)
  if connection.type == "web" then
    local headers = oneShot and connection.rawConnection and connection.rawConnection.headers
    if not headers then return nil end
    local user, token, err = rt.api.session.fromHeader(headers.authorization)
    if err then return err end
    if user ~= nil then connection.user, connection.session = user, token end
    return nil
  end
  if connection.session ~= nil then return rt.api.session.check(connection) end
  return nil
end

local function runAction(rt, ctx, req)
  local connection, oneShot = connectionFor(rt, req)
  if not connection then return encode(rt, { status = 400, error = oneShot, misuse = true }) end
  local refused = sessionError(rt, connection, oneShot)
  if refused then
    local answer = { status = refused.status, error = refused.message, errors = { refused.message },
      response = { error = refused.message, errors = { refused.message } }, connection = snapshot(rt, connection) }
    if oneShot then connections.destroy(rt, connection) end
    return encode(rt, answer)
  end
  ctx.connection, ctx.oneShot, ctx.kind = connection, oneShot, "action"
  if not oneShot then connection.messageCount = connection.messageCount + 1 end
  local params = type(req.params) == "table" and req.params or {}
  params.action = req.name
  if oneShot and connection.type == "web" then connection.params = params end
  local data = processor.run(rt, connection, req.name, params, ctx)
  return actionAnswer(rt, ctx, data)
end

local function runRoute(rt, ctx, req)
  local connection, oneShot
  if req.url then
    local opened = openConnection(rt, { type = "websocket", url = req.url, headers = req.headers, fields = req.fields })
    if not opened.connection then return encode(rt, opened) end
    connection, oneShot = open[opened.connection.id], true
    open[connection.id] = nil
  else
    if not req.connection and not req.type then req.type = "websocket" end
    connection, oneShot = connectionFor(rt, req)
    if not connection then return encode(rt, { status = 400, error = oneShot, misuse = true }) end
  end
  if connection.type == "web" then
    if oneShot then connections.destroy(rt, connection) end
    return encode(rt, { status = 400, error = "a route runs on a websocket or socket connection", misuse = true })
  end
  ctx.connection, ctx.oneShot, ctx.kind = connection, oneShot, "route"
  if not oneShot then connection.messageCount = connection.messageCount + 1 end
  local params = type(req.params) == "table" and req.params or {}
  local text = messages.run(rt, ctx, connection.type, { action = req.action, route = req.route or "",
    params = params, reply = { action = req.action, route = req.route or "" } })
  local answer = { envelope = text and rt.json.decode(text) or rt.json.null, connection = snapshot(rt, connection) }
  if oneShot then
    groups.closed(connection)
    connections.destroy(rt, connection)
  end
  return encode(rt, answer)
end

function T.handle(rt, ctx)
  local req = rt.json.decode(ctx.json)
  if req.kind == "action" then return runAction(rt, ctx, req) end
  if req.kind == "route" then return runRoute(rt, ctx, req) end
  if req.kind == "open" then return encode(rt, openConnection(rt, req)) end
  if req.kind == "messages" then
    local box = inbox[req.connection] or {}
    if inbox[req.connection] then inbox[req.connection] = {} end
    return encode(rt, { status = 200, messages = box })
  end
  if req.kind == "close" then
    closeConnection(rt, req.connection)
    return encode(rt, { status = 200 })
  end
  return encode(rt, { status = 400, error = "unknown test request " .. tostring(req.kind) })
end

-- Timed out (504), stopped by the CPU limit, or cancelled by the helper (no status).
function T.fail(rt, ctx, status, message)
  local data = ctx.data
  if not data then
    if ctx.oneShot and ctx.connection then connections.destroy(rt, ctx.connection) end
    return encode(rt, { status = status or 499, error = message })
  end
  if data._finished and not status then return nil end
  processor.abort(data, status or 499, message)
  if ctx.kind == "route" then
    if ctx.oneShot then connections.destroy(rt, ctx.connection) end
    local text = messages.complete(rt, ctx, data)
    return encode(rt, { envelope = text and rt.json.decode(text) or rt.json.null })
  end
  return actionAnswer(rt, ctx, data)
end

return T
