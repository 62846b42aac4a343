-- lookupField (issue 15): pages are found by their slug; pagesbyid.lua shares the resource
-- and finds the same objects by id.
return {
  routes = { [[^pages/$]], [[^pages/(?P<slug>[-\w]+)/$]] },
  lookupField = "slug",
  resource = { name = "page", fields = { slug = { required = true, blank = false }, body = {} } },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
