-- The check-then-write window (issue 15): this object permission changes the object it
-- was shown, as a concurrent request would between the read and the write, while the
-- object's `meddle` count is above 0.
api.permissions.addObject("meddles", function(data, obj)
  if type(obj.meddle) == "number" and obj.meddle > 0 then
    local key = api.config.redis.prefix .. "resource:racy:obj:" .. obj.id
    api.redis.call("HSET", key, "meddle", tostring(math.tointeger(obj.meddle - 1)))
  end
  return true
end)

return {
  routes = { [[^racy/$]], [[^racy/(?P<pk>\d+)/$]] },
  resource = { name = "racy", fields = { title = {}, meddle = { type = "integer" } } },
  objectPermissions = { "meddles" },
  generics = { "retrieve", "create", "partial_update", "update", "remove" },
}
