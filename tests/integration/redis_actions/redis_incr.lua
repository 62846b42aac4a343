-- INCR a key: one round trip, for concurrency and restart tests. The debug line marks the
-- moment the command is handed to the client (no yield in between), so a test can wait for
-- it to be in flight.
return {
  name = "redisIncr",
  description = "I increment a Redis counter",
  inputs = { key = { required = true } },
  run = function(api, data, next)
    api.log("redisIncr sending key=" .. data.params.key, "debug")
    data.response.value = api.redis.call("INCR", data.params.key)
    next()
  end,
}
