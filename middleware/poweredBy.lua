-- A global middleware: every web answer names the gateway in a response header.
return {
  name = "poweredBy",
  global = true,
  priority = 1000,
  postProcessor = function(data)
    data.headers["X-Powered-By"] = api.config.name
  end,
}
