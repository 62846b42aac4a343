return {
  name = "redisConnected",
  description = "I tell whether Redis is connected",
  run = function(api, data, next)
    data.response.connected = api.redis.connected()
    next()
  end,
}
