-- Groups of consumer connections (rest_framework_channels' group_send): every WebSocket
-- opened for a consumer (gateway.registry.consumers) belongs to one group: the
-- connections of the same consumer with the same values of the URL kwargs its `group`
-- names, or, without `group`, the connections of the same URL path. This module keeps
-- them indexed while they are open and builds api.consumers:
--   api.consumers.broadcast(target, message) -> n   target: a URL path ("/ws/rooms/lobby/")
--                                                   or URL kwargs ({ room_id = "lobby" })
--   api.consumers.groupSend(connection, message) -> n   the connection's group, itself included
--   api.consumers.members(target) -> { id, ... }       who broadcast(target) would reach
--                                                   (sorted; an empty JSON array when none)
-- `message` is sent as it is when a string, else as JSON (encoded once); n is the number
-- of connections it was queued for. This process only: the realtime issue takes groups
-- across workers and nodes.

local connections = require("gateway.services.connections")

local M = {}

-- connection -> { path =, group = } between the upgrade and the open (weak: an upgrade
-- whose handshake never completes leaves nothing behind).
local prepared = setmetatable({}, { __mode = "k" })
-- Open consumer connections: connection -> its entry; path -> set; group -> set.
local members, byPath, byGroup = {}, {}, {}

-- On the upgrade: what the connection joins once it opens.
function M.prepare(connection, consumer, path)
  local group
  if consumer.group then
    local parts = { consumer.key }
    for _, name in ipairs(consumer.group) do parts[#parts + 1] = tostring(connection.kwargs[name] or "") end
    group = table.concat(parts, "\0")
  else
    group = consumer.key .. "\0" .. path
  end
  prepared[connection] = { path = path, group = group }
end

local function add(index, key, connection)
  local set = index[key]
  if not set then
    set = {}
    index[key] = set
  end
  set[connection] = true
end

local function remove(index, key, connection)
  local set = index[key]
  if not set then return end
  set[connection] = nil
  if next(set) == nil then index[key] = nil end
end

function M.opened(connection)
  local entry = prepared[connection]
  if not entry then return end
  prepared[connection] = nil
  members[connection] = entry
  add(byPath, entry.path, connection)
  add(byGroup, entry.group, connection)
end

function M.closed(connection)
  local entry = members[connection]
  if not entry then return end
  members[connection] = nil
  remove(byPath, entry.path, connection)
  remove(byGroup, entry.group, connection)
end

-- The connections `target` names, as a list.
local function targets(target)
  local out = {}
  if type(target) == "string" then
    for c in pairs(byPath[target] or {}) do out[#out + 1] = c end
  elseif type(target) == "table" then
    for c in pairs(members) do
      local all = true
      for k, v in pairs(target) do
        if c.kwargs == nil or c.kwargs[k] ~= tostring(v) then
          all = false
          break
        end
      end
      if all then out[#out + 1] = c end
    end
  else
    error("target must be a URL path or a table of URL kwargs", 3)
  end
  return out
end

local function sendAll(json, list, message, who)
  local text = message
  if type(message) ~= "string" then
    local ok, encoded = pcall(json.encode, message)
    if not ok then error(who .. ": " .. tostring(encoded), 3) end
    text = encoded
  end
  local n = 0
  for _, c in ipairs(list) do
    if connections.sendText(c, text) then n = n + 1 end
  end
  return n
end

function M.api(json)
  local api = {}
  function api.broadcast(target, message)
    return sendAll(json, targets(target), message, "api.consumers.broadcast")
  end
  function api.groupSend(connection, message)
    local entry = type(connection) == "table" and members[connection]
    if not entry then return 0 end
    local list = {}
    for c in pairs(byGroup[entry.group]) do list[#list + 1] = c end
    return sendAll(json, list, message, "api.consumers.groupSend")
  end
  function api.members(target)
    local ids = {}
    for _, c in ipairs(targets(target)) do ids[#ids + 1] = c.id end
    table.sort(ids)
    if #ids == 0 and json.empty_array then return json.empty_array end
    return ids
  end
  return api
end

return M
