-- Sessions (SPEC §7, §9), an EXAMPLE: an action only an authenticated connection may run.
-- `isAuthenticated` answers 401 "Authentication credentials were not provided." unless
-- connection.user is set: by `login` on this connection, by an `Authorization: Bearer
-- <token>` header (HTTP) or by an `authenticate` message (WebSocket/TCP).
return {
  name = "profile",
  description = "I return the user of the current session",
  permissions = { "isAuthenticated" },
  outputExample = { user = { name = "alice" } },
  run = function(api, data, next)
    data.response.user = data.connection.user
    next()
  end,
}
