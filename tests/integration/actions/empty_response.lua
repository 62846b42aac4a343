-- Succeeds without putting anything in data.response.
return {
  name = "empty_response",
  description = "I answer with nothing",
  run = function(api, data, next)
    next()
  end,
}
