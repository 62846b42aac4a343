-- Fails with a plain string error: 400 with error == "broken".
return {
  name = "fail_string",
  description = "I fail with a string",
  run = function(api, data, next)
    next("broken")
  end,
}
