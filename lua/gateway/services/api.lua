-- Builds the `api` object every action, middleware and route file sees (SPEC §3.5).
-- api.json, api.regex, api.redis and api.sleep are the gateway's built-in C modules
-- (core/modules/builtins.c), passed in by name; outside the gateway (busted specs) json and
-- regex come from gateway.core and the parts that wait raise a clear error when called.

local core = require("gateway.core")
local connections = require("gateway.services.connections")
local permissions = require("gateway.pipeline.permissions")

local M = {}

-- A view of `t` that refuses writes. The views of its tables are cached by the table, not
-- the key, so a key that a reload points at a new table (core/vm/config.c) shows the new one.
local function readonly(t, path)
  local proxies = setmetatable({}, { __mode = "k" })
  return setmetatable({}, {
    __index = function(_, k)
      local v = t[k]
      if type(v) == "table" then
        local p = proxies[v]
        if not p then
          p = readonly(v, path .. "." .. tostring(k))
          proxies[v] = p
        end
        return p
      end
      return v
    end,
    __newindex = function(_, k)
      error(path .. " is read-only (tried to set " .. tostring(k) .. ")", 2)
    end,
    -- Nested tables come out read-only too, as through __index.
    __pairs = function(proxy)
      return function(_, k)
        local nk, v = next(t, k)
        if type(v) == "table" then v = proxy[nk] end
        return nk, v
      end, proxy, nil
    end,
    __len = function() return #t end,
  })
end
M.readonly = readonly

local function unavailable(name)
  return function() error(name .. " is only available inside the gateway", 2) end
end

-- Runs an api.timer.after callback in its task; what it raises is logged, not lost.
local function runCallback(fn)
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then core.log("error", "timer callback failed", { "error", tostring(err) }) end
end

-- builtins: name -> the functions table of each built-in module, when in the gateway.
function M.new(config, builtins)
  builtins = builtins or {}
  local okLoop, loop = pcall(require, "gateway.loop")
  if not okLoop then loop = nil end
  -- api.timer.after(ms, fn)
  local function timerAfter(ms, fn)
    if type(fn) ~= "function" then
      error("bad argument #2 to 'after' (function expected, got " .. type(fn) .. ")", 2)
    end
    return loop.after(ms, runCallback, fn)
  end
  local json = builtins.json or require("gateway.json")
  local redis = builtins.redis

  local api = {
    config = readonly(config, "api.config"),
    json = json,
    regex = builtins.regex or require("gateway.regex"),
    validators = require("gateway.pipeline.validators"),
    formatters = require("gateway.pipeline.formatters"),
    actions = { actions = {}, versions = {} },
    documentation = { documentation = {} },
    connections = { connections = {} },
    permissions = permissions.new(), -- replaced by each (re)load: see loader.load
  }

  -- api.log(message, level, fields)
  function api.log(message, level, fields)
    if type(message) ~= "string" then message = json.encode(message) end
    core.log(level or "info", message, fields)
  end

  -- api.now() -> milliseconds since the epoch (fractional)
  api.now = core.wall_ms

  api.sleep = builtins.sleep and builtins.sleep.sleep or unavailable("api.sleep")
  api.timer = { after = loop and timerAfter or unavailable("api.timer.after") }

  -- api.redis.call(cmd, ...) -> reply; api.redis.pcall(cmd, ...) -> reply | nil, err;
  -- api.redis.connected() -> boolean. See core/modules/mod_redis.c.
  api.redis = {
    call = redis and redis.call or unavailable("api.redis.call"),
    pcall = redis and redis.pcall or unavailable("api.redis.pcall"),
    connected = redis and redis.connected or function() return false end,
  }

  -- api.cache: ActionHero's cache on api.redis (SPEC §9). See gateway/services/cache.lua.
  api.cache = require("gateway.services.cache").new(api, config)

  -- api.session.create/load/destroy (SPEC §9 sessions): see gateway.session.
  api.session = require("gateway.services.session").new(api)

  function api.connections.count()
    local n = 0
    for _ in pairs(api.connections.connections) do n = n + 1 end
    return n
  end

  -- api.tasks: background jobs on Redis (docs/tasks.md). See gateway/services/tasks.lua.
  api.tasks = require("gateway.services.tasks").new(api, config)

  -- api.cluster: messages between the workers sharing this Redis (gateway.services.cluster).
  api.cluster = require("gateway.services.cluster").new(json, config, redis)

  -- api.rooms: ActionHero's chatRoom across the cluster (gateway.services.rooms).
  api.rooms = require("gateway.services.rooms").attach(api, config)

  -- api.resources.notify: live resources (gateway.services.live).
  api.resources = require("gateway.services.live").api(json, api.cluster, config)

  -- api.consumers.broadcast / groupSend / members: see gateway.services.consumers.
  api.consumers = require("gateway.services.consumers").api(json)

  -- api.connections.send(id, message) -> true | false, reason: server push to a WebSocket
  -- or TCP connection on any worker or node; a table is sent as JSON. A connection of this
  -- worker gets it at once (true: queued for it). Any other id is published to the
  -- cluster on the topic "gateway.send", and the worker holding it queues it: true then
  -- means published (whether a worker holds the id is not known here; a message to a
  -- closed or unknown connection is dropped); false, reason when Redis is unreachable.
  function api.connections.send(id, message)
    local registry = api.connections.connections
    if registry[id] or not api.cluster.distributed() then
      return connections.send(registry, json, id, message)
    end
    return api.cluster.publish("gateway.send", { id = id, text = connections.text(json, message) })
  end
  api.cluster.on("gateway.send", function(payload)
    if type(payload) == "table" and type(payload.id) == "string" and type(payload.text) == "string" then
      connections.send(api.connections.connections, json, payload.id, payload.text)
    end
  end)

  return api
end

return M
