-- Handler used only by test_handlers.py: a named group, a function-style action and a full
-- action definition. Loaded first (file name order), so it wins over later handlers.
return {
  routes = { [[kw/(?P<child_id>[-\w]+)/$]] },
  actions = {
    -- function(api, data) -> body, status
    show = function(api, data)
      return { child_id = data.params.child_id, childType = type(data.params.child_id),
               action = data.action }
    end,
    teapot = function(api, data)
      return { short = true, child_id = data.params.child_id }, 418
    end,
    array = function(api, data) return { 1, 2, 3 } end,
    text = function(api, data) return "just a string" end,
    boom = function(api, data) error("secret handler boom") end,
    -- a full action definition
    detail = {
      inputs = { sort = {}, page = {}, extra = {}, child_id = {} },
      run = function(api, data, next)
        data.response.params = data.params
        data.response.action = data.action
        next()
      end,
    },
  },
}
