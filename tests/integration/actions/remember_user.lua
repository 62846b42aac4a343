-- Stores the `user` param on the connection (SPEC 3.1: it stays for the next action).
return {
  name = "remember_user",
  description = "I remember who you are on this connection",
  inputs = { user = { required = true } },
  run = function(api, data, next)
    data.connection.user = data.params.user
    data.connection.note = "remembered " .. tostring(data.params.user)
    data.response.stored = data.params.user
    next()
  end,
}
