-- A parent that refuses anonymous clients before routing, over a child that allows them.
return {
  consumer = [[^/ws/private/$]],
  permissions = { "isAuthenticated", "staffOnly" },
  handlers = { "open" },
  actions = { hello = function(api, data) return { user = data.connection.user }, 200 end },
}
