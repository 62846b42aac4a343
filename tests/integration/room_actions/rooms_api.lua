-- api.rooms from an action (test_rooms.py): roomsApi runs one verb of api.rooms with the
-- params given and answers its result; a raised error is the action's error.
return {
  name = "roomsApi",
  description = "calls api.rooms[op](...) for the room tests",
  inputs = {
    op = { required = true },
    room = {},
    id = {},
    message = {},
    fromId = {},
  },
  run = function(api, data)
    local p = data.params
    local result
    if p.op == "add" then result = api.rooms.add(p.room)
    elseif p.op == "destroy" then result = api.rooms.destroy(p.room)
    elseif p.op == "exists" then result = api.rooms.exists(p.room)
    elseif p.op == "status" then result = api.rooms.status(p.room)
    elseif p.op == "broadcast" then
      local from = nil
      if p.fromId then from = api.connections.connections[p.fromId] end
      result = api.rooms.broadcast(from, p.room, p.message)
    elseif p.op == "broadcastSelf" then
      result = api.rooms.broadcast(data.connection, p.room, p.message)
    elseif p.op == "addMember" then result = api.rooms.addMember(p.id, p.room)
    elseif p.op == "removeMember" then result = api.rooms.removeMember(p.id, p.room)
    elseif p.op == "roomsOf" then result = api.rooms.roomsOf(data.connection)
    elseif p.op == "pcallStatus" then
      local ok, err = pcall(api.rooms.status, p.room)
      result = { ok = ok, err = tostring(err) }
    else
      return nil, { message = "unknown op " .. tostring(p.op), status = 400 }
    end
    data.response.result = result
  end,
}
