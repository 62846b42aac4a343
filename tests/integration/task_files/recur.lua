-- Runs every second across the cluster; each run appends its time to app.recurKey.
local core = require("gateway.core")
return {
  name = "recur",
  description = "Recurring every second",
  frequency = 1000,
  queue = "recurring",
  run = function(api)
    api.redis.call("RPUSH", api.config.app.recurKey, tostring(math.floor(api.now())) .. " " .. core.pid())
  end,
}
