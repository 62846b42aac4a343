-- A message handler: named groups, the HTTP method mapping and a custom action.
return {
  routes = { [[^items/$]], [[^items/(?P<pk>[-\w]+)/$]], [[^kw/(?P<child_id>[-\w]+)/(?P<slug>[a-z]*)$]] },
  actions = {
    list = function(api, data) return { { n = 1 }, { n = 2 } } end,
    retrieve = function(api, data) return { pk = data.params.pk } end,
    create = function(api, data) return { created = true }, 201 end,
    update = function(api, data) return { pk = data.params.pk } end,
    partial_update = function(api, data) return { pk = data.params.pk } end,
    remove = function(api, data) return { removed = data.params.pk } end,
    show = function(api, data) return { child_id = data.params.child_id } end,
  },
}
