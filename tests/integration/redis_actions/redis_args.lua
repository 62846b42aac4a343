-- How Lua values become command arguments: numbers as Redis expects them, others refused.
return {
  name = "redisArgs",
  description = "I store numbers and read them back",
  inputs = { key = { required = true } },
  run = function(api, data, next)
    local k = data.params.key
    local values = { int = 42, negative = -7, integral_float = 3.0, fraction = 1.5,
                     small = 0.1, big = 1e20, huge = math.huge, neg_huge = -math.huge,
                     max = math.maxinteger }
    local out = {}
    for name, v in pairs(values) do
      api.redis.call("HSET", k, name, v)
    end
    local all = api.redis.call("HGETALL", k)
    for i = 1, #all, 2 do out[all[i]] = all[i + 1] end
    data.response.stored = out
    local ok, e = pcall(api.redis.call, "SET", k .. ":b", true)
    data.response.boolean = tostring(e)
    ok, e = pcall(api.redis.call, "SET", k .. ":t", {})
    data.response.table = tostring(e)
    ok, e = pcall(api.redis.call, 42)
    data.response.name = tostring(e)
    ok, e = pcall(api.redis.call)
    data.response.none = tostring(e)
    next()
  end,
}
