-- The raw Redis keys (and their types and TTLs) matching a pattern, and api.cache's prefix;
-- flushScripts = true first empties Redis's script cache (as a Redis restart would).
return {
  name = "cacheKeys",
  description = "I list raw Redis keys",
  inputs = { pattern = { required = true }, flushScripts = {} },
  run = function(api, data, next)
    if data.params.flushScripts then api.redis.call("SCRIPT", "FLUSH") end
    local keys = api.redis.call("KEYS", data.params.pattern)
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do
      out[#out + 1] = { key = k, type = api.redis.call("TYPE", k).ok,
                        pttl = api.redis.call("PTTL", k) }
    end
    data.response.keys = out
    data.response.prefix = api.cache.prefix
    data.response.configPrefix = api.config.redis.prefix
    next()
  end,
}
