-- Global middleware for the defaultMiddlewarePriority test: records itself when `prio` is set.
return {
  name = "pdefault",
  global = true,
  preProcessor = function(data, next)
    if data.params.prio ~= nil then
      data.response.order = data.response.order or {}
      table.insert(data.response.order, "pdefault")
    end
    next()
  end,
}
