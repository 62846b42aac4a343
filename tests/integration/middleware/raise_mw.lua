-- Per-action: raises a Lua error (500; the message goes to the log only).
return {
  name = "raiseMw",
  preProcessor = function(data, next)
    error("middleware secret boom")
  end,
}
