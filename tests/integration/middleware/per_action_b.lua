-- Per-action (used by mw_order, listed before perActionA despite its higher priority).
return {
  name = "perActionB",
  priority = 500,
  preProcessor = function(data, next)
    data.response.order = data.response.order or {}
    table.insert(data.response.order, "perActionB")
    next()
  end,
}
