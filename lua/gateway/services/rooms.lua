-- Rooms (ActionHero's chatRoom) across every worker and node sharing the Redis: api.rooms
-- and what the roomAdd / roomLeave / roomView / say messages do (docs/realtime.md).
-- Membership lives in Redis; each worker keeps an index of its own member connections
-- and delivers a broadcast, which reaches it once through api.cluster, to them alone, so
-- each member gets it exactly once. What the envelope looks like is the transport's
-- (gateway.transport.messages).
--
-- Redis (P = redis.prefix):
--   P.."rooms"                   hash  room -> "created" (api.rooms.add) | "auto" (made by a
--                                      join; deleted with its last member)
--   P.."room:"..room             hash  connection id -> "<joinedAt> <worker id>"
--   P.."rooms:worker:"..worker   set   "<connection id> <room>" for each membership a
--                                      worker holds, so a dead worker's are found
--                                      without a SCAN (api.cluster.onWorkerGone)
-- Every change is one Lua script, so the three never disagree.

local core = require("gateway.core")
local connections = require("gateway.services.connections")

local M = {}

M.TOPIC = "gateway.rooms" -- the gateway's own topics start "gateway." (services/cluster.lua)
M.REQUIRED = "This field is required."

-- Errors raised by api.rooms: a table with status and message (what an action's raised
-- table becomes, SPEC §3.1) that prints as its message.
local ERROR_MT = { __tostring = function(e) return e.message end }
local function fail(status, message)
  error(setmetatable({ status = status, message = message }, ERROR_MT), 0)
end
M.fail = fail

function M.notFound(room)
  return 'room "' .. room .. '" not found'
end

function M.notMember(room)
  return 'you are not a member of room "' .. room .. '"'
end

-- The problem with a room name, or nil: a non-empty string of valid UTF-8 of at most
-- maxLength bytes.
function M.checkName(room, maxLength)
  if room == nil or room == "" then return M.REQUIRED end
  if type(room) ~= "string" then return "must be a string" end
  if #room > maxLength then return "must be at most " .. maxLength .. " bytes" end
  if not core.utf8_valid(room) then return "must be valid UTF-8" end
  return nil
end

-- {"event":"say","room":...,"from":...,"message":...}, keys in that order; encoded once
-- by the sender's worker and sent as it is to every member, and the message's own length
-- as JSON. nil and the reason when the message cannot be encoded.
function M.sayText(json, room, from, message)
  local ok, text = pcall(json.encode, message)
  if not ok then return nil, text end
  return '{"event":"say","room":' .. json.encode(room) .. ',"from":'
    .. (from == nil and "null" or json.encode(from)) .. ',"message":' .. text .. "}", nil, #text
end

function M.destroyedText(json, room)
  return '{"event":"roomDestroyed","room":' .. json.encode(room) .. "}"
end

-- Run the room middleware's `hook` (join, leave or say) in priority order. A hook refuses
-- by returning false or nil plus a message, or by raising a table { message, status };
-- any other raised error is a bug in it: logged, and the client sees 500. A say hook that
-- returns a value replaces the message for the hooks after it and for the members.
-- Returns true and the (possibly rewritten) message, or false, the message and the status.
local function capture(e)
  if type(e) == "table" then return e end
  return debug.traceback(tostring(e), 2)
end

function M.runHooks(list, hook, connection, room, message)
  for i = 1, #list do
    local m = list[i]
    local fn = m[hook]
    if fn then
      local r = table.pack(xpcall(fn, capture, connection, room, message))
      if not r[1] then
        local e = r[2]
        if type(e) == "table" then
          return false, tostring(e.message or ('refused by room middleware "' .. m.name .. '"')),
            math.tointeger(tonumber(e.status)) or 403
        end
        core.log("error", "room middleware " .. m.name .. " " .. hook .. " failed",
          { "room", room, "error", tostring(e) })
        return false, "The server experienced an internal error", 500
      end
      if r[2] == false or (r[2] == nil and r[3] ~= nil) then
        local why = r[3]
        if why == nil then why = 'refused by room middleware "' .. m.name .. '"' end
        return false, tostring(why), 403
      end
      if hook == "say" and r.n >= 2 and r[2] ~= nil then message = r[2] end
    end
  end
  return true, message
end

-- The scripts. KEYS and ARGV as each says; none reads a key it was not given except
-- through the prefix it was given (fine on one Redis; Redis Cluster would need hash tags).

-- KEYS rooms, room:<r>, rooms:worker:<w>; ARGV room, id, "<joinedAt> <worker>",
-- autoCreate ("1"/"0"), "<id> <room>". -> 0 no such room, 1 joined, 2 already a member
local JOIN = [[
if not redis.call('HGET', KEYS[1], ARGV[1]) then
  if ARGV[4] ~= '1' then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], 'auto')
end
redis.call('SADD', KEYS[3], ARGV[5])
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 1 then return 1 end
return 2
]]

-- KEYS rooms, rooms:worker:<w>; ARGV id, P.."room:", room... -> rooms left
local LEAVE = [[
local n = 0
for i = 3, #ARGV do
  local room = ARGV[i]
  local key = ARGV[2] .. room
  n = n + redis.call('HDEL', key, ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1] .. ' ' .. room)
  if redis.call('HLEN', key) == 0 and redis.call('HGET', KEYS[1], room) == 'auto' then
    redis.call('HDEL', KEYS[1], room)
  end
end
return n
]]

-- KEYS rooms; ARGV room -> 1 created, 0 it existed (an auto room is kept from now on)
local ADD = [[
local kind = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], 'created')
if kind then return 0 end
return 1
]]

-- KEYS rooms, room:<r>; ARGV room, P.."rooms:worker:" -> 1 destroyed, 0 no such room
local DESTROY = [[
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local worker = string.match(all[i + 1], '^%S+ (.*)$')
  if worker then redis.call('SREM', ARGV[2] .. worker, all[i] .. ' ' .. ARGV[1]) end
end
redis.call('DEL', KEYS[2])
return existed
]]

-- KEYS rooms, rooms:worker:<gone>; ARGV P.."room:" -> memberships removed
local GONE = [[
local entries = redis.call('SMEMBERS', KEYS[2])
for _, e in ipairs(entries) do
  local id, room = string.match(e, '^(%S+) (.*)$')
  if id then
    local key = ARGV[1] .. room
    redis.call('HDEL', key, id)
    if redis.call('HLEN', key) == 0 and redis.call('HGET', KEYS[1], room) == 'auto' then
      redis.call('HDEL', KEYS[1], room)
    end
  end
end
redis.call('DEL', KEYS[2])
return #entries
]]

-- KEYS rooms, rooms:worker:<w>; ARGV P.."room:", then room, id, "<joinedAt> <worker>"
-- for each membership -> memberships written. Puts back what a worker holds after the
-- cluster took it for dead and cleaned up after it (an auto room made again if it went).
local RESTORE = [[
for i = 2, #ARGV, 3 do
  local room, id = ARGV[i], ARGV[i + 1]
  if not redis.call('HGET', KEYS[1], room) then redis.call('HSET', KEYS[1], room, 'auto') end
  redis.call('HSET', ARGV[1] .. room, id, ARGV[i + 2])
  redis.call('SADD', KEYS[2], id .. ' ' .. room)
end
return (#ARGV - 1) / 3
]]

-- KEYS rooms, room:<r>; ARGV room, limit -> nil (no such room) | { count, {id, value...} }
-- At most `limit` members, read with HSCAN so a huge room costs no more than that.
local STATUS = [[
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
local count = redis.call('HLEN', KEYS[2])
local limit = tonumber(ARGV[2])
local out = {}
if count <= limit then
  out = redis.call('HGETALL', KEYS[2])
else
  local cursor = '0'
  repeat
    local r = redis.call('HSCAN', KEYS[2], cursor, 'COUNT', 1000)
    cursor = r[1]
    for i = 1, #r[2], 2 do
      if #out >= 2 * limit then break end
      out[#out + 1] = r[2][i]
      out[#out + 1] = r[2][i + 1]
    end
  until cursor == '0' or #out >= 2 * limit
end
return { count, out }
]]

-- The service: api.rooms (svc.api) and what the transport and runtime use.
function M.new(api, config)
  local svc = { middleware = {} }
  local json = api.json
  local cluster = api.cluster
  local byRoom = {}                                   -- room -> { [connection] = true }
  local memberOf = setmetatable({}, { __mode = "k" }) -- connection -> { room -> joinedAt }
  local joining = setmetatable({}, { __mode = "k" })  -- connection -> { room -> true } in flight

  local function settings() return config.rooms or {} end
  local function prefix() return (config.redis and config.redis.prefix) or "gateway:" end
  local function roomsKey() return prefix() .. "rooms" end
  local function roomKey(room) return prefix() .. "room:" .. room end
  local function workerKey(worker) return prefix() .. "rooms:worker:" .. worker end

  local function call(...) return api.redis.call(...) end

  -- A room name from Lua code: raises 422 naming the problem.
  local function checkName(room, who)
    local problem = M.checkName(room, settings().maxNameLength or 256)
    if problem then
      if problem == M.REQUIRED then problem = "is required" end
      fail(422, who .. ": room " .. problem)
    end
  end
  svc.checkName = function(room) return M.checkName(room, settings().maxNameLength or 256) end

  local function localAdd(connection, room, joinedAt)
    local set = byRoom[room]
    if not set then
      set = {}
      byRoom[room] = set
    end
    set[connection] = true
    local mine = memberOf[connection]
    if not mine then
      mine = {}
      memberOf[connection] = mine
    end
    mine[room] = joinedAt
    local list = connection.rooms
    if type(list) ~= "table" then
      list = {}
      connection.rooms = list
    end
    list[#list + 1] = room
  end

  local function localRemove(connection, room)
    local set = byRoom[room]
    if set then
      set[connection] = nil
      if next(set) == nil then byRoom[room] = nil end
    end
    local mine = memberOf[connection]
    if mine then mine[room] = nil end
    local list = connection.rooms
    if type(list) == "table" then
      for i = #list, 1, -1 do
        if list[i] == room then table.remove(list, i) end
      end
    end
  end

  function svc.isMember(connection, room)
    local mine = memberOf[connection]
    return mine ~= nil and mine[room] ~= nil
  end

  local function count(t)
    local n = 0
    for _ in pairs(t or {}) do n = n + 1 end
    return n
  end

  function svc.exists(room)
    return call("HEXISTS", roomsKey(), room) == 1
  end

  -- A local connection joins: the per-connection cap, the room's existence (created when
  -- autoCreate), the join hooks, then Redis and the local index. Returns status, message:
  -- 200 (nil message), 404, 403 or the hook's status, 429.
  function svc.join(connection, room, autoCreate)
    if svc.isMember(connection, room) then return 200 end
    local cap = settings().maxRoomsPerConnection or 100
    if count(memberOf[connection]) + count(joining[connection]) >= cap then
      return 429, "too many rooms (rooms.maxRoomsPerConnection is " .. cap .. ")"
    end
    if not autoCreate and not svc.exists(room) then return 404, M.notFound(room) end
    local ok, message, status = M.runHooks(svc.middleware, "join", connection, room)
    if not ok then return status, message end
    if connection._destroyed then return 499, "the connection closed" end
    local pending = joining[connection]
    if not pending then
      pending = {}
      joining[connection] = pending
    end
    pending[room] = true
    local joinedAt = math.floor(core.wall_ms())
    local okCall, r = pcall(call, "EVAL", JOIN, 3, roomsKey(), roomKey(room), workerKey(cluster.id),
      room, connection.id, joinedAt .. " " .. cluster.id, autoCreate and "1" or "0",
      connection.id .. " " .. room)
    pending[room] = nil
    if not okCall then error(r, 0) end
    if r == 0 then return 404, M.notFound(room) end
    if connection._destroyed then
      -- It closed while Redis answered: its close saw no membership to undo.
      svc.leaveRedis(connection.id, { room })
      return 499, "the connection closed"
    end
    if not svc.isMember(connection, room) then localAdd(connection, room, joinedAt) end
    return 200
  end

  function svc.leaveRedis(id, rooms)
    if #rooms == 0 then return 0 end
    return call("EVAL", LEAVE, 2, roomsKey(), workerKey(cluster.id), id, prefix() .. "room:",
      table.unpack(rooms))
  end

  -- A local connection leaves: the leave hooks (which may refuse unless `force`), the
  -- local index, then Redis. Returns status, message as join does.
  function svc.leave(connection, room, force)
    if not svc.isMember(connection, room) then
      if svc.exists(room) then return 200 end
      return 404, M.notFound(room)
    end
    local ok, message, status = M.runHooks(svc.middleware, "leave", connection, room)
    if not ok and not force then return status, message end
    if not svc.isMember(connection, room) then return 200 end
    localRemove(connection, room)
    svc.leaveRedis(connection.id, { room })
    return 200
  end

  -- Broadcast from `connection` (nil: from the server): the say hooks when there is a
  -- sender, then one cluster message. Returns status, message.
  function svc.say(connection, room, message)
    if connection and not svc.isMember(connection, room) then
      if not svc.exists(room) then return 404, M.notFound(room) end
      return 403, M.notMember(room)
    end
    if connection then
      local ok, rewritten, status = M.runHooks(svc.middleware, "say", connection, room, message)
      if not ok then return status, rewritten end
      message = rewritten
    end
    local text, why, size = M.sayText(json, room, connection and connection.id or nil, message)
    if not text then return 422, "message cannot be sent as JSON: " .. tostring(why) end
    local max = settings().maxMessageBytes or 65536
    if size > max then return 413, "message too large (rooms.maxMessageBytes is " .. max .. ")" end
    local sent, reason = cluster.publish(M.TOPIC, { op = "say", room = room, text = text })
    if not sent then return 503, "redis unavailable" .. (reason and (" (" .. tostring(reason) .. ")") or "") end
    return 200
  end

  -- { room, membersCount, members = { id -> { id, joinedAt } } [, truncated = true] }, or
  -- nil when there is no such room.
  function svc.status(room)
    local limit = settings().viewLimit or 1000
    local r = call("EVAL", STATUS, 2, roomsKey(), roomKey(room), room, limit)
    if r == nil then return nil end
    local members, list = {}, r[2]
    for i = 1, #list, 2 do
      local id, value = list[i], list[i + 1]
      members[id] = { id = id, joinedAt = math.tointeger(tonumber(value:match("^(%S+)"))) }
    end
    local out = { room = room, membersCount = r[1], members = members }
    if r[1] > #list // 2 then out.truncated = true end
    return out
  end

  -- The connection closed: out of the local index now (nothing more is delivered to it),
  -- out of Redis and through the leave hooks in a task of its own (close cannot wait).
  function svc.closed(connection)
    local mine = memberOf[connection]
    local rooms = {}
    for room in pairs(mine or {}) do rooms[#rooms + 1] = room end
    for room in pairs(joining[connection] or {}) do rooms[#rooms + 1] = room end
    if #rooms == 0 then return end
    for room in pairs(mine or {}) do localRemove(connection, room) end
    memberOf[connection] = nil
    local function cleanup()
      for _, room in ipairs(rooms) do M.runHooks(svc.middleware, "leave", connection, room) end
      local ok, err = pcall(svc.leaveRedis, connection.id, rooms)
      if not ok then
        core.log("warning", "rooms: could not remove a closed connection's memberships; retrying",
          { "connection", connection.id, "error", tostring(err) })
        svc.retryLeave(connection.id, rooms)
      end
    end
    if svc.loop then svc.loop.after(0, cleanup) else cleanup() end
  end

  -- Memberships of closed connections Redis could not take (it was down): tried again
  -- every second, then every 2, 4... up to 10 s, until Redis takes them. At most
  -- RETRY_MAX connections wait; past that the oldest are left to the dead-worker cleanup.
  local retries, retrying, retryDelay = {}, false, 1000
  local RETRY_MAX = 100000
  local function retryRun()
    local batch = retries
    retries = {}
    for i, entry in ipairs(batch) do
      local ok = pcall(svc.leaveRedis, entry[1], entry[2])
      if not ok then
        for j = i, #batch do retries[#retries + 1] = batch[j] end
        break
      end
    end
    if #retries == 0 then
      retrying, retryDelay = false, 1000
      return
    end
    retryDelay = math.min(retryDelay * 2, 10000)
    svc.loop.after(retryDelay, retryRun)
  end
  function svc.retryLeave(id, rooms)
    if #retries >= RETRY_MAX then table.remove(retries, 1) end
    retries[#retries + 1] = { id, rooms }
    if not retrying and svc.loop then
      retrying = true
      svc.loop.after(retryDelay, retryRun)
    end
  end

  -- Cluster messages: a broadcast, a destroyed room, a membership change for a connection
  -- this worker may hold.
  local function onMessage(payload)
    local op, room = payload.op, payload.room
    if type(room) ~= "string" then return end
    if op == "say" then
      local set = byRoom[room]
      if not set then return end
      local text = payload.text
      -- The gateway's own loop, not a project's runaway code: general.cpuTimeout must not
      -- stop it halfway through a big room (a few µs per member; reset every 1000).
      local n, reset = 0, svc.loop and svc.loop.reset_slice
      for c in pairs(set) do
        connections.sendText(c, text)
        n = n + 1
        if reset and n % 1000 == 0 then reset() end
      end
    elseif op == "destroy" then
      local set = byRoom[room]
      if not set then return end
      local text = M.destroyedText(json, room)
      local list = {}
      for c in pairs(set) do list[#list + 1] = c end
      for _, c in ipairs(list) do
        localRemove(c, room)
        connections.sendText(c, text)
      end
      for _, c in ipairs(list) do M.runHooks(svc.middleware, "leave", c, room) end
    elseif op == "add" or op == "remove" then
      local c = api.connections.connections[payload.id]
      if not c or c._destroyed or c.type == "web" then return end
      local status, message
      if op == "add" then status, message = svc.join(c, room, false)
      else status, message = svc.leave(c, room, false) end
      if status ~= 200 then
        core.log("info", "rooms: " .. op .. " refused", { "connection", c.id, "room", room,
          "status", status, "error", tostring(message) })
      end
    end
  end

  local function onWorkerGone(worker)
    local n = call("EVAL", GONE, 2, roomsKey(), workerKey(worker), prefix() .. "room:")
    if n and n > 0 then
      core.log("notice", "rooms: removed the memberships of a worker that is gone",
        { "worker", tostring(worker), "memberships", tostring(n) })
    end
  end

  -- After an outage long enough for the cluster to take this worker for dead, its
  -- memberships may have been removed from Redis: write them again, 300 at a time.
  local function onResubscribed()
    local args, n = {}, 0
    local function flush()
      if #args == 0 then return end
      call("EVAL", RESTORE, 2, roomsKey(), workerKey(cluster.id), prefix() .. "room:", table.unpack(args))
      args = {}
    end
    for room, set in pairs(byRoom) do
      for c in pairs(set) do
        local joinedAt = memberOf[c] and memberOf[c][room]
        if joinedAt then
          args[#args + 1] = room
          args[#args + 1] = c.id
          args[#args + 1] = joinedAt .. " " .. cluster.id
          n = n + 1
          if #args >= 900 then flush() end
        end
      end
    end
    flush()
    if n > 0 then
      core.log("notice", "rooms: wrote this worker's memberships to Redis again", { "memberships", tostring(n) })
    end
  end

  local okLoop, loop = pcall(require, "gateway.loop")
  if okLoop then svc.loop = loop end
  if cluster then
    cluster.on(M.TOPIC, onMessage)
    cluster.onWorkerGone(onWorkerGone)
    if cluster.onResubscribed then cluster.onResubscribed(onResubscribed) end
  end

  -- api.rooms ------------------------------------------------------------------------
  local R = {}

  -- Tell every worker (op: destroy, say, add, remove); Redis unreachable raises 503.
  local function tell(message)
    if not cluster.publish(M.TOPIC, message) then fail(503, "redis unavailable") end
  end

  -- api.rooms.add(room) -> true when created, false when it existed
  function R.add(room)
    checkName(room, "api.rooms.add")
    return call("EVAL", ADD, 1, roomsKey(), room) == 1
  end

  -- api.rooms.destroy(room) -> true; every member is removed and told
  -- ({"event":"roomDestroyed","room":...}). Raises 404 when there is no such room.
  function R.destroy(room)
    checkName(room, "api.rooms.destroy")
    local r = call("EVAL", DESTROY, 2, roomsKey(), roomKey(room), room, prefix() .. "rooms:worker:")
    if r == 0 then fail(404, M.notFound(room)) end
    tell({ op = "destroy", room = room })
    return true
  end

  -- api.rooms.exists(room) -> boolean
  function R.exists(room)
    checkName(room, "api.rooms.exists")
    return svc.exists(room)
  end

  -- api.rooms.status(room) -> { room, membersCount, members [, truncated] }; 404 raised
  function R.status(room)
    checkName(room, "api.rooms.status")
    local s = svc.status(room)
    if not s then fail(404, M.notFound(room)) end
    return s
  end

  -- api.rooms.broadcast(connection | nil, room, message) -> true. With a connection, it
  -- is the sender (`from`) and the say hooks run; it need not be a member.
  function R.broadcast(connection, room, message)
    checkName(room, "api.rooms.broadcast")
    if message == nil then fail(422, "api.rooms.broadcast: message is required") end
    if connection ~= nil and type(connection) ~= "table" then
      error("api.rooms.broadcast: connection must be a connection table or nil", 2)
    end
    if not svc.exists(room) then fail(404, M.notFound(room)) end
    if connection then
      local ok, rewritten, status = M.runHooks(svc.middleware, "say", connection, room, message)
      if not ok then fail(status, rewritten) end
      message = rewritten
    end
    local text, why = M.sayText(json, room, connection and connection.id or nil, message)
    if not text then fail(422, "api.rooms.broadcast: message cannot be sent as JSON: " .. tostring(why)) end
    tell({ op = "say", room = room, text = text })
    return true
  end

  local function connectionId(id, who)
    if type(id) == "table" then id = id.id end
    if type(id) ~= "string" or id == "" then
      error(who .. ": connection id must be a non-empty string", 3)
    end
    return id
  end

  -- api.rooms.addMember(connectionId, room) -> true. The room must exist (rooms.autoCreate
  -- is for clients' roomAdd). A connection of this worker joins before the call returns
  -- (the join hooks may refuse: raised with their status); one elsewhere is asked through
  -- the cluster and joins shortly after (a refusal there is logged on its worker).
  function R.addMember(id, room)
    id = connectionId(id, "api.rooms.addMember")
    checkName(room, "api.rooms.addMember")
    local c = api.connections.connections[id]
    if c and not c._destroyed and c.type ~= "web" then
      local status, message = svc.join(c, room, false)
      if status ~= 200 then fail(status, message) end
      return true
    end
    if not svc.exists(room) then fail(404, M.notFound(room)) end
    tell({ op = "add", id = id, room = room })
    return true
  end

  -- api.rooms.removeMember(connectionId, room) -> true, or false when it is not a member.
  -- As addMember: at once on this worker, through the cluster for another.
  function R.removeMember(id, room)
    id = connectionId(id, "api.rooms.removeMember")
    checkName(room, "api.rooms.removeMember")
    local c = api.connections.connections[id]
    if c and not c._destroyed and c.type ~= "web" then
      if not svc.isMember(c, room) then
        if not svc.exists(room) then fail(404, M.notFound(room)) end
        return false
      end
      local status, message = svc.leave(c, room, false)
      if status ~= 200 then fail(status, message) end
      return true
    end
    if not svc.exists(room) then fail(404, M.notFound(room)) end
    if call("HEXISTS", roomKey(room), id) == 0 then return false end
    tell({ op = "remove", id = id, room = room })
    return true
  end

  -- api.rooms.roomsOf(connection) -> the rooms a connection of this worker is in (sorted)
  function R.roomsOf(connection)
    local out = {}
    for room in pairs(memberOf[connection] or {}) do out[#out + 1] = room end
    table.sort(out)
    return out
  end

  svc.api = R
  return svc
end

-- The service behind an api object (api.new makes it): the runtime's and the
-- transport's way to it.
local services = setmetatable({}, { __mode = "k" })
function M.attach(api, config)
  local svc = M.new(api, config)
  services[api] = svc
  return svc.api
end
function M.of(api) return services[api] end

-- The room middleware of a registry, in priority order (see registry/loader.lua).
function M.setMiddleware(svc, list)
  svc.middleware = list or {}
end

return M
