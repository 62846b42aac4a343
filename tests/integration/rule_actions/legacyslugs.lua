-- lookupField on a resource that rule_legacy/legacy.lua writes without knowing it.
return {
  routes = { [[^legacyslugs/(?P<slug>[-\w]+)/$]] },
  lookupField = "slug",
  resource = { name = "legacy", fields = { slug = {} } },
  generics = { "retrieve" },
}
