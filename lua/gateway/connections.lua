-- Connection objects (SPEC §3.1) and connection middleware (SPEC §4): one table per
-- client for its whole life, listed in api.connections while it is open.

local core = require("gateway.core")

local C = {}

local function runHook(m, hook, connection)
  local ok, err = xpcall(m[hook], debug.traceback, connection)
  if not ok then
    core.log("error", "connection middleware " .. m.name .. " " .. hook .. " failed",
      { "connection", connection.id, "error", tostring(err) })
  end
end

function C.new(rt, type_, fields)
  local connection = {
    id = core.random_id(), type = type_, params = {}, pendingActions = 0, totalActions = 0,
    messageCount = 0, connectedAt = math.floor(core.wall_ms()),
  }
  for k, v in pairs(fields or {}) do connection[k] = v end
  rt.api.connections.connections[connection.id] = connection
  for _, m in ipairs(rt.reg.connectionMiddlewareList) do
    if m.create then runHook(m, "create", connection) end
  end
  return connection
end

-- Runs destroy middleware once and forgets the connection.
function C.destroy(rt, connection)
  if not connection or connection._destroyed then return end
  connection._destroyed = true
  for _, m in ipairs(rt.reg.connectionMiddlewareList) do
    if m.destroy then runHook(m, "destroy", connection) end
  end
  rt.api.connections.connections[connection.id] = nil
end

return C
