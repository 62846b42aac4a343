-- Redis from a timer callback: its own task, with nobody waiting for it.
return {
  name = "redisLater",
  description = "I write to Redis from a timer callback after answering",
  inputs = { key = { required = true }, value = { required = true } },
  run = function(api, data, next)
    local k, v = data.params.key, data.params.value
    api.timer.after(10, function()
      api.redis.call("SET", k, v)
      api.redis.call("EXPIRE", k, 60)
    end)
    next()
  end,
}
