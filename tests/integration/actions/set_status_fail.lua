-- Sets data.status, then fails without a status: data.status is used.
return {
  name = "set_status_fail",
  description = "I fail with the status I set",
  run = function(api, data, next)
    data.status = 409
    next("conflict")
  end,
}
