-- Used only by test_permissions.py. Registers permissions at load time from an action file
-- (named a_* so it loads before the files that use them) and defines setUser/clearUser
-- (not login/logout: those are example actions in actions/, loaded alongside).
api.permissions.add("isAdmin", function(data)
  return data.connection.user == "admin"
end)
api.permissions.add("denyWithMessage", function(data)
  return false, "custom denial message"
end)
api.permissions.add("denyNil", function(data)
  return nil
end)
-- Sees the params before scrubbing: allow=yes is not a declared input of the actions using it.
api.permissions.add("paramAllow", function(data)
  return data.params.allow == "yes"
end)
-- Runs after the middleware preProcessors: permMark is set by perms/middleware.
api.permissions.add("afterMiddleware", function(data)
  return data.connection.permMark == "set-by-middleware"
end)
-- Raises: the request fails (500), the gateway carries on.
api.permissions.add("raises", function(data)
  error("permission exploded")
end)

return {
  setUser = {
    name = "setUser",
    description = "I set connection.user",
    inputs = { user = { required = true } },
    run = function(api, data, next)
      data.connection.user = data.params.user
      data.response.user = data.params.user
      next()
    end,
  },
  clearUser = {
    name = "clearUser",
    description = "I clear connection.user",
    run = function(api, data, next)
      data.connection.user = nil
      next()
    end,
  },
}
