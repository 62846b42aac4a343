-- Waits without blocking anyone else: api.sleep yields this action's coroutine.
return {
  name = "sleepTest",
  description = "I sleep for sleepDuration ms, then answer",
  inputs = {
    sleepDuration = {
      required = false,
      default = 1000,
      formatter = "api.formatters.toInteger",
      validator = "api.validators.integer",
    },
  },
  outputExample = { sleepStarted = 1700000000000, sleepEnded = 1700000001000, sleepDuration = 1000 },
  run = function(api, data, next)
    local started = api.now()
    api.sleep(data.params.sleepDuration)
    data.response.sleepStarted = started
    data.response.sleepDuration = data.params.sleepDuration
    data.response.sleepEnded = api.now()
    next()
  end,
}
