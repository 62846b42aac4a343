-- A chat room per URL, in rest_framework_channels' consumer model (docs/routing.md,
-- "Consumers"): a WebSocket client at ws://127.0.0.1:8080/ws/chat/lobby/ is in room
-- "lobby", and whatever one of the room's clients says reaches all of them.
--   → {"action": "say", "data": {"message": "hi"}}
--   ← {"event":"say","room":"lobby","from":"<connection id>","message":"hi"}   (to everyone)
--   ← {"errors":[],"data":{"delivered":2},"action":"say","route":"","status":200}
return {
  consumer = [[^/ws/chat/(?P<room>[-\w]{1,64})/$]],
  name = "chat",
  group = "room", -- the connections of one room form a group
  actions = {
    say = {
      description = "Say something to everyone in this room",
      inputs = { message = { required = true } },
      run = function(api, data)
        data.response = {
          delivered = api.consumers.groupSend(data.connection, {
            event = "say", room = data.params.room, from = data.connection.id, message = data.params.message,
          }),
        }
      end,
    },
    -- A handler action may also be a function returning body, status.
    members = function(api, data)
      return { room = data.params.room, members = api.consumers.members(data.connection.rawConnection.path) }, 200
    end,
  },
}
