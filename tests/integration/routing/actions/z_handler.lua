-- A handler loaded with the routing fixtures (test_routes.py): web routes and a single
-- segment naming an action come before handler routes.
return {
  routes = { [[^things/(?P<pk>\w+)$]], [[^onlyhandler/(?P<pk>\w+)/$]], [[^routeA$]] },
  actions = {
    retrieve = function(api, data) return { handler = "retrieve", pk = data.params.pk } end,
    list = function(api, data) return { handler = "list" } end,
    create = function(api, data) return { handler = "create" } end,
  },
}
