-- Logs its action line at debug.
return {
  name = "log_level",
  description = "I log at debug",
  logLevel = "debug",
  run = function(api, data, next)
    next()
  end,
}
