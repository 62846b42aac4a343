-- Ends as `mode` says, to show when postProcessors run (SPEC §3.2: skipped when run fails).
-- Uses the action middleware postMarkAction; the global postMarkGlobal runs as well.
return {
  name = "post_probe",
  description = "I succeed or fail in the way I am asked to",
  middleware = { "postMarkAction" },
  inputs = {
    mode = {
      required = true,
      validator = function(p) if p == "invalid" then return "mode is invalid" end return true end,
    },
  },
  run = function(api, data, next)
    local mode = data.params.mode
    if mode == "next" then
      data.response.ran = true
      next()
    elseif mode == "return_table" then
      return { ran = true }
    elseif mode == "later_next" then
      api.timer.after(10, function() data.response.ran = true; next() end)
    elseif mode == "next_err" then
      next("failed by next")
    elseif mode == "next_err_table" then
      next({ message = "failed with a table", status = 402 })
    elseif mode == "return_err" then
      return nil, "failed by return"
    elseif mode == "raise" then
      error("raised on purpose")
    elseif mode == "raise_table" then
      error({ message = "raised a table", status = 418 })
    elseif mode == "later_err" then
      api.timer.after(10, function() next("failed later") end)
    else
      next("unknown mode " .. tostring(mode))
    end
  end,
}
