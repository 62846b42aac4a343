-- Left out of the documentation.
return {
  name = "hidden_doc",
  description = "I am not documented",
  toDocument = false,
  run = function(api, data, next)
    next()
  end,
}
