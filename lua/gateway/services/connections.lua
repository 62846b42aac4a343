-- Connection objects (SPEC §3.1) and connection middleware (SPEC §4): one table per
-- client for its whole life, listed in api.connections while it is open. Persistent
-- connections also have a handle through which the gateway can push to them.

local core = require("gateway.core")

local okConn, conn = pcall(require, "gateway.conn")
if not okConn then conn = nil end

local C = {}

-- connection -> gateway.conn handle, for WebSocket and TCP connections.
local handles = setmetatable({}, { __mode = "k" })

local function runHook(m, hook, connection)
  local ok, err = xpcall(m[hook], debug.traceback, connection)
  if not ok then
    core.log("error", "connection middleware " .. m.name .. " " .. hook .. " failed",
      { "connection", connection.id, "error", tostring(err) })
  end
end

-- List a connection built by the caller (it has its id, type and counters) in
-- api.connections and run the create middleware.
function C.open(rt, connection, handle)
  if handle then handles[connection] = handle end
  rt.api.connections.connections[connection.id] = connection
  local list = rt.reg.connectionMiddlewareList
  for i = 1, #list do
    local m = list[i]
    if m.create then runHook(m, "create", connection) end
  end
  return connection
end

-- A new persistent connection's object, not open yet: its id, type and counters, and
-- `fields` (remoteIP, rawConnection...). A WebSocket's is made on its upgrade request.
function C.make(type_, fields)
  local connection = {
    id = core.random_id(), type = type_, params = {}, pendingActions = 0, totalActions = 0,
    messageCount = 0, connectedAt = math.floor(core.wall_ms()),
  }
  for k, v in pairs(fields or {}) do connection[k] = v end
  return connection
end

function C.new(rt, type_, fields, handle)
  return C.open(rt, C.make(type_, fields), handle)
end

-- What other services forget of a connection when it closes (live subscriptions): each
-- fn(connection), registered once at load, runs before the destroy middleware, for the
-- connections the gateway can push to (WebSocket, TCP, the spec helper's): only those can
-- hold what the services keep (a web request's connection skips them).
local closers = {}
function C.onDestroy(fn)
  closers[#closers + 1] = fn
end

-- Runs destroy middleware once and forgets the connection.
function C.destroy(rt, connection)
  if not connection or connection._destroyed then return end
  connection._destroyed = true
  if handles[connection] ~= nil then
    handles[connection] = nil
    for i = 1, #closers do
      local ok, err = xpcall(closers[i], debug.traceback, connection)
      if not ok then core.log("error", "closing a connection failed", { "error", tostring(err) }) end
    end
  end
  local list = rt.reg.connectionMiddlewareList
  for i = 1, #list do
    local m = list[i]
    if m.destroy then runHook(m, "destroy", connection) end
  end
  rt.api.connections.connections[connection.id] = nil
end

-- A handle is gateway.conn's, or a Lua function(text) -> queued: the spec helper's
-- connections (transport/test.lua), which keep what is pushed to them.
local function push(handle, text)
  if type(handle) == "function" then return handle(text) == true end
  if not conn then return false end
  return conn.send(handle, text)
end

-- Can the gateway push to this connection (an open WebSocket or TCP one)?
function C.canPush(connection)
  return handles[connection] ~= nil
end

-- Push `text` to an open persistent connection: true when it was queued.
function C.sendText(connection, text)
  local handle = handles[connection]
  if not handle then return false end
  return push(handle, text)
end

-- Push `message` (a string as it is, anything else as JSON) to the open persistent
-- connection `id`: true when it was queued.
-- What api.connections.send writes: a string as it is, anything else as JSON (an error
-- naming api.connections.send, at the caller's caller, when it does not encode).
function C.text(json, message)
  if type(message) == "string" then return message end
  local ok, encoded = pcall(json.encode, message)
  if not ok then error("api.connections.send: " .. tostring(encoded), 3) end
  return encoded
end

function C.send(registry, json, id, message)
  local connection = registry[id]
  local handle = connection and handles[connection]
  if not handle then return false end
  return push(handle, C.text(json, message))
end

return C
