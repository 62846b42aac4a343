-- A task whose middleware refuses an enqueue with refuse = "yes" (preEnqueue) and skips a
-- run with skip = "yes" (preProcessor), and a no-op for the benchmark.
return {
  guard = {
    name = "guard",
    preEnqueue = function(job)
      if job.params.refuse == "yes" then return false, "refused by guard" end
      job.params.stamped = "pre"
    end,
    preProcessor = function(job)
      if job.params.skip == "yes" then return false, "skipped by guard" end
    end,
  },
  guarded = {
    name = "guarded",
    description = "Guarded by middleware",
    middleware = { "guard" },
    inputs = { key = { required = true }, refuse = {}, skip = {}, stamped = {} },
    run = function(api, params, job)
      api.redis.call("HSET", params.key, job.id, params.stamped or "")
    end,
  },
  noop = {
    name = "noop",
    description = "Does nothing",
    queue = "bench",
    run = function() end,
  },
}
