-- Per-action: the postProcessor fails, which adds its error to the response.
return {
  name = "postErr",
  postProcessor = function(data, next)
    next("post processing failed")
  end,
}
