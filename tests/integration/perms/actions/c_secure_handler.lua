-- A handler whose permissions apply to all its actions (test_permissions.py).
return {
  routes = { [[^secure/(?P<pk>\w+)/$]], [[^secure/$]] },
  permissions = { "isAuthenticated" },
  actions = {
    peek = function(api, data) return { peek = true, user = data.connection.user } end,
    retrieve = function(api, data) return { retrieved = data.params.pk } end,
    full = {
      inputs = { title = { required = true } },
      run = function(api, data, next)
        data.response.title = data.params.title
        next()
      end,
    },
    adminPeek = {
      permissions = { "isAdmin" },  -- on top of the handler's isAuthenticated
      run = function(api, data, next)
        data.response.admin = true
        next()
      end,
    },
  },
}
