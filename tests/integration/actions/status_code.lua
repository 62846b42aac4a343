-- Answers with the HTTP status given in params.status (a number) and an X-Test header, for
-- the statuses that carry no body (204, 304) and the HEAD checks of test_http_layer.py.
return {
  name = "status_code",
  description = "I answer with the status I am given",
  inputs = { status = { formatter = function(param) return tonumber(param) end } },
  run = function(api, data, next)
    data.status = data.params.status or 200
    data.headers["X-Test"] = "yes"
    data.response.status = data.status
    next()
  end,
}
