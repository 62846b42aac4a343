-- The cluster: every gateway worker, on this machine and others, that shares the Redis
-- of redis.url. This module is the one way the services reach other workers:
--
--   cluster.id                          this worker's id, unique in the cluster
--   cluster.publish(topic, payload)     -> true | false, reason
--       send `payload` (a table, encoded as JSON) to every worker subscribed to
--       `topic`, this one included, at most once each. Never yields: callable from a
--       task, a close callback or middleware. false when it could not be sent (Redis
--       unreachable); the caller decides whether that is an error for its client.
--   cluster.on(topic, fn)               fn(payload, fromId) runs in a task of its own
--       (it may yield: api.redis, api.sleep) for each message on `topic`; one handler
--       per topic, a second `on` replaces the first.
--   cluster.onWorkerGone(fn)            fn(workerId) runs (in a task) on at least one
--       surviving worker once a worker stopped heartbeating; handlers are idempotent.
--   cluster.onResubscribed(fn)          fn() runs after the subscriber connection came
--       back from an outage (messages published meanwhile are lost: Redis pub/sub).
--
-- This first version delivers within this process only (the interface the rooms, live
-- resources and connections are written against); the Redis pub/sub connection takes it
-- across workers and nodes.

local core = require("gateway.core")

local okLoop, loop = pcall(require, "gateway.loop")
if not okLoop then loop = nil end

local M = {}

local function runHandler(fn, payload, from)
  local ok, err = xpcall(fn, debug.traceback, payload, from)
  if not ok then core.log("error", "cluster handler failed", { "error", tostring(err) }) end
end

function M.new(json)
  local cluster = {
    id = string.format("%d:%s", core.pid(), core.random_id():sub(1, 12)),
  }
  local handlers, goneHandlers, resubscribedHandlers = {}, {}, {}

  function cluster.publish(topic, payload)
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

  function cluster.on(topic, fn) handlers[topic] = fn end
  function cluster.onWorkerGone(fn) goneHandlers[#goneHandlers + 1] = fn end
  function cluster.onResubscribed(fn) resubscribedHandlers[#resubscribedHandlers + 1] = fn end

  return cluster
end

return M
