-- The classic first action: a random number, optionally scaled.
return {
  name = "randomNumber",
  description = "I am an API method which will generate a random number",
  version = 1,
  inputs = {
    multiplier = {
      required = false,
      default = 1,
      formatter = "api.formatters.toNumber",
      validator = function(param)
        if type(param) ~= "number" then return "must be a number" end
        if param < 0 then return "must be > 0" end
        return true
      end,
    },
  },
  outputExample = { randomNumber = 0.123 },
  run = function(api, data, next)
    data.response.randomNumber = math.random() * data.params.multiplier
    next()
  end,
}
