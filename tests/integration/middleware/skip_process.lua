-- Per-action: skips the action's run, the request is still answered.
return {
  name = "skipProcess",
  preProcessor = function(data, next)
    data.toProcess = false
    data.response.skipped = true
    next()
  end,
}
