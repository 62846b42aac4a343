-- api.connections.count(): open connections of this process (this request included).
return {
  name = "connection_count",
  description = "I count open connections",
  run = function(api, data, next)
    data.response.count = api.connections.count()
    next()
  end,
}
