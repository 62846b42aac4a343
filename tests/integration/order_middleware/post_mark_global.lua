-- Global: its postProcessor marks the response (header and log line) when it runs.
return {
  name = "postMarkGlobal",
  global = true,
  priority = 10,
  postProcessor = function(data, next)
    data.headers["X-Post-Global"] = "ran"
    api.log("postMarkGlobal ran connection=" .. tostring(data.connection.id), "info")
    next()
  end,
}
