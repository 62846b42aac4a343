-- A global middleware: every web answer of an action that succeeded names the gateway in a
-- response header (postProcessors are skipped when an action fails, SPEC §3.2).
return {
  name = "poweredBy",
  global = true,
  priority = 1000,
  postProcessor = function(data)
    data.headers["X-Powered-By"] = api.config.name
  end,
}
