-- Action middleware (listed by post_probe): its postProcessor marks the response when it runs.
return {
  name = "postMarkAction",
  postProcessor = function(data, next)
    data.headers["X-Post-Action"] = "ran"
    api.log("postMarkAction ran connection=" .. tostring(data.connection.id), "info")
    next()
  end,
}
