return {
  name = "livePid", description = "the worker process that answers (tests across workers)",
  run = function(api, data)
    data.response.pid = require("gateway.core").pid()
  end,
}
