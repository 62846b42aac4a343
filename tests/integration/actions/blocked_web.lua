-- Not available over HTTP.
return {
  name = "blocked_web",
  description = "I refuse web connections",
  blockedConnectionTypes = { "web" },
  run = function(api, data, next)
    data.response.ran = true
    next()
  end,
}
