-- Global middleware for the defaultMiddlewarePriority test: records itself when `prio` is set.
return {
  name = "p050",
  global = true,
  priority = 50,
  preProcessor = function(data, next)
    if data.params.prio ~= nil then
      data.response.order = data.response.order or {}
      table.insert(data.response.order, "p050")
    end
    next()
  end,
}
