-- Pushes `message` (a table is sent as JSON, a string as it is) to the connection `to`.
return {
  name = "push_to",
  description = "I push a message to another connection",
  inputs = { to = { required = true }, message = { required = true } },
  run = function(api, data, next)
    data.response.sent = api.connections.send(data.params.to, data.params.message)
    next()
  end,
}
