-- bench/tasks.sh: enqueues n noop jobs one after the other and answers the latency of each
-- api.tasks.enqueue (ms): p50, p99, max, and the total.
local core = require("gateway.core")
return {
  name = "benchEnqueue",
  description = "Enqueues n noop jobs and times each enqueue",
  inputs = { n = { default = 1000, formatter = "toNumber" } },
  run = function(api, data)
    local times = {}
    local t0 = core.now_ms()
    for i = 1, data.params.n do
      local t = core.now_ms()
      api.tasks.enqueue("noop", {})
      times[i] = core.now_ms() - t
    end
    local total = core.now_ms() - t0
    table.sort(times)
    local function pct(p) return times[math.max(1, math.ceil(#times * p))] end
    data.response.n = #times
    data.response.p50 = pct(0.5)
    data.response.p99 = pct(0.99)
    data.response.max = times[#times]
    data.response.totalMs = total
  end,
}
