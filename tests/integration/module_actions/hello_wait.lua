-- Calls the async function of the example C module: api.hello.wait(ms) suspends the action
-- on a libuv timer and returns ms when it fires.
return {
  name = "helloWait",
  description = "I wait ms milliseconds in the hello C module",
  inputs = { ms = { required = true } },
  run = function(api, data, next)
    -- The tests wait for this line to know the wait has begun.
    api.log("helloWait waiting ms=" .. tostring(data.params.ms), "info")
    data.response.waited = api.hello.wait(tonumber(data.params.ms))
    local ok, err = pcall(api.hello.wait, "soon")
    data.response.misuse = not ok and tostring(err) or "no error"
    local co_ok, co_err = coroutine.resume(coroutine.create(function() return api.hello.wait(1) end))
    data.response.in_coroutine = not co_ok and tostring(co_err) or "no error"
    next()
  end,
}
