-- Actions for bench/redis.sh: one Redis round trip each.
return {
  benchCacheSeed = {
    name = "benchCacheSeed", description = "Store the small value benchCacheLoad reads",
    run = function(api, data)
      api.cache.save("bench", { greeting = "hello", n = 42 })
      return { ok = true }
    end,
  },
  benchCacheLoad = {
    name = "benchCacheLoad", description = "api.cache.load of a small value",
    run = function(api, data)
      local value, why = api.cache.load("bench") -- value, meta; or nil, the reason
      if value == nil then return nil, why end
      return { value = value }
    end,
  },
  benchRedisGet = {
    name = "benchRedisGet", description = "A raw GET through api.redis",
    run = function(api, data)
      return { value = api.redis.call("GET", "bench:raw") }
    end,
  },
}
