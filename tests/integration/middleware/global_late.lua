-- Global, priority 50: runs after globalEarly although it is likely loaded first.
-- Records itself only when the request has a `mworder` param, to leave other tests alone.
return {
  name = "globalLate",
  global = true,
  priority = 50,
  preProcessor = function(data, next)
    if data.params.mworder ~= nil then
      data.response.order = data.response.order or {}
      table.insert(data.response.order, "globalLate")
    end
    next()
  end,
}
