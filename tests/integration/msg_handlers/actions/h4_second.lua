return {
  -- ^kw/ also matches "kw/2/", but h1_kw.lua (unanchored, loaded first) must win.
  routes = { [[^dup/]], [[^only-second/]], [[^kw/]] },
  actions = {
    who = function(api, data) return { handler = "second" } end,
    secondOnly = function(api, data) return { handler = "second" } end,
  },
}
