-- A consumer per room: group by room_id, connect refuses one room, and `say` reaches
-- every connection of the room through api.consumers.groupSend. Django's pattern style
-- (no leading slash).
return {
  consumer = [[^ws/rooms/(?P<room_id>[-\w]+)/$]],
  name = "rooms",
  group = "room_id",
  connect = function(connection, kwargs)
    if kwargs.room_id == "forbidden" then return false end
    if kwargs.room_id == "vip" and connection.user == nil then
      return false, { status = 401, message = "Authentication credentials were not provided." }
    end
    if kwargs.room_id == "boom" then error("connect exploded") end
    connection.joinedRoom = kwargs.room_id
  end,
  handlers = { "kw" },
  actions = {
    say = {
      inputs = { message = { required = true } },
      run = function(api, data)
        local n = api.consumers.groupSend(data.connection,
          { event = "say", room = data.params.room_id, message = data.params.message })
        data.response = { delivered = n, joined = data.connection.joinedRoom }
      end,
    },
    shout = {
      inputs = { to = { required = true } },
      run = function(api, data)
        local to = data.params.to
        data.response = {
          delivered = api.consumers.broadcast({ room_id = to }, { event = "shout", from = data.params.room_id }),
          members = api.consumers.members("/ws/rooms/" .. to .. "/"),
        }
      end,
    },
    tellPath = {
      inputs = { path = { required = true } },
      run = function(api, data)
        data.response = { delivered = api.consumers.broadcast(data.params.path, "plain text") }
      end,
    },
  },
}
