-- Live resources found by a lookupField: pushes name the slug route.
return {
  routes = { [[^slugs/$]], [[^slugs/(?P<slug>[-\w]+)/$]] },
  resource = { name = "live_slug", fields = { slug = { required = true }, body = {} } },
  lookupField = "slug",
  generics = { "retrieve", "create", "partial_update", "remove", "subscribe" },
}
