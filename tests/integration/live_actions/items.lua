-- Live resources (issue 17): every generic, and subscribe, on one resource.
return {
  name = "live_items",
  routes = { [[^items/$]], [[^items/(?P<pk>\d+)/$]] },
  resource = { name = "live_item", fields = {
    title = { required = true, maxLength = 100 },
    note = { default = "" },
  } },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove", "subscribe" },
}
