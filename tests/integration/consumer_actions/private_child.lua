-- A child that allows anyone, under a parent that does not.
return {
  name = "open",
  routes = { [[^open/$]] },
  permissions = { "allowAny" },
  actions = { ping = function() return { pong = true }, 200 end },
}
