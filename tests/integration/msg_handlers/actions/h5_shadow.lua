-- A handler route that spells an existing action's name: the action wins over HTTP.
return {
  -- The unanchored dup/ also matches "dup/x", but the anchored ^dup/ of h3 loads first.
  routes = { [[^echo_params$]], [[dup/]] },
  actions = {
    list = function(api, data) return { handler = "shadow" } end,
  },
}
