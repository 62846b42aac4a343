-- Per-action (used by mw_order): records itself and adds a field in its postProcessor.
return {
  name = "perActionA",
  global = false,
  priority = 1,
  preProcessor = function(data, next)
    data.response.order = data.response.order or {}
    table.insert(data.response.order, "perActionA")
    next()
  end,
  postProcessor = function(data, next)
    data.response.post = "added by perActionA"
    next()
  end,
}
