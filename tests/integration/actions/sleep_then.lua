-- Sleeps (yielding the coroutine), then answers.
return {
  name = "sleep_then",
  description = "I sleep 50 ms then answer",
  run = function(api, data, next)
    api.sleep(50)
    data.response.slept = true
    next()
  end,
}
