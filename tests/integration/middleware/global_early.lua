-- Global, priority 10: the first recording middleware; also adds a response field.
return {
  name = "globalEarly",
  global = true,
  priority = 10,
  preProcessor = function(data, next)
    if data.params.mworder ~= nil then
      data.response.order = data.response.order or {}
      table.insert(data.response.order, "globalEarly")
      data.response.globalField = "added by globalEarly"
    end
    next()
  end,
}
