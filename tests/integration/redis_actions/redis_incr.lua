-- INCR a key: one round trip, for concurrency and restart tests.
return {
  name = "redisIncr",
  description = "I increment a Redis counter",
  inputs = { key = { required = true } },
  run = function(api, data, next)
    data.response.value = api.redis.call("INCR", data.params.key)
    next()
  end,
}
