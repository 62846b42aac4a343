-- Fails every time, after counting the attempt: two retries, then the failed list.
return {
  name = "flaky",
  description = "Always fails",
  retries = 2,
  backoff = { 100, 200 },
  inputs = { key = { required = true } },
  run = function(api, params)
    api.redis.call("RPUSH", params.key, tostring(math.floor(api.now())))
    error("boom " .. params.key)
  end,
}
