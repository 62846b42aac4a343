-- Handlers used only by test_handlers.py: h3 and h4 both match "dup/..."; h3 loads first.
return {
  routes = { [[^dup/]] },
  actions = {
    who = function(api, data) return { handler = "first" } end,
  },
}
