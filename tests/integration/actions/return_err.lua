-- Finishes with `return nil, err`, which is next(err).
return {
  name = "return_err",
  description = "I return an error",
  run = function(api, data, next)
    return nil, "nope"
  end,
}
