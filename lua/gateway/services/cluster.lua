-- The cluster: every gateway worker, on this machine and others, that shares the Redis
-- of redis.url and the same redis.prefix. This module is the one way the services reach
-- other workers (docs/realtime.md):
--
--   cluster.id                          this worker's id, unique in the cluster
--   cluster.publish(topic, payload)     -> true | false, reason
--       send `payload` (a table, encoded as JSON) to every worker subscribed to
--       `topic`, this one included, at most once each. Never yields: callable from a
--       task, a close callback or middleware. false when it could not be sent (Redis
--       unreachable); the caller decides whether that is an error for its client.
--   cluster.on(topic, fn)               fn(payload, fromId) runs in a task of its own
--       (it may yield: api.redis, api.sleep) for each message on `topic`; one handler
--       per topic, a second `on` replaces the first. Topics starting "gateway." are the
--       gateway's own (gateway.send carries api.connections.send).
--   cluster.onWorkerGone(fn)            fn(workerId) runs (in a task) on one surviving
--       worker once a worker stopped heartbeating for cluster.deadAfter ms (a second
--       survivor only if the first died while running it: keep handlers idempotent).
--   cluster.onResubscribed(fn)          fn() runs (in a task) after the subscriber
--       connection came back from an outage (messages published meanwhile are lost:
--       Redis pub/sub), and after this worker, taken for dead (it missed its beats for
--       deadAfter), beats again: state it keeps in Redis may have been cleaned up.
-- Added here:
--   cluster.distributed()               -> true when messages go through Redis to other
--       workers; false when they stay in this process (no server: busted specs, the spec
--       helper; or cluster.enabled = false)
--   cluster.command(cmd, ...)           -> true | false, reason: a Redis command over the
--       shared connection without waiting for its reply (an error reply is logged), for
--       cleanup where nothing can wait (a close callback); false, reason when Redis is
--       unreachable or there is no server. Commands api.redis refuses raise.
--   cluster.stop()                      graceful shutdown: no more beats, and this worker
--       leaves the presence set at once (others run no onWorkerGone for it)
--
-- On the wire: one Redis channel, <redis.prefix>cluster, carries every topic; a message is
-- the JSON envelope {"topic":..,"from":..,"payload":..}, topic first, so a worker skips
-- topics it has no handler for without decoding the rest. Presence: a sorted set
-- <redis.prefix>cluster:workers of worker id -> the Redis time (ms) of its last beat.

local core = require("gateway.core")

local okLoop, loop = pcall(require, "gateway.loop")
if not okLoop then loop = nil end
local okPubsub, pubsub = pcall(require, "gateway.pubsub")
if not okPubsub then pubsub = nil end

local M = {}

-- A dead worker's cleanup is claimed for this long (ms): should the claimer die while it
-- runs the onWorkerGone handlers, another survivor takes the work over after it.
M.REAP_TTL = 30000
-- How long onResubscribed handlers wait for the command connection to be back (ms).
M.RESYNC_WAIT = 5000

-- Record this worker's beat in Redis time; 1 when the entry was new.
local BEAT = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now, ARGV[1])
]]

-- The workers whose last beat is older than ARGV[1] ms whose cleanup this worker (ARGV[2])
-- claimed: a claim is a key KEYS[2]..id set if absent, so one survivor gets each.
local SWEEP = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 100)
local claimed = {}
for _, id in ipairs(dead) do
  if id ~= ARGV[2] and redis.call('SET', KEYS[2] .. id, ARGV[2], 'NX', 'PX', ARGV[3]) then
    claimed[#claimed + 1] = id
  end
end
return claimed
]]

-- The cleanup of ARGV[1] is done: forget it, unless it beat again meanwhile.
local FORGET = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= now - tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('DEL', KEYS[2])
return 1
]]

local function runHandler(fn, ...)
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then core.log("error", "cluster handler failed", { "error", tostring(err) }) end
end

-- The wire form of a message: topic first, so receivers can read it without decoding.
function M.encode(json, topic, from, payload)
  return '{"topic":' .. json.encode(topic) .. ',"from":' .. json.encode(from) .. ',"payload":'
    .. json.encode(payload) .. "}"
end

-- What a received message holds: topic, payload, from; or nil and why it is not one. With
-- `wanted` (topic -> anything), nil for a topic it lacks, decoding only the topic.
function M.decode(json, text, wanted)
  if wanted then
    local topic = text:match('^{"topic":"([^"\\]*)",')
    if topic and wanted[topic] == nil then return nil, "unwanted" end
  end
  local ok, env = pcall(json.decode, text)
  if not ok or type(env) ~= "table" or type(env.topic) ~= "string" or type(env.from) ~= "string" then
    return nil, "not a cluster message"
  end
  if wanted and wanted[env.topic] == nil then return nil, "unwanted" end
  return env.topic, env.payload, env.from
end

-- config: the gateway's (redis.prefix, cluster.*); absent in plain busted specs.
function M.new(json, config, redis)
  config = config or {}
  local prefix = (config.redis and config.redis.prefix) or "gateway:"
  local settings = config.cluster or {}
  local channel = prefix .. "cluster"
  local workersKey = prefix .. "cluster:workers"
  local reapPrefix = prefix .. "cluster:reap:"
  local deadAfter = settings.deadAfter or 5000

  local cluster = {
    id = string.format("%d:%s", core.pid(), core.random_id():sub(1, 12)),
  }
  local handlers, goneHandlers, resubscribedHandlers = {}, {}, {}
  local wire = pubsub and loop and redis and settings.enabled ~= false and pubsub or nil

  function cluster.distributed()
    return wire ~= nil and wire.active()
  end

  local function deliverLocally(topic, payload)
    local fn = handlers[topic]
    if not fn then return true end
    -- A copy, as it would arrive from Redis: the receiver never shares the sender's table.
    local copy = json.decode(json.encode(payload))
    if loop then
      loop.after(0, runHandler, fn, copy, cluster.id)
    else
      runHandler(fn, copy, cluster.id)
    end
    return true
  end

  function cluster.publish(topic, payload)
    if type(topic) ~= "string" then
      error("bad argument #1 to 'publish' (string expected, got " .. type(topic) .. ")", 2)
    end
    if not cluster.distributed() then return deliverLocally(topic, payload) end
    local ok, text = pcall(M.encode, json, topic, cluster.id, payload)
    if not ok then error("api.cluster.publish: " .. tostring(text), 2) end
    return wire.publish(channel, text)
  end

  function cluster.on(topic, fn) handlers[topic] = fn end
  function cluster.onWorkerGone(fn) goneHandlers[#goneHandlers + 1] = fn end
  function cluster.onResubscribed(fn) resubscribedHandlers[#resubscribedHandlers + 1] = fn end

  function cluster.command(...)
    if not cluster.distributed() then return false, "the cluster is not connected" end
    return wire.send(...)
  end

  if not wire then
    function cluster.stop() end
    return cluster
  end

  -- Suspend the calling task for `ms` milliseconds.
  local function pause(ms)
    local co = coroutine.running()
    loop.after(ms, function() loop.wake(co) end)
    loop.wait()
  end

  -- Each onResubscribed handler in a task of its own, once the command connection is back
  -- too (the two reconnect on their own; handlers put state back into Redis), or after
  -- RESYNC_WAIT ms without it.
  local function resubscribed()
    for _ = 1, M.RESYNC_WAIT // 50 do
      if redis.connected() then break end
      pause(50)
    end
    for _, fn in ipairs(resubscribedHandlers) do loop.after(0, runHandler, fn) end
  end

  local sweeping, beating, beaten = false, false, false
  -- Since when (core.now_ms) this worker's beats have reached Redis without a failure. It
  -- sweeps only once that is deadAfter ago: after a Redis outage every beat in Redis is
  -- stale, and the others need a beat of their own before anyone may judge them.
  local healthySince
  local refusedLogged = false

  -- Claim the dead workers' cleanups and run the onWorkerGone handlers for each, in this
  -- task, one after the other; then forget the worker.
  local function sweep()
    sweeping = core.now_ms()
    local ok, err = xpcall(function()
      local claimed = redis.pcall("EVAL", SWEEP, 2, workersKey, reapPrefix, deadAfter, cluster.id, M.REAP_TTL)
      if type(claimed) ~= "table" then return end
      for _, id in ipairs(claimed) do
        core.log("notice", "cluster: worker " .. id .. " stopped beating; cleaning up after it",
          { "worker", id })
        for _, fn in ipairs(goneHandlers) do runHandler(fn, id) end
        redis.pcall("EVAL", FORGET, 2, workersKey, reapPrefix .. id, id, deadAfter)
      end
    end, debug.traceback)
    sweeping = false
    if not ok then core.log("error", "cluster sweep failed", { "error", tostring(err) }) end
  end

  local function beat()
    beating = true
    local added, err = redis.pcall("EVAL", BEAT, 1, workersKey, cluster.id)
    beating = false
    if added == nil then
      healthySince = nil
      -- Redis down or slow is said by the Redis client; a refusal (an ACL without EVAL) only here.
      if err ~= "redis unavailable" and err ~= "redis timeout" and not refusedLogged then
        refusedLogged = true
        core.log("error", "cluster: Redis refused this worker's beat; presence is off", { "error", tostring(err) })
      end
      return
    end
    if added == 1 and beaten then
      core.log("warning", "cluster: this worker's beat was gone from Redis (it missed its beats for "
        .. "cluster.deadAfter and was taken for dead, or Redis lost its data); its state in Redis "
        .. "may have been cleaned up", { "worker", cluster.id })
      resubscribed()
    end
    beaten = true
    local now = core.now_ms()
    healthySince = healthySince or now
    -- A sweep whose handlers still wait after REAP_TTL (its claims have expired: others
    -- took them over) no longer holds this worker's sweeps up.
    local free = not sweeping or now - sweeping > M.REAP_TTL
    if free and now - healthySince >= deadAfter then sweep() end
  end

  local first = true
  -- The pub/sub connection's events (core/vm/pubsublib.c), outside any task: what runs
  -- in a task is returned.
  local function onEvent(kind, _, text)
    if kind == "message" then
      local topic, payload, from = M.decode(json, text, handlers)
      if not topic then return end
      return runHandler, handlers[topic], payload, from
    elseif kind == "subscribed" then
      if first then
        first = false
        return
      end
      core.log("notice", "cluster: subscribed again after an outage (messages published meanwhile are lost)")
      return resubscribed
    elseif kind == "tick" then
      if beating then return end
      return beat
    end
  end

  function cluster.stop()
    wire.stop()
    if wire.active() then wire.send("ZREM", workersKey, cluster.id) end
  end

  wire.start(onEvent)
  wire.subscribe(channel)
  return cluster
end

return M
