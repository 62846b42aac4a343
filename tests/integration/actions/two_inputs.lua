-- Two required positive numbers: every failing input is reported.
local function positive(param)
  if param <= 0 then return "must be > 0" end
  return true
end

return {
  name = "two_inputs",
  description = "I need x and y",
  inputs = {
    x = { required = true, formatter = function(p) return tonumber(p) end, validator = positive },
    y = { required = true, formatter = function(p) return tonumber(p) end, validator = positive },
  },
  run = function(api, data, next)
    data.response.sum = data.params.x + data.params.y
    next()
  end,
}
