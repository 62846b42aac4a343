-- Plain actions, reachable by name from every consumer, and the permission the private
-- consumer uses.
api.permissions.add("staffOnly", function(data)
  return data.connection.user ~= nil and data.connection.user.name == "staff"
end)

return {
  named = {
    name = "named", description = "an action by name",
    inputs = { pk = {}, note = {} },
    run = function(api, data) data.response = { pk = data.params.pk, note = data.params.note } end,
  },
  me = {
    name = "me", description = "the connection's user",
    run = function(api, data) data.response = { user = data.connection.user or api.json.null } end,
  },
  login = {
    name = "login", description = "a session for the given user name",
    inputs = { user = { required = true } },
    run = function(api, data)
      data.response = { token = api.session.create(data.connection, { name = data.params.user }, 60000) }
    end,
  },
}
