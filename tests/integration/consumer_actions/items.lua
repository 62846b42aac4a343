-- A child handler: the items resource under items/ and items/<pk>/.
return {
  name = "items",
  routes = { [[^items/$]], [[^items/(?P<pk>\d+)/$]] },
  resource = { name = "citem", fields = { title = { required = true, maxLength = 50 }, room = {} } },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
