-- The spec helper (docs/testing.md), ActionHero's specHelper for busted specs:
--
--   local h = require("gateway.test").start({ config = "gateway.lua" })
--   local r = h.runAction("randomNumber", { multiplier = 10 })
--   assert.is_nil(r.error); assert.equal(200, r.status)
--   h.stop()
--
-- start() runs the gateway's runtime inside this process (build/lua/gateway/testhost.so,
-- core/testhost.c: the C core, its event loop and its Redis client, with the project's
-- config, actions and middleware), against a real Redis: a private redis-server on a unix
-- socket in a temporary folder, stopped by stop() or when the process ends, unless a URL
-- is given. Each call drives the event loop until the answer is there, so actions that
-- wait (api.redis, api.sleep, api.cache, sessions, timers) run as in the gateway. The
-- runtime has a Lua state of its own: params, connection fields and answers cross as JSON.

-- JSON numbers decode as floats: answers get their whole numbers back as integers, so
-- that an id is 1 and not 1.0 in a string ("items/" .. id .. "/").
local integers = require("gateway.services.integers")

local H = {}

local function dirOf(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- build/lua/gateway/testhost.so: from package.cpath, else beside this file's checkout.
local function hostPath()
  local found = package.searchpath("gateway.testhost", package.cpath)
  if found then return found end
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local root = dirOf(dirOf(dirOf(source))) -- lua/gateway/test.lua -> the checkout
  local path = root .. "/build/lua/gateway/testhost.so"
  local f = io.open(path, "rb")
  if not f then
    error("gateway.test: " .. path .. " is missing: build it with `make testhost` in " .. root, 2)
  end
  f:close()
  return path
end

-- The checkout this file is in (for specs that need its build/ folder).
function H._root()
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local root = dirOf(dirOf(dirOf(source)))
  if root:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    root = p:read("l") .. "/" .. root
    p:close()
  end
  return root
end

local testhost
local function loadHost()
  if testhost then return testhost end
  local path = hostPath()
  -- RTLD_GLOBAL ("*"), as the gateway binary is linked with -rdynamic: C modules the
  -- config lists resolve gateway_* from it.
  assert(package.loadlib(path, "*"))
  local open = assert(package.loadlib(path, "luaopen_gateway_testhost"))
  testhost = open()
  return testhost
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function readAll(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("a")
  f:close()
  return text
end

-- A private redis-server: { url, pid, dir }.
local function startRedis(th, binary)
  local dir = th.mkdtemp()
  local sock = dir .. "/redis.sock"
  local pid = th.spawn({ binary, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
    "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no" }, dir .. "/redis.log")
  -- Its socket appears once it accepts connections (os.rename of a name to itself
  -- succeeds when it exists; io.open cannot open a socket).
  for _ = 1, 1000 do
    if os.rename(sock, sock) then break end
    th.sleep(10)
  end
  return { url = "unix://" .. sock .. "?db=0", pid = pid, dir = dir }
end

local function stopRedis(th, redis)
  if not redis or not redis.pid then return end
  th.stop(redis.pid)
  redis.pid = nil
  os.remove(redis.dir .. "/redis.sock")
  os.remove(redis.dir .. "/redis.log")
  os.remove(redis.dir)
end

local Connection = {}
Connection.__index = Connection

-- The C core keeps one runtime per process (a worker is a process: the CPU watchdog and the
-- built-in modules know one Lua state), so one helper runtime runs at a time.
local running = nil

-- helper.redisServer([binary]) -> { url, pid, dir, stop = function() end }: a private
-- redis-server as start() makes one, for specs that start several runtimes in turn on
-- one Redis (start{ redis = server.url }).
function H.redisServer(binary)
  local th = loadHost()
  local redis = startRedis(th, binary or "redis-server")
  redis.stop = function() stopRedis(th, redis) end
  return redis
end

-- Start a runtime. opts:
--   config     the gateway.lua to load (default ./gateway.lua; relative paths in it are
--              relative to it, as for the gateway)
--   redis      a Redis URL to use instead of a private redis-server (also
--              GATEWAY_TEST_REDIS_URL); the specs share its keys with whoever else uses it
--   logLevel   the runtime's log level (default: GATEWAY_LOG_LEVEL, else "warning")
--   redisServer  the redis-server to run (default "redis-server", from PATH)
function H.start(opts)
  opts = opts or {}
  if running then
    error("gateway.test.start: a runtime is already running in this process (the gateway's C core " ..
      "runs one per process): stop it first with h.stop()", 2)
  end
  local th = loadHost()
  local json = th.json
  local config = opts.config
  if config == nil then
    if not exists("gateway.lua") then
      error("gateway.test.start: no config given and no ./gateway.lua", 2)
    end
    config = "gateway.lua"
  end
  if not exists(config) then error("gateway.test.start: " .. config .. " does not exist", 2) end

  local redis
  local url = opts.redis or os.getenv("GATEWAY_TEST_REDIS_URL")
  if not url or url == "" then
    redis = startRedis(th, opts.redisServer or "redis-server")
    url = redis.url
  end
  -- Quiet by default: the runtime's log lines would mix with busted's output.
  local level = opts.logLevel or os.getenv("GATEWAY_LOG_LEVEL")
  if level == nil or level == "" then level = "warning" end
  local ok, host = pcall(th.new, config, url, level)
  if not ok then
    stopRedis(th, redis)
    error("gateway.test.start: " .. tostring(host), 2)
  end
  if not host:wait_redis(10000) then
    local log = redis and readAll(redis.dir .. "/redis.log") or ""
    host:close()
    stopRedis(th, redis)
    error("gateway.test.start: Redis at " .. url .. " did not answer within 10 s" ..
      (log ~= "" and (":\n" .. log) or ""), 2)
  end

  local h = { null = json.null, json = json, url = url,
    redisServer = redis and { pid = redis.pid, dir = redis.dir } }
  local stopped = false
  running = h
  -- Stops the private redis-server when the spec forgets stop() (busted closes its state
  -- at exit); a crash of this process stops it too (it gets SIGTERM).
  local guard = setmetatable({}, { __gc = function()
    if not stopped then
      stopped = true
      if running == h then running = nil end
      host:close()
      stopRedis(th, redis)
    end
  end })
  h._guard = guard

  local function call(req)
    if stopped then error("gateway.test: the runtime is stopped", 3) end
    local text, why = host:call(json.encode(req))
    if not text then error("gateway.test: " .. why, 3) end
    return integers(json.decode(text))
  end

  local function refresh(conn, snapshot)
    if not snapshot then return end
    for k in pairs(conn) do
      if k ~= "_h" then conn[k] = nil end
    end
    for k, v in pairs(snapshot) do conn[k] = v end
  end

  -- The request's connection: a helper connection by id, or one made for the request of
  -- `fields.type` (web by default) with the other fields.
  local function target(req, conn)
    if conn == nil then return req end
    if getmetatable(conn) == Connection then
      req.connection = conn.id
      return req
    end
    local fields = {}
    for k, v in pairs(conn) do
      if k ~= "type" and k ~= "url" and k ~= "headers" then fields[k] = v end
    end
    req.type, req.url, req.headers, req.fields = conn.type, conn.url, conn.headers, fields
    return req
  end

  -- h.runAction(name, params [, connection]) -> { response, error, errors, status, data,
  -- connection }: `response` is what the web answers (data.response, with `error`,
  -- `errors` and the metadata on failure, as ActionHero's specHelper returns it); `data`
  -- a copy of the action's data (params after inputs, headers, ...). `connection` is one
  -- from h.connection, or a table of fields for a connection made for this call (`type`
  -- web, websocket or socket; web by default).
  function h.runAction(name, params, conn)
    local answer = call(target({ kind = "action", name = name, params = params or {} }, conn))
    if answer.response == nil then error("gateway.test.runAction: " .. tostring(answer.error), 2) end
    if getmetatable(conn) == Connection then refresh(conn, answer.connection) end
    return answer
  end

  -- h.runRoute(route, action, params [, connection]) -> the envelope { errors, data,
  -- action, route, status } of a message with that route (handlers, SPEC §6), on a
  -- WebSocket connection by default; { url = "/ws/items/1/" } sends it on a connection
  -- to that consumer URL (nil and { status, error } when it refuses the connection).
  function h.runRoute(route, action, params, conn)
    local answer = call(target({ kind = "route", route = route, action = action, params = params or {} }, conn))
    if answer.misuse then error("gateway.test.runRoute: " .. tostring(answer.error), 2) end
    if answer.envelope == nil then return nil, answer end -- a consumer URL that refused
    if getmetatable(conn) == Connection then refresh(conn, answer.connection) end
    if answer.envelope == json.null then return nil end
    return answer.envelope
  end

  -- h.connection{ type = "websocket", user = {...}, url = ..., headers = {...}, ... } ->
  -- a connection kept for the calls it is passed to (connection.user set by one action
  -- is there for the next, as on a real client's), or nil and { status, error } when the
  -- consumer at `url` refuses it. Its fields are refreshed after each call.
  function h.connection(fields)
    local req = target({ kind = "open" }, fields or {})
    req.kind = "open"
    local answer = call(req)
    if not answer.connection then return nil, answer end
    local conn = setmetatable({}, Connection)
    refresh(conn, answer.connection)
    rawset(conn, "_h", h)
    return conn
  end

  -- What the gateway pushed to a connection from h.connection since the last call
  -- (api.connections.send, api.consumers.groupSend/broadcast): a list, each message
  -- decoded when it is JSON, else its text.
  function h.messages(conn)
    local list = call({ kind = "messages", connection = conn.id }).messages
    for i, text in ipairs(list) do
      local ok, value = pcall(json.decode, text)
      if ok and value ~= nil then list[i] = integers(value) end
    end
    return list
  end

  function h.closeConnection(conn)
    call({ kind = "close", connection = conn.id })
  end

  -- h.redis.call(cmd, ...) -> the reply (raises on an error reply); h.redis.pcall returns
  -- nil, err instead. On the helper's own connection to the same Redis: nothing is
  -- refused there (FLUSHDB, KEYS), unlike api.redis.
  h.redis = {
    call = function(...)
      local reply, err = host:redis(...)
      if reply == nil and err then error("redis: " .. err, 2) end
      return reply
    end,
    pcall = function(...) return host:redis(...) end,
  }

  -- h.wait(ms): turn the event loop for `ms` without a request, so that what an action
  -- left behind runs (an api.timer.after callback, a push to a connection).
  function h.wait(ms)
    if stopped then error("gateway.test: the runtime is stopped", 2) end
    host:run(ms)
  end

  -- Empty the Redis database (between specs).
  function h.flush()
    return h.redis.call("FLUSHDB")
  end

  function h.stop()
    if stopped then return end
    stopped = true
    if running == h then running = nil end
    host:close()
    stopRedis(th, redis)
  end

  return h
end

function Connection:messages()
  return self._h.messages(self)
end

function Connection:close()
  self._h.closeConnection(self)
end

return H
