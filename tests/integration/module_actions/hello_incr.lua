-- Calls the Redis-backed function of the example C module: api.hello.incr(key) sends INCR over
-- the gateway's Redis connection and returns the new value; when Redis cannot answer it raises
-- { status = 503, message = ... }, which becomes the response's status.
return {
  name = "helloIncr",
  description = "I count in Redis through the hello C module",
  inputs = { key = { required = true } },
  run = function(api, data, next)
    data.response.value = api.hello.incr(data.params.key)
    next()
  end,
}
