-- Per-action: nothing is rendered (204 over the web).
return {
  name = "noRender",
  preProcessor = function(data, next)
    data.toRender = false
    next()
  end,
}
