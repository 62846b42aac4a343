-- Builds the `api` object every action, middleware and route file sees (SPEC §3.5).
-- The parts that wait (sleep, timers, Redis) come from gateway.loop and gateway.redis,
-- which exist only inside the gateway; elsewhere (busted specs) they raise a clear error
-- when called.

local core = require("gateway.core")
local cjson = require("cjson")
local connections = require("gateway.connections")
local permissions = require("gateway.permissions")

local M = {}

local function readonly(t, path)
  local proxies = {}
  return setmetatable({}, {
    __index = function(_, k)
      local v = t[k]
      if type(v) == "table" then
        proxies[k] = proxies[k] or readonly(v, path .. "." .. tostring(k))
        return proxies[k]
      end
      return v
    end,
    __newindex = function(_, k)
      error(path .. " is read-only (tried to set " .. tostring(k) .. ")", 2)
    end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
  })
end
M.readonly = readonly

-- A value that encodes as `[]` (lua-cjson 2.1.0 encodes every empty table as `{}`): a
-- string token, unguessable per process, that our encode() rewrites. api.json.empty_array;
-- resources use it for an empty list.
local EMPTY_ARRAY = "\0gw:empty_array:" .. core.random_id() .. "\0"
local EMPTY_ENCODED = '"\\u0000' .. EMPTY_ARRAY:sub(2, -2) .. '\\u0000"'
local EMPTY_PATTERN = EMPTY_ENCODED:gsub("%p", "%%%0")
M.EMPTY_ARRAY = EMPTY_ARRAY

-- One cjson instance of our own, so users' settings cannot change what the gateway emits.
local function newJson()
  local json = cjson.new()
  json.encode_sparse_array(true)
  json.encode_invalid_numbers("null")
  json.decode_invalid_numbers(false)
  local encode = json.encode
  json.encode = function(value)
    local text = encode(value)
    if text:find(EMPTY_ENCODED, 1, true) then text = text:gsub(EMPTY_PATTERN, "[]") end
    return text
  end
  return json
end
M.newJson = newJson

local function unavailable(name)
  return function() error(name .. " is only available inside the gateway", 2) end
end

function M.new(config)
  local okLoop, loop = pcall(require, "gateway.loop")
  if not okLoop then loop = nil end
  local okRedis, redis = pcall(require, "gateway.redis")
  if not okRedis then redis = nil end
  local json = newJson()

  local api = {
    config = readonly(config, "api.config"),
    json = { encode = json.encode, decode = json.decode, null = json.null, empty_array = EMPTY_ARRAY },
    regex = core.regex,
    validators = require("gateway.validators"),
    formatters = require("gateway.formatters"),
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

  api.sleep = loop and loop.sleep or unavailable("api.sleep")
  api.timer = { after = loop and loop.after or unavailable("api.timer.after") }

  -- api.redis.call(cmd, ...) -> reply; api.redis.pcall(cmd, ...) -> reply | nil, err;
  -- api.redis.connected() -> boolean. See core/gw_lib_redis.c.
  api.redis = {
    call = redis and redis.call or unavailable("api.redis.call"),
    pcall = redis and redis.pcall or unavailable("api.redis.pcall"),
    connected = redis and redis.connected or function() return false end,
  }

  -- api.cache: ActionHero's cache on api.redis (SPEC §9). See gateway/cache.lua.
  api.cache = require("gateway.cache").new(api, config)

  -- api.session.create/load/destroy (SPEC §9 sessions): see gateway.session.
  api.session = require("gateway.session").new(api)

  function api.connections.count()
    local n = 0
    for _ in pairs(api.connections.connections) do n = n + 1 end
    return n
  end

  -- api.connections.send(id, message) -> true | false: server push to a WebSocket or
  -- TCP connection; a table is sent as JSON.
  function api.connections.send(id, message)
    return connections.send(api.connections.connections, json, id, message)
  end

  return api
end

return M
