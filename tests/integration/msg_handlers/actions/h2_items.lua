-- Handler used only by test_handlers.py: the HTTP method mapping with custom actions named
-- like the generics, and a full action with inputs, middleware and a timeout.
local function op(name, status)
  return function(api, data)
    return { op = name, pk = data.params.pk, title = data.params.title }, status
  end
end

return {
  routes = { [[^items/$]], [[^items/(?P<pk>[-\w]+)/$]] },
  actions = {
    retrieve = op("retrieve"),
    list = function(api, data)
      return { { op = "list", n = 1 }, { op = "list", n = 2 } }
    end,
    create = op("create", 201),
    partial_update = op("partial_update"),
    remove = op("remove"),
    -- full definitions: a required input (422 over HTTP for PUT), per-action middleware
    update = {
      inputs = { title = { required = true } },
      run = function(api, data, next)
        data.response.op = "update"
        data.response.pk = data.params.pk
        data.response.title = data.params.title
        next()
      end,
    },
    echo = {
      description = "a handler action with inputs and middleware",
      inputs = {
        title = { required = true },
        n = { formatter = function(p) return tonumber(p) end,
              validator = function(p) if p == nil or p < 0 then return "must be >= 0" end return true end },
      },
      middleware = { "perActionA" },
      run = function(api, data, next)
        data.response.title = data.params.title
        data.response.n = data.params.n
        data.response.pk = data.params.pk
        data.response.hasUndeclared = data.params.undeclared ~= nil
        next()
      end,
    },
    never = {
      run = function(api, data, next) end,  -- never calls next: actionTimeout applies
    },
    slow = {
      run = function(api, data, next) api.sleep(600) data.response.slept = true next() end,
    },
    fail = {
      run = function(api, data, next) next({ message = "custom failure", status = 409 }) end,
    },
  },
}
