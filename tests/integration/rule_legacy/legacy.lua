-- A gateway that does not know the lookupField of rule_actions/legacyslugs.lua (an older
-- config, or another node): it writes the "legacy" resource by id only.
return {
  routes = { [[^legacy/$]], [[^legacy/(?P<pk>\d+)/$]] },
  resource = { name = "legacy", fields = { slug = {} } },
  generics = { "create", "retrieve", "partial_update", "remove" },
}
