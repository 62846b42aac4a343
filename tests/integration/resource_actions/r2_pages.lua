-- A paginated resource (pageSize 2) with a formatter and a validator on a field.
return {
  routes = { [[^pages/$]], [[^pages/(?P<pk>\d+)/$]] },
  resource = {
    name = "page",
    fields = {
      title = { required = true, formatter = function(v) return type(v) == "string" and v:upper() or v end,
                validator = function(v) if v == "BAD" then return "no bad titles" end end },
    },
    pageSize = 2,
  },
  generics = { "list", "create", "retrieve", "destroy" },
}
