-- Defaults, formatter lists and validator results (SPEC 3.3).
return {
  name = "input_rules",
  description = "I exercise the input rules",
  inputs = {
    computed = { default = function(param, connection, actionTemplate, key) return "computed:" .. key end },
    fmtDefault = { default = "5", formatter = function(p) return tonumber(p) end },
    chain = { formatter = { function(p) return p .. "1" end, function(p) return p .. "2" end } },
    falsy = { validator = function(p) return false end },
    worded = { validator = function(p) if p ~= "ok" then return "worded must be ok" end end },
  },
  run = function(api, data, next)
    data.response.computed = data.params.computed
    data.response.fmtDefault = data.params.fmtDefault
    data.response.fmtDefaultType = type(data.params.fmtDefault)
    data.response.chain = data.params.chain
    data.response.worded = data.params.worded
    next()
  end,
}
