-- Live resources (djangochannelsrestframework's observers): the subscriptions of this
-- worker's persistent connections to objects and collections of a resource, and the
-- pushes after a write. The generics (gateway.registry.resources) subscribe and announce
-- writes through api.resources; a write is one cluster message (api.cluster, topic
-- "live:<resource>") that every worker holding subscriptions to the resource delivers to
-- its own subscribers, each connection at most once, through connections.sendText.
--
--   api.resources.notify(resource, id, action, object) -> true | false, reason
--       announce a write done outside the generics (action: create, update,
--       partial_update, remove; object: the object as stored, nil or omitted on remove).
--
-- What a subscription is, and how its pushes are routed and checked, is the generics'
-- business: a subscription `sub` carries `resource`, `key` (its name on the connection),
-- `id` (an instance's; nil for the collection), `routeOf(object, id)` -> the route of the
-- push, and optionally `allowed(object)` -> boolean (object permissions, checked again
-- for every push; it may wait).

local core = require("gateway.core")
local connections = require("gateway.services.connections")

local M = {}

M.TOPIC = "live:"
M.STATUS = { create = 201, update = 200, partial_update = 200, remove = 204 }

-- resource -> id -> { [sub] = true }, and resource -> { [sub] = true } (collections).
local byInstance, byCollection = {}, {}
-- connection -> { [resource .. "\0" .. key] = sub }, and how many it holds.
local byConnection, counts = {}, {}
-- resource -> the cluster whose topic for it this worker handles, and how many local
-- subscriptions it holds: a worker handles a resource's messages only while it has
-- subscribers for it, so the others drop them unread (the cluster reads a message's topic
-- before decoding it).
local watching, held = {}, {}

local function add(set, sub)
  set[sub] = true
end

-- The last local subscription to the resource ended: stop handling its topic (a handler
-- of nil is none: the cluster then drops its messages unread).
local function unwatch(resource)
  local cluster = watching[resource]
  watching[resource] = nil
  if cluster then cluster.on(M.TOPIC .. resource, nil) end
end

local function unindex(sub)
  sub.active = false
  local n = (held[sub.resource] or 1) - 1
  if n > 0 then
    held[sub.resource] = n
  else
    held[sub.resource] = nil
    unwatch(sub.resource)
  end
  if sub.id then
    local ids = byInstance[sub.resource]
    local set = ids and ids[sub.id]
    if set then
      set[sub] = nil
      if next(set) == nil then ids[sub.id] = nil end
      if next(ids) == nil then byInstance[sub.resource] = nil end
    end
  else
    local set = byCollection[sub.resource]
    if set then
      set[sub] = nil
      if next(set) == nil then byCollection[sub.resource] = nil end
    end
  end
end

-- The subscriptions a write of (resource, id) reaches: the instance's first, then the
-- collection's, one per connection.
local function reached(resource, id)
  local list, seen = {}, {}
  local function take(set)
    if not set then return end
    for sub in pairs(set) do
      local c = sub.connection
      if not seen[c] then
        seen[c] = true
        list[#list + 1] = sub
      end
    end
  end
  local ids = byInstance[resource]
  take(ids and ids[id])
  take(byCollection[resource])
  return list
end

-- Is a subscriber still allowed to see `object`? A check that raises is logged and
-- counts as a refusal.
local function allowed(sub, object)
  if not sub.allowed then return true end
  local ok, result = xpcall(sub.allowed, debug.traceback, object)
  if ok then return result == true end
  core.log("error", "live resources: an object permission raised while checking a push",
    { "resource", sub.resource, "connection", tostring(sub.connection.id), "error", tostring(result) })
  return false
end

-- One cluster message: push its envelope to every local subscriber it reaches.
function M.deliver(json, payload)
  if type(payload) ~= "table" then return 0 end
  local resource, action, id = payload.resource, payload.action, payload.id
  local status = M.STATUS[action]
  if type(resource) ~= "string" or not status then return 0 end
  if type(id) == "number" then id = tostring(math.tointeger(id) or id) end
  if type(id) ~= "string" then return 0 end
  local list = reached(resource, id)
  if #list == 0 then return 0 end
  local object = payload.object
  if object == json.null then object = nil end
  local dataText = "null"
  if action ~= "remove" then
    local ok, text = pcall(json.encode, object == nil and json.null or object)
    if not ok then return 0 end
    dataText = text
  end
  local head = '{"errors":[],"data":' .. dataText .. ',"action":"' .. action .. '","route":'
  local tail = ',"status":' .. status .. "}"
  local texts, sent = {}, 0
  for _, sub in ipairs(list) do
    -- A check may wait: the subscription can end meanwhile.
    if sub.active and allowed(sub, object) and sub.active then
      local route = sub.routeOf(object, id) or ""
      local text = texts[route]
      if not text then
        text = head .. json.encode(route) .. tail
        texts[route] = text
      end
      if connections.sendText(sub.connection, text) then sent = sent + 1 end
    end
  end
  return sent
end

-- Handle the resource's topic on this worker (from its first local subscription on; the
-- cluster's one channel is subscribed already, so no message published after this call
-- is missed).
function M.watch(cluster, json, resource)
  if watching[resource] == cluster then return end
  watching[resource] = cluster
  cluster.on(M.TOPIC .. resource, function(payload) M.deliver(json, payload) end)
end

-- Forget every subscription of a connection (it closed).
function M.closed(connection)
  local subs = byConnection[connection]
  if not subs then return end
  byConnection[connection], counts[connection] = nil, nil
  for _, sub in pairs(subs) do unindex(sub) end
end

connections.onDestroy(M.closed)

-- How many subscriptions this worker holds (instances and collections), for specs and
-- /metrics-like checks.
function M.count()
  local n = 0
  for _, c in pairs(counts) do n = n + c end
  return n
end

-- api.resources for one api: config for general.maxSubscriptions (read at each subscribe,
-- so a reload changes it), the cluster for the messages.
function M.api(json, cluster, config)
  local resources = {}

  -- Subscribe `connection`: true, or nil, the refusal's message and status.
  function resources._subscribe(connection, sub)
    if not connections.canPush(connection) then
      return nil, "subscribe needs a WebSocket or TCP connection", 400
    end
    local name = sub.resource .. "\0" .. sub.key
    local subs = byConnection[connection]
    local old = subs and subs[name]
    if not old then
      local max = math.tointeger(config.general and config.general.maxSubscriptions) or 1000
      if (counts[connection] or 0) >= max then
        return nil, "too many subscriptions on this connection (general.maxSubscriptions is "
          .. max .. ")", 429
      end
    end
    if not subs then
      subs = {}
      byConnection[connection] = subs
    end
    if old then unindex(old) else counts[connection] = (counts[connection] or 0) + 1 end
    sub.connection, sub.active = connection, true
    subs[name] = sub
    held[sub.resource] = (held[sub.resource] or 0) + 1
    if sub.id then
      local ids = byInstance[sub.resource]
      if not ids then
        ids = {}
        byInstance[sub.resource] = ids
      end
      local set = ids[sub.id]
      if not set then
        set = {}
        ids[sub.id] = set
      end
      add(set, sub)
    else
      local set = byCollection[sub.resource]
      if not set then
        set = {}
        byCollection[sub.resource] = set
      end
      add(set, sub)
    end
    M.watch(cluster, json, sub.resource)
    return true
  end

  -- End the subscription `key` of `resource` on `connection`: true when there was one.
  function resources._unsubscribe(connection, resource, key)
    local subs = byConnection[connection]
    local name = resource .. "\0" .. key
    local sub = subs and subs[name]
    if not sub then return false end
    subs[name] = nil
    counts[connection] = counts[connection] - 1
    if counts[connection] == 0 then byConnection[connection], counts[connection] = nil, nil end
    unindex(sub)
    return true
  end

  -- api.resources.notify(resource, id, action, object) -> true | false, reason
  function resources.notify(resource, id, action, object)
    if type(resource) ~= "string" or resource == "" then
      error("api.resources.notify: resource must be a resource name", 2)
    end
    if action == "destroy" then action = "remove" end
    if not M.STATUS[action] then
      error("api.resources.notify: action must be create, update, partial_update or remove", 2)
    end
    if type(id) == "number" and math.tointeger(id) then id = tostring(math.tointeger(id)) end
    if type(id) ~= "string" or id == "" then
      error("api.resources.notify: id must be an integer or a string", 2)
    end
    if object ~= nil and type(object) ~= "table" then
      error("api.resources.notify: object must be a table (or nil on remove)", 2)
    end
    local ok, sent, reason = pcall(cluster.publish, M.TOPIC .. resource,
      { resource = resource, id = id, action = action, object = object })
    if not ok then return false, tostring(sent) end
    return sent, reason
  end

  return resources
end

return M
