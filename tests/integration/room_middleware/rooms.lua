-- Room middleware for test_rooms.py: refuses joins to "forbidden" and leaves of "hotel",
-- rewrites and refuses says, and records every leave in Redis (to see that a closed
-- connection's leave ran).
local function record(connection, room)
  local prefix = api.config.redis.prefix
  api.redis.call("RPUSH", prefix .. "test:leaves", connection.id .. " " .. room)
end

return {
  {
    name = "roomRules",
    priority = 10,
    join = function(connection, room)
      if room == "forbidden" then return false, "no entry to forbidden" end
      if room == "raises" then error({ message = "raised refusal", status = 403 }) end
      if room == "buggy" then local x = nil; return x.field end
    end,
    leave = function(connection, room)
      record(connection, room)
      if room == "hotel" then return nil, "you can never leave" end
    end,
    say = function(connection, room, message)
      if message == "badword" then return nil, "mind your language" end
      if room == "shout" and type(message) == "string" then return message:upper() end
    end,
  },
  {
    name = "roomStamp",
    priority = 20,
    say = function(connection, room, message)
      if room == "stamped" then return { text = message, stamped = true } end
    end,
  },
}
