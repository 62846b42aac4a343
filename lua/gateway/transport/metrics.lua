-- GET /metrics (docs/operations.md): the Prometheus text exposition format 0.0.4, from
-- what pipeline/metrics.lua counted per action and the figures the core adds to the
-- request (ctx.figures, net/ops.c). net/http.c answers it before routes and middleware,
-- and only to the addresses of servers.web.metrics.allow.

local metrics = require("gateway.pipeline.metrics")

local T = {}

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local TRANSPORTS = { "web", "websocket", "socket" }

-- A label value as the format wants it: backslash, double quote and newline escaped.
local function label(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- A sample value: integers as they are, floats with enough digits, and the format's
-- spelling of infinities and NaN.
local function value(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

local function bound(b)
  return string.format("%g", b)
end

local function family(out, name, kind, help)
  out[#out + 1] = "# HELP " .. name .. " " .. help
  out[#out + 1] = "# TYPE " .. name .. " " .. kind
end

local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return keys
end

-- The records of every transport, in a stable order.
local function eachRecord()
  local list = {}
  local transports = {}
  for _, t in ipairs(TRANSPORTS) do transports[#transports + 1] = t end
  for t in pairs(metrics.records) do
    local known = false
    for _, k in ipairs(TRANSPORTS) do known = known or k == t end
    if not known then transports[#transports + 1] = t end
  end
  for _, t in ipairs(transports) do
    local byAction = metrics.records[t] or {}
    for _, a in ipairs(sorted(byAction)) do list[#list + 1] = byAction[a] end
  end
  return list
end

local function render(rt, f)
  local out = {}
  local records = eachRecord()

  family(out, "gateway_requests_total", "counter",
    "Requests (web) and messages (websocket, socket) answered, by action, transport and status.")
  local counted = {}
  for i, r in ipairs(records) do
    local statuses, buckets, count = metrics.counts(r)
    counted[i] = { buckets = buckets, count = count }
    local prefix = 'gateway_requests_total{action="' .. label(r.action) .. '",transport="' .. label(r.transport) .. '",status="'
    for _, st in ipairs(sorted(statuses)) do
      out[#out + 1] = prefix .. label(st) .. '"} ' .. value(statuses[st])
    end
  end

  family(out, "gateway_request_duration_seconds", "histogram",
    "Time from a request or message reaching its action to its answer, by action and transport.")
  local bounds = metrics.BOUNDS
  for i, r in ipairs(records) do
    local c = counted[i]
    if c.count > 0 then
      local labels = 'action="' .. label(r.action) .. '",transport="' .. label(r.transport) .. '"'
      local cum = 0
      for j, b in ipairs(bounds) do
        cum = cum + c.buckets[j]
        out[#out + 1] = "gateway_request_duration_seconds_bucket{" .. labels .. ',le="' .. bound(b) .. '"} ' .. cum
      end
      out[#out + 1] = "gateway_request_duration_seconds_bucket{" .. labels .. ',le="+Inf"} ' .. c.count
      out[#out + 1] = "gateway_request_duration_seconds_sum{" .. labels .. "} " .. value(r.sum)
      out[#out + 1] = "gateway_request_duration_seconds_count{" .. labels .. "} " .. c.count
    end
  end

  family(out, "gateway_open_connections", "gauge", "Client connections open in this worker, by type.")
  out[#out + 1] = 'gateway_open_connections{type="web"} ' .. value(f.connectionsHttp)
  out[#out + 1] = 'gateway_open_connections{type="websocket"} ' .. value(f.connectionsWebsocket)
  out[#out + 1] = 'gateway_open_connections{type="socket"} ' .. value(f.connectionsSocket)

  family(out, "gateway_pending_actions", "gauge", "Actions running or waiting in this worker.")
  out[#out + 1] = "gateway_pending_actions " .. value(f.pendingActions)

  family(out, "gateway_redis_connected", "gauge", "1 when this worker's Redis connection is ready, else 0.")
  out[#out + 1] = "gateway_redis_connected " .. value(f.redisConnected)

  family(out, "gateway_redis_subscriber_connected", "gauge",
    "1 when this worker's pub/sub connection (the cluster's) is ready, else 0.")
  out[#out + 1] = "gateway_redis_subscriber_connected " .. value(f.redisSubscriberConnected)

  family(out, "gateway_cluster_messages_total", "counter",
    "Cluster messages this worker published, and received on its channel (its own included).")
  out[#out + 1] = 'gateway_cluster_messages_total{direction="out"} ' .. value(f.clusterPublished)
  out[#out + 1] = 'gateway_cluster_messages_total{direction="in"} ' .. value(f.clusterReceived)

  family(out, "gateway_redis_command_duration_seconds", "histogram",
    "Time from sending a Redis command to its reply, for commands that got one.")
  for i, b in ipairs(f.redisBounds) do
    out[#out + 1] = 'gateway_redis_command_duration_seconds_bucket{le="' .. bound(b) .. '"} ' .. value(f.redisBuckets[i])
  end
  out[#out + 1] = 'gateway_redis_command_duration_seconds_bucket{le="+Inf"} ' .. value(f.redisBuckets[#f.redisBounds + 1])
  out[#out + 1] = "gateway_redis_command_duration_seconds_sum " .. value(f.redisSum)
  out[#out + 1] = "gateway_redis_command_duration_seconds_count " .. value(f.redisCount)

  family(out, "gateway_redis_errors_total", "counter",
    "Redis commands that failed: an error reply, no reply within redis.commandTimeout, or Redis unavailable.")
  out[#out + 1] = 'gateway_redis_errors_total{kind="reply"} ' .. value(f.redisErrorsReply)
  out[#out + 1] = 'gateway_redis_errors_total{kind="timeout"} ' .. value(f.redisErrorsTimeout)
  out[#out + 1] = 'gateway_redis_errors_total{kind="unavailable"} ' .. value(f.redisErrorsUnavailable)

  family(out, "gateway_lua_memory_bytes", "gauge", "Bytes the worker's Lua state holds.")
  out[#out + 1] = "gateway_lua_memory_bytes " .. value(math.floor(collectgarbage("count") * 1024))

  family(out, "gateway_worker_restarts_total", "counter",
    "Workers the master has restarted after they exited unexpectedly (0 without workers).")
  out[#out + 1] = "gateway_worker_restarts_total " .. value(f.workerRestarts)

  family(out, "gateway_worker_info", "gauge", "The worker that answered this scrape (index -1: no master).")
  out[#out + 1] = 'gateway_worker_info{worker="' .. f.worker .. '",pid="' .. f.pid .. '"} 1'

  family(out, "gateway_process_start_time_seconds", "gauge", "When this worker started, in seconds since the epoch.")
  out[#out + 1] = "gateway_process_start_time_seconds " .. value(f.startTime)

  family(out, "gateway_uptime_seconds", "gauge", "Seconds since this worker started.")
  out[#out + 1] = "gateway_uptime_seconds " .. value(math.max(0, f.now - f.startTime))

  out[#out + 1] = ""
  return table.concat(out, "\n")
end

function T.handle(rt, ctx)
  return 200, { ["Content-Type"] = CONTENT_TYPE, ["Cache-Control"] = "no-store" }, render(rt, ctx.figures)
end

function T.fail(rt, ctx, status, message)
  if not status then return end
  return status, { ["Content-Type"] = "application/json; charset=utf-8" },
    rt.json.encode({ error = message, errors = { message } })
end

return T
