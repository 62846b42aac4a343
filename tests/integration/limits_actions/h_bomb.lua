-- A message handler for test_vm_limits.py whose route pattern backtracks catastrophically on
-- "bomb/aaa...ab".
return {
  routes = { [[^bomb/(a+)+$]] },
  actions = {
    show = function(api, data) return { matched = true } end,
  },
}
