-- Web routes for the router fuzz target: params, patterns, trailing parts, versions.
return {
  get = {
    { path = "/things/:id", action = "echo" },
    { path = "/first/:x", action = "echo" },
    { path = [[/login/:id(^(\d{3}|admin)$)]], action = "echo" },
    { path = [[/code/:n(\d+)]], action = "echo" },
    { path = "/tree/:rest", action = "echo", matchTrailingPathParts = true },
    { path = "/mixed/:x/:rest", action = "echo", matchTrailingPathParts = true },
    { path = "/v1thing", action = "versioned", apiVersion = 1 },
    { path = "/ver/:apiVersion/thing", action = "versioned" },
    { path = "/Upper/CASE/:id", action = "ping" },
  },
  head = { { path = "/hd/:id", action = "ping" } },
  post = { { path = "/merge/:a", action = "echo" } },
  all = { { path = "/things/:id", action = "ping" }, { path = "/any/:a/:b", action = "strict" } },
}
