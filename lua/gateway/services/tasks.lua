-- api.tasks (issue 18, docs/tasks.md): ActionHero's background tasks on Redis. This file
-- is the queue (enqueue and the look-ups, in every process), the worker that takes and
-- runs jobs, and the scheduler that moves due delayed jobs and enqueues recurring tasks
-- (only where tasks.enabled). Loading task files is gateway.registry.tasks's part; the
-- runtime hands the loaded set in with setRegistry.
--
-- Layout, under P = redis.prefix .. "tasks:":
--   P .. "queue:" .. q   a list of job JSON, FIFO (RPUSH in, LPOP out)
--   P .. "queues"        a set of the queue names ever used ("*" takes from all, by name)
--   P .. "delayed"       a zset job JSON -> due time (ms since the epoch)
--   P .. "processing"    a zset "<seq> <job JSON>" -> deadline (ms); <seq> (P .. "seq")
--                        makes each take its own member, so a late ack from a worker whose
--                        job was already re-queued cannot remove another worker's claim
--   P .. "failed"        a list of JSON records { job = <job JSON>, error, traceback, ... }
--   P .. "stats"         a hash of counters: processed, failed, retried, reaped, and
--                        "processed:<task>", "failed:<task>"
--   P .. "recurring:" .. name   SET NX PX frequency: one enqueue per period per cluster
--   P .. "moves"         bumped by each scheduler pass that moved due jobs: every worker
--                        reads it each schedulerInterval and looks at its queues when it changed
-- Every operation of more than one command is one server-side script (EVALSHA), so it is
-- atomic: two processes can never take the same job, nor move the same due job twice.
-- Scripts reach keys they build from the prefix, so Redis Cluster is not supported here.

local core = require("gateway.core")
local integers = require("gateway.services.integers")
local scripts = require("gateway.services.scripts")
local inputs = require("gateway.pipeline.inputs")

local M = {}

M.HEARTBEAT_DIVISOR = 3 -- heartbeats per visibilityTimeout
M.MOVE_LIMIT = 1000     -- due jobs moved per scheduler pass (the rest on the next)
M.REAP_LIMIT = 100      -- expired claims re-queued per poll
M.STATS_EVERY = 5000    -- ms between two reads of the queue lengths for /metrics
M.MAX_OUTAGES = 100     -- retries of a job that met a Redis outage, on top of its own

-- Scripts ---------------------------------------------------------------------------

-- The queue a job names ('default' for one that does not parse, so it is never lost).
local QUEUE_OF = [[
local function queueOf(job)
  local ok, j = pcall(cjson.decode, job)
  if ok and type(j) == 'table' and type(j.queue) == 'string' and j.queue ~= '' then return j.queue end
  return 'default'
end
]]

-- KEYS: queue list, queues set. ARGV: queue name, job. -> queue length
local ENQUEUE = [[
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('RPUSH', KEYS[1], ARGV[2])
]]

-- KEYS: delayed, queues set, moves counter. ARGV: now, queue key prefix, limit.
-- -> { jobs moved, moves counter } (the counter tells every scheduler that some other one
-- moved jobs, so each wakes its own worker at once)
local MOVE_DUE = QUEUE_OF .. [[
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  local q = queueOf(job)
  redis.call('SADD', KEYS[2], q)
  redis.call('RPUSH', ARGV[2] .. q, job)
end
if #due > 0 then redis.call('INCR', KEYS[3]) end
return { #due, tonumber(redis.call('GET', KEYS[3]) or '0') }
]]

-- KEYS: processing, queues set, seq, stats. ARGV: now, deadline, queue key prefix, max
-- jobs, then the queue names ('*': every queue in the set, by name).
-- Re-queues (at the front) the claims whose deadline passed, then takes up to max jobs.
-- -> { reaped, member, ... }
local TAKE = QUEUE_OF .. [[
local reaped = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ]] .. M.REAP_LIMIT .. [[)
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local job = string.match(member, '^%d+ (.*)$') or member
  local q = queueOf(job)
  redis.call('SADD', KEYS[2], q)
  redis.call('LPUSH', ARGV[3] .. q, job)
  reaped = reaped + 1
end
if reaped > 0 then redis.call('HINCRBY', KEYS[4], 'reaped', reaped) end
local queues = {}
if ARGV[5] == '*' then
  queues = redis.call('SMEMBERS', KEYS[2])
  table.sort(queues)
else
  for i = 5, #ARGV do queues[#queues + 1] = ARGV[i] end
end
local out = { reaped }
local max = tonumber(ARGV[4])
for _, q in ipairs(queues) do
  while #out - 1 < max do
    local job = redis.call('LPOP', ARGV[3] .. q)
    if not job then break end
    local member = tostring(redis.call('INCR', KEYS[3])) .. ' ' .. job
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    out[#out + 1] = member
  end
  if #out - 1 >= max then break end
end
return out
]]

-- KEYS: processing, stats. ARGV: member, task. -> 1 acked, 0 the claim was gone
-- (re-queued after its deadline: the job runs again elsewhere)
local ACK = [[
redis.call('HINCRBY', KEYS[2], 'processed', 1)
redis.call('HINCRBY', KEYS[2], 'processed:' .. ARGV[2], 1)
return redis.call('ZREM', KEYS[1], ARGV[1])
]]

-- KEYS: processing, delayed, stats. ARGV: member, due, job for the next attempt.
local RETRY = [[
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'retried', 1)
return 1
]]

-- KEYS: processing, failed, stats. ARGV: member, record, max kept, task.
local FAIL = [[
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
redis.call('HINCRBY', KEYS[3], 'failed', 1)
redis.call('HINCRBY', KEYS[3], 'failed:' .. ARGV[4], 1)
return 1
]]

-- KEYS: failed, queue, queues set. ARGV: record, job, queue name. -> 1 moved back, 0 gone
local RETRY_FAILED = [[
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
]]

-- KEYS: queues set, delayed, processing, failed, stats. ARGV: queue key prefix.
-- -> { delayed, processing, failed, { queue, length, ... }, { counter, value, ... } }
local STATS = [[
local qs = redis.call('SMEMBERS', KEYS[1])
table.sort(qs)
local lens = {}
for _, q in ipairs(qs) do
  lens[#lens + 1] = q
  lens[#lens + 1] = redis.call('LLEN', ARGV[1] .. q)
end
return { redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('LLEN', KEYS[4]),
  lens, redis.call('HGETALL', KEYS[5]) }
]]

local function errText(e)
  if type(e) == "table" then return tostring(e.message or e.err or e.error or "error") end
  return tostring(e)
end

-- The backoff before attempt n + 1 (n failures so far): the list's n-th entry, its last
-- one past its end.
function M.backoffFor(task, n)
  local b = task.backoff
  return b[math.min(n, #b)] or 0
end

-- A deep copy, so enqueue's inputs and middleware never change the caller's table.
local function copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[copy(k, seen)] = copy(x, seen) end
  return setmetatable(out, getmetatable(v))
end

-- Deep equality of two decoded values (del/delDelayed/scheduledAt match params so).
local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then
    if type(a) == "number" and type(b) == "number" then return a == b end
    return false
  end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.same = same

-- config: the gateway config; api: the api table (redis, json, sleep, log).
function M.new(api, config)
  local json = api.json
  local redis = api.redis
  local tconf = config.tasks or {}
  local P = ((config.redis and config.redis.prefix) or "") .. "tasks:"
  local K = {
    queuePrefix = P .. "queue:", queues = P .. "queues", delayed = P .. "delayed",
    processing = P .. "processing", failed = P .. "failed", stats = P .. "stats",
    seq = P .. "seq", recurring = P .. "recurring:", moves = P .. "moves",
  }
  local reg = { tasks = {}, middleware = {}, plans = {} }
  local inputOpts = {}
  local loop -- gateway.loop, when in the gateway
  local state = {
    -- member -> the coroutine running it (true while it is about to start). Weak, so a job
    -- whose task the vm dropped (stopped by general.cpuTimeout) frees its slot and is no
    -- longer kept alive by the heartbeat: it is re-queued after the visibility timeout.
    running = setmetatable({}, { __mode = "v" }), stopping = false, started = false,
    polling = false, again = false, pollToken = 0, pollAt = nil,
    warnedAt = -math.huge,
  }
  local function nrunning()
    local n = 0
    for _ in pairs(state.running) do n = n + 1 end
    return n
  end
  local counts = {} -- task -> { ok, failed, retried } in this process (for /metrics)

  local tasks = { tasks = reg.tasks, keys = K, counts = counts }

  local eval = scripts.runner(redis)
  tasks._eval = eval

  local function now() return math.floor(api.now()) end

  local function count(name, what)
    local c = counts[name]
    if not c then
      c = { ok = 0, failed = 0, retried = 0 }
      counts[name] = c
    end
    c[what] = c[what] + 1
  end

  local function decodeJob(s)
    local ok, job = pcall(json.decode, s)
    if not ok or type(job) ~= "table" then return nil end
    return integers(job)
  end

  local function checkName(fn, name)
    if type(name) ~= "string" then
      error("api.tasks." .. fn .. ": the task name must be a string, got " .. type(name), 3)
    end
    local task = reg.tasks[name]
    if not task then error("api.tasks." .. fn .. ': unknown task "' .. name .. '"', 3) end
    return task
  end

  local function checkQueue(fn, queue, task)
    if queue == nil then return task and task.queue or "default" end
    if type(queue) ~= "string" or queue == "" or queue == "*" then
      error("api.tasks." .. fn .. ": the queue must be a non-empty string other than \"*\"", 3)
    end
    return queue
  end

  -- Runs one hook of each of the task's middleware in order; false (with a reason) from
  -- one stops there.
  local function runHooks(hook, name, job, extra)
    for _, m in ipairs(reg.plans[name] or {}) do
      local fn = m[hook]
      if fn then
        local r, why = fn(job, extra)
        if r == false then
          return false, why or ("refused by task middleware " .. m.name)
        end
      end
    end
    return true
  end

  -- Checks params against the task's inputs (defaults and formatters applied in place);
  -- raises a 422 error naming the first failing input.
  local function checkInputs(task, params)
    local failures = inputs.process(task, params, nil, inputOpts)
    if failures then
      error({ status = 422, message = failures[1].message, key = failures[1].key }, 0)
    end
  end

  -- Builds a job, runs preEnqueue, and hands its JSON to `put`; postEnqueue after.
  -- -> job id | false, reason
  local function enqueueWith(fn, name, params, queue, put)
    local task = checkName(fn, name)
    if params == nil then params = {} end
    if type(params) ~= "table" then
      error("api.tasks." .. fn .. ": params must be a table, got " .. type(params), 3)
    end
    queue = checkQueue(fn, queue, task)
    params = copy(params)
    checkInputs(task, params)
    local job = {
      id = core.random_id(), task = name, params = params, queue = queue,
      enqueuedAt = now(), attempts = 0,
    }
    local ok, why = runHooks("preEnqueue", name, job)
    if not ok then return false, why end
    local okEnc, s = pcall(json.encode, job)
    if not okEnc then
      error("api.tasks." .. fn .. ": params cannot be stored as JSON: " .. tostring(s), 3)
    end
    put(s, job.queue)
    runHooks("postEnqueue", name, job)
    return job.id
  end

  -- enqueue(name, params [, queue]) -> job id | false, reason
  function tasks.enqueue(name, params, queue)
    return enqueueWith("enqueue", name, params, queue, function(s, q)
      eval(ENQUEUE, 2, K.queuePrefix .. q, K.queues, q, s)
    end)
  end

  -- enqueueAt(timestamp ms, name, params [, queue]) -> job id | false, reason
  function tasks.enqueueAt(ts, name, params, queue)
    if type(ts) ~= "number" or ts ~= ts then
      error("api.tasks.enqueueAt: the time must be a number of ms since the epoch, got " .. type(ts), 2)
    end
    local due = math.floor(ts)
    return enqueueWith("enqueueAt", name, params, queue, function(s)
      redis.call("ZADD", K.delayed, due, s)
    end)
  end

  -- enqueueIn(ms, name, params [, queue]) -> job id | false, reason
  function tasks.enqueueIn(ms, name, params, queue)
    if type(ms) ~= "number" or ms ~= ms then
      error("api.tasks.enqueueIn: the delay must be a number of ms, got " .. type(ms), 2)
    end
    local due = now() + math.floor(ms)
    return enqueueWith("enqueueIn", name, params, queue, function(s)
      redis.call("ZADD", K.delayed, due, s)
    end)
  end

  local function matches(job, name, params)
    return job and job.task == name and (params == nil or same(job.params, params))
  end

  -- The params as enqueue would have stored them (defaults and formatters applied), so
  -- del(queue, name, { key = 1 }) finds a job enqueued with those params.
  local function normalized(name, params)
    if type(params) ~= "table" or not reg.tasks[name] then return params end
    local copy = json.decode(json.encode(params))
    pcall(inputs.process, reg.tasks[name], copy, nil, inputOpts)
    return integers(copy)
  end

  -- del(queue, name [, params]) -> number of queued jobs removed. Without params, every
  -- job of the task in that queue.
  function tasks.del(queue, name, params)
    queue = checkQueue("del", queue)
    params = normalized(name, params)
    local n = 0
    for _, s in ipairs(redis.call("LRANGE", K.queuePrefix .. queue, 0, -1)) do
      if matches(decodeJob(s), name, params) then
        n = n + redis.call("LREM", K.queuePrefix .. queue, 1, s)
      end
    end
    return n
  end

  -- The delayed jobs of a task (in `queue`, or any when nil): { { raw, due, job } ... }
  local function delayedOf(queue, name, params)
    params = normalized(name, params)
    local list = redis.call("ZRANGE", K.delayed, 0, -1, "WITHSCORES")
    local out = {}
    for i = 1, #list, 2 do
      local job = decodeJob(list[i])
      if matches(job, name, params) and (queue == nil or job.queue == queue) then
        out[#out + 1] = { raw = list[i], due = math.tointeger(tonumber(list[i + 1])) or tonumber(list[i + 1]), job = job }
      end
    end
    return out
  end

  -- delDelayed(queue, name [, params]) -> the due times (ms) of the jobs removed
  function tasks.delDelayed(queue, name, params)
    local out = {}
    for _, d in ipairs(delayedOf(queue, name, params)) do
      if redis.call("ZREM", K.delayed, d.raw) == 1 then out[#out + 1] = d.due end
    end
    return out
  end

  -- scheduledAt(queue, name [, params]) -> the due times (ms) of matching delayed jobs
  function tasks.scheduledAt(queue, name, params)
    local out = {}
    for _, d in ipairs(delayedOf(queue, name, params)) do out[#out + 1] = d.due end
    return out
  end

  -- queued(queue [, start [, stop]]) -> the jobs waiting in the queue (LRANGE semantics)
  function tasks.queued(queue, start, stop)
    queue = checkQueue("queued", queue)
    local out = {}
    for _, s in ipairs(redis.call("LRANGE", K.queuePrefix .. queue, start or 0, stop or -1)) do
      out[#out + 1] = decodeJob(s) or { raw = s }
    end
    return out
  end

  -- stats() -> { queues = { name = length }, delayed, processing, failed, counters }
  function tasks.stats()
    local r = eval(STATS, 5, K.queues, K.delayed, K.processing, K.failed, K.stats, K.queuePrefix)
    local out = { delayed = r[1], processing = r[2], failed = r[3], queues = {}, counters = {} }
    for i = 1, #r[4], 2 do out.queues[r[4][i]] = r[4][i + 1] end
    for i = 1, #r[5], 2 do out.counters[r[5][i]] = math.tointeger(tonumber(r[5][i + 1])) end
    return out
  end

  -- A failed record as the API shows it: the job's fields, the error and when.
  local function failedRecord(s)
    local ok, rec = pcall(json.decode, s)
    if not ok or type(rec) ~= "table" then return { raw = s } end
    local job = decodeJob(rec.job or "") or {}
    job.error = rec.error
    job.traceback = rec.traceback
    job.failedAt = integers(rec.failedAt)
    job.worker = rec.worker
    return job
  end

  -- failed([start [, stop]]) -> failed jobs, oldest first (LRANGE semantics)
  function tasks.failed(start, stop)
    local out = {}
    for _, s in ipairs(redis.call("LRANGE", K.failed, start or 0, stop or -1)) do
      out[#out + 1] = failedRecord(s)
    end
    return out
  end

  -- The stored record of a failed job, by its id (or a record failed() returned).
  local function findFailed(fn, which)
    local id = type(which) == "table" and which.id or which
    if type(id) ~= "string" then
      error("api.tasks." .. fn .. ": expected a failed job or its id, got " .. type(which), 3)
    end
    for _, s in ipairs(redis.call("LRANGE", K.failed, 0, -1)) do
      local rec = failedRecord(s)
      if rec.id == id then return s, rec end
    end
    return nil
  end

  -- retryFailed(job or id) -> true (back at the end of its queue, attempts 0) | false
  function tasks.retryFailed(which)
    local s, rec = findFailed("retryFailed", which)
    if not s then return false end
    local ok, stored = pcall(json.decode, s)
    local job = ok and decodeJob(stored.job or "")
    if not job then return false end
    job.attempts = 0
    local q = type(job.queue) == "string" and job.queue or "default"
    local r = eval(RETRY_FAILED, 3, K.failed, K.queuePrefix .. q, K.queues, s, json.encode(job), q)
    return r == 1, rec
  end

  -- removeFailed(job or id) -> true | false
  function tasks.removeFailed(which)
    local s = findFailed("removeFailed", which)
    if not s then return false end
    return redis.call("LREM", K.failed, 1, s) > 0
  end

  -- The worker ----------------------------------------------------------------------

  local function warn(msg, err)
    -- One line per pollInterval at most, so a Redis outage does not flood the log.
    local t = core.now_ms()
    if t - state.warnedAt < (tconf.pollInterval or 1000) then return end
    state.warnedAt = t
    core.log("warning", msg, { "error", errText(err) })
  end

  local poll

  -- Runs fn in a protected call, logging what it raises: the chains of timers below go on
  -- whatever one pass meets.
  local function guarded(what, fn)
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then
      state.polling = false
      core.log("error", "tasks: " .. what .. " failed", { "error", errText(err) })
    end
  end

  -- Poll again in ms (0: on the loop's next turn), unless a poll is due sooner already.
  local function schedulePoll(ms)
    if state.stopping or not loop then return end
    local at = core.now_ms() + ms
    -- A poke due over a second ago that never fired was cancelled with the task that set
    -- it (one stopped by cpuTimeout): it holds nothing back.
    if state.pollAt and state.pollAt <= at and state.pollAt > core.now_ms() - 1000 then return end
    state.pollToken = state.pollToken + 1
    state.pollAt = at
    local token = state.pollToken
    loop.after(ms, function()
      if token ~= state.pollToken then return end -- replaced by a sooner one
      state.pollAt = nil
      guarded("poll", poll)
    end)
  end

  -- Redis work whose loss would only run the job again: tried while time allows.
  local function settle(fn, what, job)
    local deadline = core.now_ms() + (tconf.visibilityTimeout or 30000) / 2
    while true do
      local ok, r = pcall(fn)
      if ok then return r end
      if state.stopping or core.now_ms() >= deadline then
        core.log("warning", "task job: could not " .. what .. "; it will run again after the visibility timeout",
          { "task", job.task, "job", job.id, "error", errText(r) })
        return nil
      end
      api.sleep(math.min(tconf.pollInterval or 1000, 200))
    end
  end

  -- A stand-in for a task this process does not have (a rolling deploy: newer nodes have
  -- it): its jobs are put back, due in a second, as a Redis outage's are.
  local ELSEWHERE = { retries = 0, backoff = { 1000 } }

  local function fail(member, job, task, err, tb, started)
    local attempts = (tonumber(job.attempts) or 0) + 1
    local ms = core.now_ms() - started
    local retries = task and task.retries or 0
    local msg = errText(err)
    -- A Redis outage met by the job (api.redis raised status 503) is the cluster's trouble,
    -- not the job's: it is retried without using up one of its retries, up to MAX_OUTAGES.
    local outages = tonumber(job.outages) or 0
    if task == ELSEWHERE and outages >= M.MAX_OUTAGES then task = nil end
    local outage = task and type(err) == "table" and err.status == 503 and outages < M.MAX_OUTAGES
    if outage then attempts = attempts - 1 end
    if task and (outage or attempts <= retries) then
      local next = {}
      for k, v in pairs(job) do next[k] = v end
      next.attempts = attempts
      if outage then next.outages = outages + 1 end
      local due = now() + math.floor(M.backoffFor(task, math.max(attempts, 1)))
      settle(function() return eval(RETRY, 3, K.processing, K.delayed, K.stats, member, due, json.encode(next)) end,
        "schedule its retry", job)
      count(reg.tasks[job.task] and job.task or "?", "retried")
      core.log("warning", "task job failed; retrying", { "task", job.task, "job", job.id,
        "attempt", attempts, "retries", retries, "retry_in_ms", due - now(), "duration_ms", math.floor(ms * 1000) / 1000, "error", msg })
      return
    end
    local record = json.encode({
      job = json.encode((function()
        local j = {}
        for k, v in pairs(job) do j[k] = v end
        j.attempts = attempts
        return j
      end)()),
      error = msg, traceback = tb, failedAt = now(), worker = core.pid and tostring(core.pid()) or nil,
    })
    settle(function()
      return eval(FAIL, 3, K.processing, K.failed, K.stats, member, record, tconf.maxFailed or 10000, job.task)
    end, "move it to the failed list", job)
    count(reg.tasks[job.task] and job.task or "?", "failed")
    core.log("error", "task job failed", { "task", job.task, "job", job.id, "attempt", attempts,
      "duration_ms", math.floor(ms * 1000) / 1000, "error", msg })
  end

  -- Runs one taken job in its own task: middleware, inputs, run; then ack, retry or fail.
  local function runJob(member)
    local co = coroutine.running()
    state.running[member] = co
    local guard <close> = setmetatable({}, { __close = function()
      if state.running[member] == co then state.running[member] = nil end
      if not state.stopping then schedulePoll(0) end
    end })
    local raw = member:match("^%d+ (.*)$") or member
    local job = decodeJob(raw)
    local started = core.now_ms()
    if not job or type(job.task) ~= "string" then
      job = { id = "?", task = "?", attempts = 0, raw = raw }
      return fail(member, job, nil, "the job is not valid JSON with a task name", nil, started)
    end
    local task = reg.tasks[job.task]
    if not task then
      return fail(member, job, ELSEWHERE, { status = 503,
        message = 'unknown task "' .. job.task .. '" (no task file here defines it)' }, nil, started)
    end
    core.log("info", "task job start", { "task", job.task, "job", job.id, "queue", job.queue,
      "attempt", (tonumber(job.attempts) or 0) + 1 })
    local params = type(job.params) == "table" and job.params or {}
    local skipped = false
    local ok, err = xpcall(function()
      local go, why = runHooks("preProcessor", job.task, job)
      if not go then
        skipped = why
        return
      end
      checkInputs(task, params)
      local result = task.run(api, params, job)
      runHooks("postProcessor", job.task, job, result)
    end, function(e)
      return { err = e, tb = debug.traceback(errText(e), 2) }
    end)
    if not ok then
      return fail(member, job, task, err.err, err.tb, started)
    end
    local ms = core.now_ms() - started
    local acked = settle(function() return eval(ACK, 2, K.processing, K.stats, member, job.task) end,
      "acknowledge it", job)
    count(job.task, "ok")
    if acked == 0 then
      core.log("warning", "task job finished after its claim expired; it was re-queued and may run again",
        { "task", job.task, "job", job.id, "duration_ms", math.floor(ms * 1000) / 1000 })
    end
    if skipped then
      core.log("info", "task job skipped by task middleware", { "task", job.task, "job", job.id,
        "reason", tostring(skipped) })
    else
      core.log("info", "task job ok", { "task", job.task, "job", job.id, "duration_ms", math.floor(ms * 1000) / 1000 })
    end
  end

  -- Takes as many jobs as there are free slots (and re-queues expired claims), starting
  -- each in a task of its own.
  poll = function()
    if state.stopping then return end
    if state.polling then
      state.again = true
      return
    end
    state.polling = true
    local free = (tconf.concurrency or 1) - nrunning()
    local got = 0
    if free > 0 then
      local t = now()
      local args = { t, t + (tconf.visibilityTimeout or 30000), K.queuePrefix, free }
      for _, q in ipairs(tconf.queues or { "*" }) do args[#args + 1] = q end
      local ok, r = pcall(eval, TAKE, 4, K.processing, K.queues, K.seq, K.stats, table.unpack(args))
      if not ok then
        warn("tasks: cannot take jobs", r)
      else
        if r[1] > 0 then
          core.log("warning", "tasks: re-queued jobs whose worker went silent past the visibility timeout",
            { "count", r[1] })
        end
        for i = 2, #r do
          local member = r[i]
          if state.stopping then break end
          state.running[member] = true
          got = got + 1
          loop.after(0, runJob, member)
        end
      end
    end
    state.polling = false
    if state.stopping then return end
    -- More may be waiting: look again at once. Otherwise the tick (every pollInterval) or
    -- the end of a running job is the next look.
    if state.again or (got > 0 and nrunning() < (tconf.concurrency or 1)) then
      state.again = false
      schedulePoll(0)
    end
  end

  -- The worker's steady look at its queues, every pollInterval whatever else happens.
  local function tick()
    if state.stopping then return end
    guarded("poll", poll)
    if not state.stopping then loop.after(tconf.pollInterval or 1000, tick) end
  end

  -- Extends the deadline of every job this process runs, so a slow live job is not
  -- taken for a dead one.
  local function beat()
    local args = {}
    local deadline = now() + (tconf.visibilityTimeout or 30000)
    for member in pairs(state.running) do
      args[#args + 1] = deadline
      args[#args + 1] = member
    end
    if #args > 0 then
      local ok, err = pcall(redis.call, "ZADD", K.processing, "XX", table.unpack(args))
      if not ok then warn("tasks: cannot extend the deadline of running jobs", err) end
    end
  end

  local function heartbeat()
    if state.stopping then return end
    guarded("heartbeat", beat)
    if state.stopping then return end
    loop.after(math.max(10, (tconf.visibilityTimeout or 30000) // M.HEARTBEAT_DIVISOR), heartbeat)
  end

  -- One scheduler pass: due delayed jobs to their queues, recurring tasks enqueued once
  -- per frequency across the cluster. Both are atomic scripts, so any number of
  -- processes may run them at once: no lock is needed for a job to move exactly once.
  local function pass()
    local t = now()
    local ok, r
    if tconf.scheduler ~= false then
      ok, r = pcall(eval, MOVE_DUE, 3, K.delayed, K.queues, K.moves, t, K.queuePrefix, M.MOVE_LIMIT)
    else
      -- A worker without a scheduler still wakes when another node's scheduler moved jobs.
      ok, r = pcall(redis.call, "GET", K.moves)
      if ok then r = { 0, tonumber(r) or 0 } end
    end
    local moved = 0
    if not ok then
      warn("tasks: cannot move due jobs", r)
    else
      -- Jobs moved here, or by another node's scheduler since this one last looked.
      if r[1] > 0 or (state.moves and r[2] ~= state.moves) then moved = 1 end
      state.moves = r[2]
    end
    -- Recurring tasks: whoever sets the task's key (NX, expiring after its frequency)
    -- enqueues it, so it is enqueued once per period however many schedulers run.
    local names = {}
    for name in pairs(reg.tasks) do names[#names + 1] = name end
    table.sort(names)
    local enq = 0
    for _, name in ipairs(names) do
      local task = reg.tasks[name]
      if task.frequency > 0 and not state.stopping and tconf.scheduler ~= false then
        local okSet, r = pcall(redis.call, "SET", K.recurring .. name, "1", "NX", "PX", task.frequency)
        if not okSet then
          warn("tasks: cannot enqueue recurring tasks", r)
          break
        end
        if r then
          local okEnq, id = pcall(tasks.enqueue, name, {})
          if not okEnq then
            core.log("error", "tasks: recurring task not enqueued", { "task", name, "error", errText(id) })
          elseif id then
            enq = enq + 1
          end
        end
      end
    end
    if tconf.enabled and (moved > 0 or enq > 0) then schedulePoll(0) end
    -- Queue lengths for /metrics, refreshed every STATS_EVERY ms.
    if core.now_ms() - (state.statsAt or -math.huge) >= M.STATS_EVERY then
      local okS, st = pcall(tasks.stats)
      if okS then
        state.statsAt = core.now_ms()
        tasks.lastStats = st
      end
    end
  end

  local function schedule()
    if state.stopping then return end
    guarded("scheduler pass", pass)
    if state.stopping then return end
    loop.after(tconf.schedulerInterval or 250, schedule)
  end

  -- The runtime's hooks ---------------------------------------------------------------

  -- The loaded task files (gateway.registry.tasks) and the inputs options.
  function tasks.setRegistry(r, opts)
    reg = r or { tasks = {}, middleware = {}, plans = {} }
    inputOpts = opts or inputOpts
    tasks.tasks = reg.tasks
  end

  -- The server is up (net/server.c): start the worker and the scheduler here if enabled.
  function tasks.start()
    if state.started or not tconf.enabled then return end
    local okLoop, l = pcall(require, "gateway.loop")
    if not okLoop then return end
    loop = l
    state.started = true
    core.log("info", "tasks: worker started", { "queues", table.concat(tconf.queues or { "*" }, ","),
      "concurrency", tconf.concurrency or 1 })
    loop.after(0, tick)
    loop.after((tconf.visibilityTimeout or 30000) // M.HEARTBEAT_DIVISOR, heartbeat)
    loop.after(0, schedule)
  end

  -- Shutdown: take no more jobs. Running ones may finish within general.shutdownTimeout;
  -- those still running then stay claimed and are re-queued after the visibility timeout.
  function tasks.stop()
    state.stopping = true
  end

  function tasks.running() return nrunning() end

  return tasks
end

return M
