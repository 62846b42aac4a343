-- Field rules of resources (issue 15): blank, type, choices, readOnly, with DRF's messages.
return {
  routes = { [[^articles/$]], [[^articles/(?P<pk>\d+)/$]] },
  resource = {
    name = "article",
    fields = {
      title = { required = true, blank = false, maxLength = 20 },
      note = {},                                             -- blank allowed (the default)
      status = { choices = { "draft", "published" }, default = "draft" },
      level = { type = "integer", choices = { 1, 2, 3 } },
      count = { type = "integer" },
      ratio = { type = "number" },
      flag = { type = "boolean" },
      label = { type = "string", maxLength = 5 },
      shout = { type = "string", blank = false, formatter = "api.formatters.trim" },
      author = { readOnly = true,
                 default = function(_, connection) return connection.user and connection.user.name end },
      stamp = { readOnly = true },
    },
  },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
