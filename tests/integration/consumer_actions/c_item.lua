-- rest_framework_channels' RetrieveAPIConsumer-like consumer at /ws/items/<pk>/ with child
-- handlers: retrieve and update the URL's item without a route, or go through items/ and kw/.
return {
  consumer = [[^/ws/items/(?P<pk>\d+)/$]],
  name = "item",
  resource = { name = "citem", fields = { title = { required = true, maxLength = 50 }, room = {} } },
  generics = { "retrieve", "update" },
  handlers = { "items", "kw" },
  actions = {
    whoami = function(api, data)
      return { pk = data.params.pk, kwargs = data.connection.kwargs, path = data.connection.rawConnection.path }, 200
    end,
  },
}
