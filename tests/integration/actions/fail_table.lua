-- Fails with an error table: its status and fields are used.
return {
  name = "fail_table",
  description = "I fail with an error table",
  run = function(api, data, next)
    next({ message = "payment required", status = 402, code = "PAY" })
  end,
}
