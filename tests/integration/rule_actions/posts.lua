-- Object permissions (issue 15): only the author may see, change or remove a post.
api.permissions.addObject("isOwner", function(data, obj)
  return data.connection.user ~= nil and obj.author == data.connection.user.name
end)
-- A reason, as api.permissions.add's checks give one.
api.permissions.addObject("notFrozen", function(_, obj)
  if obj.frozen == true then return false, "frozen posts cannot change" end
  return true
end)
-- Same name as a plain permission: the namespaces are separate.
api.permissions.add("notFrozen", function() return true end)

return {
  routes = { [[^posts/$]], [[^posts/(?P<pk>\d+)/$]] },
  resource = {
    name = "post",
    fields = {
      title = { required = true, blank = false },
      frozen = { type = "boolean" },
      author = { readOnly = true,
                 default = function(_, connection) return connection.user and connection.user.name end },
    },
  },
  permissions = { "notFrozen" },
  objectPermissions = { "isOwner", "notFrozen" },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
}
