-- BLPOP with a timeout: a command that stays in flight for a while (it also holds up the
-- shared connection meanwhile, which is why real actions should not block long). The debug
-- line marks the moment the command is handed to the client, as in redisIncr.
return {
  name = "redisBlpop",
  description = "I wait on a Redis list",
  inputs = { key = { required = true }, seconds = { required = true } },
  run = function(api, data, next)
    api.log("redisBlpop sending key=" .. data.params.key, "debug")
    local v = api.redis.call("BLPOP", data.params.key, tonumber(data.params.seconds))
    data.response.value = v or api.json.null
    next()
  end,
}
