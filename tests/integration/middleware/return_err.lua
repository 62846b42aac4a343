-- Per-action: fails by returning nil, err.
return {
  name = "returnErr",
  preProcessor = function(data, next)
    return nil, "middleware said no"
  end,
}
