-- Schedules work with api.timer.after and answers at once (issue 14, timer work at
-- shutdown): a short timer that writes to Redis and logs, and a long one that cannot run
-- within shutdownTimeout.
return {
  name = "schedule",
  description = "I schedule a short and a long timer",
  inputs = { key = { required = true }, short = { default = 200 }, long = { default = 60000 } },
  run = function(api, data)
    local key = data.params.key
    api.redis.call("PING") -- 503 until the Redis client is connected: the test retries
    api.timer.after(tonumber(data.params.short), function()
      local reply = api.redis.call("SET", key, "ran")
      api.log("short timer done", "notice", { key = key, reply = reply.ok })
    end)
    api.timer.after(tonumber(data.params.long), function()
      api.log("long timer ran", "notice", { key = key })
    end)
    data.response.scheduled = true
  end,
}
