-- BLPOP with a timeout: a command that stays in flight for a while (it also holds up the
-- shared connection meanwhile, which is why real actions should not block long).
return {
  name = "redisBlpop",
  description = "I wait on a Redis list",
  inputs = { key = { required = true }, seconds = { required = true } },
  run = function(api, data, next)
    local v = api.redis.call("BLPOP", data.params.key, tonumber(data.params.seconds))
    data.response.value = v or api.json.null
    next()
  end,
}
