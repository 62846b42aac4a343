-- Calls next from a timer callback, after run has returned.
return {
  name = "later_next",
  description = "I answer from a timer",
  run = function(api, data, next)
    api.timer.after(20, function()
      data.response.late = true
      next()
    end)
  end,
}
