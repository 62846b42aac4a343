-- Sessions (SPEC §9), an EXAMPLE: `login` checks a password and starts a session kept in
-- Redis; `logout` ends it. The password check is a stand-in (any user, password "secret"):
-- replace it with a lookup of your own users and a real password hash before using this.
-- Clients then send the token as `Authorization: Bearer <token>` (HTTP) or once per
-- WebSocket/TCP connection as {"action":"authenticate","data":{"token":"..."}}.
return {
  login = {
    name = "login",
    description = "I start a session (example: any user, password \"secret\")",
    inputs = {
      user = { required = true },
      password = { required = true },
    },
    outputExample = { token = "3f9c...e1", user = { name = "alice" } },
    run = function(api, data, next)
      if data.params.password ~= "secret" then
        return next({ status = 401, message = "invalid user or password" })
      end
      local user = { name = tostring(data.params.user) }
      -- Stores the user under a new random token (24 h by default; pass ttlMs to change it)
      -- and sets data.connection.user, so the rest of this connection is authenticated too.
      local token = api.session.create(data.connection, user)
      data.response.token, data.response.user = token, user
      next()
    end,
  },
  logout = {
    name = "logout",
    description = "I end the session of this request or connection",
    outputExample = { loggedOut = true },
    run = function(api, data, next)
      -- Deletes the session restored by the Bearer header or `authenticate` (or created by
      -- login on this connection): its token stops working everywhere.
      data.response.loggedOut = api.session.destroy(data.connection)
      next()
    end,
  },
}
