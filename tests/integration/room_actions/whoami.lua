-- The connection's id (test_rooms.py: what `from` in a say event should be), the worker
-- holding it, and its rooms.
return {
  name = "whoami",
  description = "answers the connection id",
  run = function(api, data)
    data.response.id = data.connection.id
    data.response.worker = api.cluster.id
    local rooms = data.connection.rooms
    if rooms == nil or #rooms == 0 then rooms = api.json.empty_array end
    data.response.rooms = rooms
  end,
}
