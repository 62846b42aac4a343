-- A Redis-backed resource (SPEC §6 generics) for the middleware contract: every generic.
return {
  routes = { [[^citems/$]], [[^citems/(?P<pk>\d+)/$]] },
  resource = { name = "citem", fields = { title = { required = true } } },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
