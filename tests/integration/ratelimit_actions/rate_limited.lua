-- Opts in to the ratelimit C module's middleware (examples/modules/ratelimit) by name: with
-- the module's global = false, only actions listing "ratelimit" are limited.
return {
  name = "rateLimited",
  description = "I answer only within the ratelimit module's limit",
  middleware = { "ratelimit" },
  run = function(api, data, next)
    data.response.ok = true
    next()
  end,
}
