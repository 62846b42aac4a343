-- Live resources with permissions: only an authenticated client subscribes, and only the
-- owner of an object subscribes to it and receives its pushes.
api.permissions.addObject("liveOwner", function(data, obj)
  return data.connection.user ~= nil and obj.owner == data.connection.user.name
end)

return {
  routes = { [[^private/$]], [[^private/(?P<pk>\d+)/$]] },
  resource = { name = "live_private", fields = {
    title = { required = true },
    owner = { required = true },
  } },
  permissions = { "isAuthenticated" },
  objectPermissions = { "liveOwner" },
  generics = { "retrieve", "create", "partial_update", "remove", "subscribe" },
}
