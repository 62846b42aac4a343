-- Specs for lua/gateway/pipeline/metrics.lua (what /metrics counts per action) and
-- lua/gateway/transport/metrics.lua (the text exposition format): bounded label sets,
-- histogram buckets, label escaping.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local metrics = require("gateway.pipeline.metrics")
local render = require("gateway.transport.metrics")

local st = state.new()
local rt = st.rt

local FIGURES = {
  connectionsHttp = 1, connectionsWebsocket = 0, connectionsSocket = 0, pendingActions = 0,
  redisConnected = 1, redisSubscriberConnected = 1, clusterPublished = 4, clusterReceived = 5,
  redisBounds = { 0.001 }, redisBuckets = { 2, 3 }, redisCount = 3, redisSum = 0.5,
  redisErrorsReply = 0, redisErrorsTimeout = 0, redisErrorsUnavailable = 0, workerRestarts = 0,
  worker = -1, pid = 1, startTime = 1000, now = 1010,
}

local function text()
  local status, headers, body = render.handle(rt, { figures = FIGURES })
  assert.are.equal(200, status)
  assert.are.equal("text/plain; version=0.0.4; charset=utf-8", headers["Content-Type"])
  return body
end

describe("pipeline.metrics", function()
  before_each(function() metrics.reset() end)

  it("counts by transport, action and status, and buckets durations", function()
    metrics.observe("web", "a", 200, 0.2)   -- 0.0002 s: the first bucket
    metrics.observe("web", "a", 200, 3)     -- 0.003 s: le=0.005
    metrics.observe("web", "a", 500, 20000) -- 20 s: +Inf only
    metrics.observe("web", "", 404)          -- no duration: no histogram sample
    local body = text()
    assert.truthy(body:find('gateway_requests_total{action="a",transport="web",status="200"} 2', 1, true))
    assert.truthy(body:find('gateway_requests_total{action="a",transport="web",status="500"} 1', 1, true))
    assert.truthy(body:find('gateway_requests_total{action="",transport="web",status="404"} 1', 1, true))
    assert.truthy(body:find('duration_seconds_bucket{action="a",transport="web",le="0.0005"} 1', 1, true))
    assert.truthy(body:find('duration_seconds_bucket{action="a",transport="web",le="0.005"} 2', 1, true))
    assert.truthy(body:find('duration_seconds_bucket{action="a",transport="web",le="10"} 2', 1, true))
    assert.truthy(body:find('duration_seconds_bucket{action="a",transport="web",le="+Inf"} 3', 1, true))
    assert.truthy(body:find('duration_seconds_count{action="a",transport="web"} 3', 1, true))
    assert.falsy(body:find('duration_seconds_count{action="",', 1, true))
    assert.truthy(body:find('gateway_redis_command_duration_seconds_bucket{le="+Inf"} 3', 1, true))
    assert.truthy(body:find('gateway_redis_subscriber_connected 1\n', 1, true))
    assert.truthy(body:find('gateway_cluster_messages_total{direction="out"} 4\n', 1, true))
    assert.truthy(body:find('gateway_cluster_messages_total{direction="in"} 5\n', 1, true))
    assert.are.equal("\n", body:sub(-1))
  end)

  it("escapes label values", function()
    metrics.observe("web", 'we"ird\\na\nme', 200, 1)
    assert.truthy(text():find('action="we\\"ird\\\\na\\nme"', 1, true))
  end)

  it("bounds statuses and records", function()
    metrics.observe("web", "a", 99999, 1)
    metrics.observe("web", "a", 42, 1)
    assert.truthy(text():find('gateway_requests_total{action="a",transport="web",status="other"} 2', 1, true))
    local max = metrics.MAX_RECORDS
    metrics.MAX_RECORDS = 3
    for i = 1, 10 do metrics.observe("socket", "n" .. i, 200, 1) end
    metrics.MAX_RECORDS = max
    local body = text()
    assert.falsy(body:find('action="n3",transport="socket"', 1, true))
    assert.truthy(body:find('gateway_requests_total{action="n2",transport="socket",status="200"} 1', 1, true))
    assert.truthy(body:find('gateway_requests_total{action="",transport="socket",status="200"} 8', 1, true))
  end)
end)
