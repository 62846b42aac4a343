-- Generic handlers on a Redis resource (SPEC §6): every generic, no pagination.
return {
  routes = { [[^items/$]], [[^items/(?P<pk>[-\w]+)/$]] },
  resource = {
    name = "item",
    fields = {
      title = { required = true, maxLength = 255 },
      content = { default = "" },
      code = { minLength = 3, maxLength = 5 },
      tags = {},
    },
  },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
