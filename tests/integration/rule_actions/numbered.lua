-- lookupField on an integer field: "5" in the route finds number 5.
return {
  routes = { [[^numbered/$]], [[^numbered/(?P<number>[^/]+)/$]] },
  lookupField = "number",
  resource = { name = "numbered", fields = { number = { type = "integer", required = true }, name = {} } },
  generics = { "retrieve", "create", "update", "partial_update", "remove" },
}
