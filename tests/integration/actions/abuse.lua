-- Actions that misuse the API, for the abuse tests (run again under ASan).
return {
  doubleNext = {
    name = "double_next",
    description = "I call next twice",
    run = function(api, data, next)
      data.response.first = true
      next()
      next("second call must be ignored")
    end,
  },
  nextAfterTimeout = {
    name = "next_after_timeout",
    description = "I call next long after the action timed out",
    inputs = { after = { default = 400, formatter = function(p) return tonumber(p) end } },
    run = function(api, data, next)
      api.timer.after(data.params.after, function()
        data.response.tooLate = true
        next()
      end)
    end,
  },
  errorAfterSleep = {
    name = "error_after_sleep",
    description = "I raise after yielding",
    run = function(api, data, next)
      api.sleep(10)
      error("raised after sleeping")
    end,
  },
  errorInTimer = {
    name = "error_in_timer",
    description = "My timer callback raises",
    run = function(api, data, next)
      api.timer.after(10, function()
        error("raised in a timer callback")
      end)
    end,
  },
  errorNil = {
    name = "error_nil",
    description = "I raise nil",
    run = function(api, data, next)
      error(nil)
    end,
  },
  errorTableNoStatus = {
    name = "error_table_no_status",
    description = "I raise a table without a status",
    run = function(api, data, next)
      error({ detail = "no status here" })
    end,
  },
  bigResponse = {
    name = "big_response",
    description = "I answer with a large body",
    inputs = { kb = { default = 512, formatter = function(p) return tonumber(p) end } },
    run = function(api, data, next)
      data.response.blob = string.rep("x", data.params.kb * 1024)
      next()
    end,
  },
  badResponse = {
    name = "bad_response",
    description = "My response cannot be encoded as JSON",
    run = function(api, data, next)
      data.response.fn = function() end
      next()
    end,
  },
  badHeader = {
    name = "bad_header",
    description = "I set a header with a line break in its value",
    run = function(api, data, next)
      data.headers["X-Evil"] = "a\r\nInjected: yes"
      next()
    end,
  },
}
