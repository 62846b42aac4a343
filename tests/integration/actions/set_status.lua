-- Sets the HTTP status and a response header.
return {
  name = "set_status",
  description = "I answer 201 with a header",
  run = function(api, data, next)
    data.status = 201
    data.headers["X-Test"] = "yes"
    data.response.created = true
    next()
  end,
}
