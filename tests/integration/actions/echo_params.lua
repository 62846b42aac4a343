-- Answers with the params it received after scrubbing and inputs.
return {
  name = "echo_params",
  description = "I echo my params",
  inputs = {
    a = {},
    b = {},
    n = { formatter = function(param) return tonumber(param) end },
    payload = {},
    password = {},
  },
  run = function(api, data, next)
    data.response.params = data.params
    next()
  end,
}
