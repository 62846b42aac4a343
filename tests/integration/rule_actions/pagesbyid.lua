-- The resource of pages.lua, by id.
return {
  routes = { [[^pagesbyid/(?P<pk>\d+)/$]] },
  resource = { name = "page", fields = { slug = { required = true, blank = false }, body = {} } },
  generics = { "retrieve", "partial_update" },
}
