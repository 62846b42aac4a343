-- Web routes used only by test_routes.py (paths relative to /api).
return {
  get = {
    { path = "/things/:id", action = "routeGet" },
    { path = "/first/:x", action = "routeA" },
    { path = "/first/fixed", action = "routeB" },       -- shadowed: the route above matches first
    { path = "/routeB", action = "routeC" },             -- a route beats the action named routeB
    { path = [[/login/:userID(^(\d{3}|admin)$)]], action = "routeA" },
    { path = [[/code/:c(\d+)]], action = "routeB" },     -- unanchored: search semantics
    { path = "/tree/:rest", action = "routeA", matchTrailingPathParts = true },
    { path = "/mixed/:x/:rest", action = "routeB", matchTrailingPathParts = true },
    { path = "/leaf/:name", action = "routeA" },
    { path = "/v1thing", action = "routeVersioned", apiVersion = 1 },
    { path = "/ver/:apiVersion/thing", action = "routeVersioned" },
    { path = "/files/:name", action = "fileMime" },
    { path = "/Upper/CASE/:id", action = "routeC" },
    { path = "/scrub/:undeclared", action = "routeA" },
    { path = "/two/:a/:b", action = "routeC" },
    { path = "/hd/:id", action = "routeGet" },
  },
  head = {
    { path = "/hd/:id", action = "routeHead" },
  },
  post = {
    { path = "/merge/:a", action = "routeA" },
  },
  all = {
    { path = "/things/:id", action = "routeAll" },
    { path = "/merge/:a", action = "routeB" },
  },
}
