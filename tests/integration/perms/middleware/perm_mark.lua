-- Global middleware used only by test_permissions.py: marks the connection before the
-- permissions run, and logs in HTTP requests that carry an X-Api-Key header (the test user name).
-- A permission registered from a middleware file (used by the fromMiddleware action).
api.permissions.add("fromMiddlewareFile", function(data)
  return data.params.mw == "1"
end)

return {
  name = "permMark",
  global = true,
  priority = 1,
  preProcessor = function(data, next)
    data.connection.permMark = "set-by-middleware"
    local raw = data.connection.rawConnection
    local user = raw and raw.headers and raw.headers["x-api-key"]
    if user then data.connection.user = user end
    next()
  end,
}
