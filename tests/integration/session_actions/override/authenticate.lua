-- Used only by test_sessions.py: a project's own `authenticate` action replaces the
-- built-in message.
return {
  name = "authenticate",
  description = "I am the project's own authenticate",
  inputs = { token = { required = false } },
  run = function(api, data, next)
    data.response.custom = true
    next()
  end,
}
