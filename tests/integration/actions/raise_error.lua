-- Raises a Lua error: 500, and the message must stay in the log, not in the response.
return {
  name = "raise_error",
  description = "I raise a Lua error",
  run = function(api, data, next)
    error("secret internal detail")
  end,
}
