-- A child handler with a custom action returning body, status: what it sees of the URL
-- kwargs and the route's groups.
return {
  name = "kw",
  routes = { [[^kw/(?P<pk>\d+)/$]], [[^kw/(?P<room_id>[-\w]+)/x/$]] },
  actions = {
    echo = function(api, data)
      return { pk = data.params.pk, room_id = data.params.room_id, note = data.params.note }, 200
    end,
  },
}
