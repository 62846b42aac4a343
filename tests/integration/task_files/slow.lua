-- A job that takes params.ms; it marks its start (so a test can kill its worker mid-job)
-- and its end, per worker pid.
local core = require("gateway.core")
return {
  name = "slow",
  description = "Sleeps, marking start and end",
  inputs = { key = { required = true }, ms = { required = true, formatter = "toNumber" } },
  run = function(api, params, job)
    api.redis.call("RPUSH", params.key .. ":started", tostring(core.pid()))
    api.sleep(params.ms)
    api.redis.call("RPUSH", params.key .. ":done", tostring(core.pid()))
  end,
}
