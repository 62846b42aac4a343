-- Actions with permissions, used only by test_permissions.py.
local function answer(api, data, next)
  data.response.ok = true
  data.response.user = data.connection.user
  data.response.name = data.params.name
  next()
end

local function guarded(name, permissions, inputs)
  return { name = name, description = "guarded by " .. table.concat(permissions, ","),
           permissions = permissions, inputs = inputs or {}, run = answer }
end

return {
  authOnly = guarded("authOnly", { "isAuthenticated" }, { name = { required = true } }),
  adminOnly = guarded("adminOnly", { "isAdmin" }, { name = { required = true } }),
  authAndAdmin = guarded("authAndAdmin", { "isAuthenticated", "isAdmin" }),
  customMessage = guarded("customMessage", { "denyWithMessage" }),
  nilDenies = guarded("nilDenies", { "denyNil" }),
  openToAll = guarded("openToAll", { "allowAny" }),
  paramGate = guarded("paramGate", { "paramAllow" }),
  afterMw = guarded("afterMw", { "afterMiddleware" }),
  permRaises = guarded("permRaises", { "raises" }),
  fromMiddleware = guarded("fromMiddleware", { "fromMiddlewareFile" }),
  -- the action's own middleware (returnErr, from tests/integration/middleware) fails first
  mwThenAuth = { name = "mwThenAuth", description = "middleware before permissions",
                 middleware = { "returnErr" }, permissions = { "isAuthenticated" }, run = answer },
}
