-- Permissions (SPEC §7): named checks `function(data) -> true | false|nil [, reason]` that
-- actions and handlers list in `permissions = {...}`. A denial is 403 with the standard
-- message, or with the reason: a string, or a table { status =, message = }.
-- Object permissions (`function(data, object)`, registered with addObject and listed in a
-- handler's `objectPermissions`) live in a namespace of their own and answer the same way;
-- the generics run them on the object they loaded (gateway.registry.resources).

local M = {}

M.DENIED = "You do not have permission to perform this action."
M.UNAUTHENTICATED = "Authentication credentials were not provided."

-- The registry behind api.permissions, with the built-ins.
function M.new()
  local registry = {
    isAuthenticated = function(data)
      if data.connection.user ~= nil then return true end
      return false, { status = 401, message = M.UNAUTHENTICATED }
    end,
    allowAny = function() return true end,
  }
  -- Object permissions are a separate namespace: a name may be both a plain permission and
  -- an object permission (say "isOwner" checking data only, and checking the object).
  local objects = {}
  local api = { permissions = registry, objects = objects }
  function api.add(name, fn)
    if type(name) ~= "string" or name == "" then error("api.permissions.add: name must be a string", 2) end
    if type(fn) ~= "function" then error("api.permissions.add: " .. name .. " needs a function", 2) end
    registry[name] = fn
  end
  function api.addObject(name, fn)
    if type(name) ~= "string" or name == "" then error("api.permissions.addObject: name must be a string", 2) end
    if type(fn) ~= "function" then error("api.permissions.addObject: " .. name .. " needs a function", 2) end
    objects[name] = fn
  end
  return api
end

-- The first name in `names` that is not registered, or nil.
function M.unknown(registry, names)
  for _, name in ipairs(names or {}) do
    if not registry[name] then return name end
  end
  return nil
end

-- The (message, status) of a denial's reason: a string, or a table { status =, message = };
-- nil gives the standard 403.
function M.reason(reason)
  if type(reason) == "table" then
    return tostring(reason.message or M.DENIED), math.tointeger(tonumber(reason.status)) or 403
  end
  if type(reason) == "string" and reason ~= "" then return reason, 403 end
  return M.DENIED, 403
end

-- Run every check in order; nil when all pass, else (message, status) of the first denial.
-- A check that raises propagates (the processor answers 500). With `object`, the checks
-- are object permissions and get (data, object).
function M.check(registry, names, data, object)
  for _, name in ipairs(names) do
    local ok, reason = registry[name](data, object)
    if ok ~= true then return M.reason(reason) end
  end
  return nil
end

return M
