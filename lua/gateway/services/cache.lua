-- api.cache (SPEC §9, issue 5): ActionHero's cache on top of api.redis.
--
-- Layout, under P = redis.prefix .. "cache:":
--   P .. key          a hash { value = <JSON of the value>, expireTimestamp, createdAt, readAt }
--                     (timestamps in ms since the epoch, "" when unset), with a Redis PX
--                     expiry when the value has a TTL
--   P .. "lock:" .. key   a string holding the lock name of its holder, with a PX expiry
--   P .. listKey      a list of JSON values (push appends, pop takes from the front: FIFO)
-- The value is encoded by the gateway and never re-encoded inside Redis, so it reads back
-- exactly as it was written. Every operation that must check a lock and act does both in
-- one EVALSHA (MULTI/EXEC is refused on the shared connection), so it is one round trip.
--
-- A lock belongs to one connection of one gateway process: its name is
-- "<process id>:<connection id>". The connection is the one whose action (or middleware)
-- is running in the calling coroutine; outside an action (a timer callback) it is the
-- process's own name.

local core = require("gateway.core")
local integers = require("gateway.services.integers")
local scripts = require("gateway.services.scripts")

local M = {}

M.LOCK_DURATION = 10000 -- ms, lock() without a ttl
M.RETRY_STEP = 50       -- ms between two looks at a lock held by someone else

local NOT_FOUND, EXPIRED, LOCKED = "Object not found", "Object expired", "Object locked"

-- KEYS: data, lock. ARGV: lockName, value JSON, now, ttl (ms, 0 = none).
local SAVE = [[
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[4])
local exp = ''
if ttl > 0 then exp = tostring(tonumber(ARGV[3]) + ttl) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'expireTimestamp', exp,
  'createdAt', ARGV[3], 'readAt', '')
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
]]

-- KEYS: data, lock. ARGV: lockName, now, ttl (ms, 0 = keep). Returns { status, ... }.
local LOAD = [[
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return { 'locked' } end
local h = redis.call('HMGET', KEYS[1], 'value', 'expireTimestamp', 'createdAt', 'readAt')
if not h[1] then return { 'missing' } end
local now = tonumber(ARGV[2])
local exp = tonumber(h[2])
if exp and exp < now then return { 'expired' } end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  exp = now + ttl
  redis.call('HSET', KEYS[1], 'readAt', ARGV[2], 'expireTimestamp', tostring(exp))
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('HSET', KEYS[1], 'readAt', ARGV[2])
end
return { 'ok', h[1], exp and tostring(exp) or '', h[3] or '', h[4] or '' }
]]

-- KEYS: data, lock. ARGV: lockName. 1 deleted, 0 missing, -1 locked.
local DESTROY = [[
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])
]]

-- KEYS: lock. ARGV: lockName, ttl. Taken (or ours already: its ttl is renewed) -> 1.
local LOCK = [[
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
]]

-- KEYS: lock. ARGV: lockName. Free after this -> 1, held by someone else -> 0.
local UNLOCK = [[
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
]]

-- The connection of the action running in this coroutine (nil outside an action).
local function currentConnection()
  return require("gateway.pipeline.processor").connectionOf(coroutine.running())
end
M.currentConnection = currentConnection

function M.new(api, config)
  local redis = api.redis
  local json = api.json
  local prefix = ((config.redis and config.redis.prefix) or "") .. "cache:"
  local lockPrefix = prefix .. "lock:"
  local processId -- made on first use, after any fork

  local cache = { prefix = prefix, lockPrefix = lockPrefix }

  -- The lock name of the caller: "<process id>:<connection id>".
  function cache.lockName()
    processId = processId or core.random_id()
    local c = currentConnection()
    return processId .. ":" .. (c and tostring(c.id) or "process")
  end

  local eval = scripts.runner(redis)

  local function checkKey(fn, key)
    if type(key) ~= "string" and type(key) ~= "number" then
      error("api.cache." .. fn .. ": key must be a string, got " .. type(key), 3)
    end
    return tostring(key)
  end

  local function checkMs(fn, what, v)
    if v == nil or v == false then return 0 end
    if type(v) ~= "number" or v ~= v then
      error("api.cache." .. fn .. ": " .. what .. " must be a number of milliseconds, got " .. type(v), 3)
    end
    if v <= 0 then return 0 end
    return math.tointeger(math.ceil(v)) or error("api.cache." .. fn .. ": " .. what .. " is too large", 3)
  end

  local function encode(fn, value)
    local ok, s = pcall(json.encode, value)
    if not ok then error("api.cache." .. fn .. ": the value cannot be stored as JSON: " .. tostring(s), 3) end
    return s
  end

  local function now() return math.floor(api.now()) end

  local function decode(s)
    local ok, value = pcall(json.decode, s)
    if not ok then return false end
    return true, integers(value)
  end

  local function num(s)
    if s == nil or s == "" then return nil end
    return math.tointeger(tonumber(s)) or tonumber(s)
  end

  -- Wait until the lock on key is free or ours, up to retryMs: true, or false when time
  -- runs out while someone else holds it.
  local function waitLock(key, retryMs, name)
    local deadline = core.now_ms() + retryMs
    while true do
      local holder = redis.call("GET", lockPrefix .. key)
      if not holder or holder == name then return true end
      local left = deadline - core.now_ms()
      if left <= 0 then return false end
      api.sleep(math.min(M.RETRY_STEP, math.ceil(left)))
    end
  end

  -- save(key, value [, ttlMs]) -> true | false, "Object locked"
  function cache.save(key, value, ttlMs)
    key = checkKey("save", key)
    local ttl = checkMs("save", "ttlMs", ttlMs)
    local s = encode("save", value)
    local r = eval(SAVE, 2, prefix .. key, lockPrefix .. key, cache.lockName(), s, now(), ttl)
    if r == 1 then return true end
    return false, LOCKED
  end

  -- load(key [, { expireTimeMS =, retry = }]) -> value, meta | nil, message
  -- meta = { key, expireTimestamp, createdAt, readAt } (readAt: the previous read, or nil).
  function cache.load(key, options)
    key = checkKey("load", key)
    if options ~= nil and type(options) ~= "table" then
      error("api.cache.load: options must be a table, got " .. type(options), 2)
    end
    options = options or {}
    local ttl = checkMs("load", "expireTimeMS", options.expireTimeMS)
    local retry = checkMs("load", "retry", options.retry)
    local name = cache.lockName()
    local deadline = core.now_ms() + retry
    while true do
      local r = eval(LOAD, 2, prefix .. key, lockPrefix .. key, name, now(), ttl)
      local status = r[1]
      if status == "ok" then
        local ok, value = decode(r[2])
        if not ok then return nil, NOT_FOUND end
        return value, { key = key, expireTimestamp = num(r[3]), createdAt = num(r[4]), readAt = num(r[5]) }
      elseif status == "missing" then
        return nil, NOT_FOUND
      elseif status == "expired" then
        return nil, EXPIRED
      end
      -- Locked by someone else: look again until `retry` runs out.
      local left = deadline - core.now_ms()
      if left <= 0 then return nil, LOCKED end
      api.sleep(math.min(M.RETRY_STEP, math.ceil(left)))
    end
  end

  -- destroy(key) -> true (removed) | false (there was nothing) | false, "Object locked"
  function cache.destroy(key)
    key = checkKey("destroy", key)
    local r = eval(DESTROY, 2, prefix .. key, lockPrefix .. key, cache.lockName())
    if r == -1 then return false, LOCKED end
    return r == 1
  end

  -- lock(key [, ttlMs]) -> true when the caller holds the lock (taken, or already ours:
  -- then its ttl is renewed), false when someone else holds it.
  function cache.lock(key, ttlMs)
    key = checkKey("lock", key)
    local ttl = checkMs("lock", "ttlMs", ttlMs)
    if ttl == 0 then ttl = M.LOCK_DURATION end
    return eval(LOCK, 1, lockPrefix .. key, cache.lockName(), ttl) == 1
  end

  -- unlock(key) -> true when the lock is free afterwards, false when someone else holds it.
  function cache.unlock(key)
    key = checkKey("unlock", key)
    return eval(UNLOCK, 1, lockPrefix .. key, cache.lockName()) == 1
  end

  -- checkLock(key [, retryMs]) -> true when free or held by the caller (waiting up to
  -- retryMs for another holder to let go), else false.
  function cache.checkLock(key, retryMs)
    key = checkKey("checkLock", key)
    return waitLock(key, checkMs("checkLock", "retryMs", retryMs), cache.lockName())
  end

  -- push(listKey, value) -> true; pop(listKey) -> value | nil; listLength(listKey) -> n
  function cache.push(listKey, value)
    listKey = checkKey("push", listKey)
    redis.call("RPUSH", prefix .. listKey, encode("push", value))
    return true
  end

  function cache.pop(listKey)
    listKey = checkKey("pop", listKey)
    local s = redis.call("LPOP", prefix .. listKey)
    if not s then return nil end
    local ok, value = decode(s)
    if not ok then return nil end
    return value
  end

  function cache.listLength(listKey)
    listKey = checkKey("listLength", listKey)
    return redis.call("LLEN", prefix .. listKey)
  end

  return cache
end

return M
