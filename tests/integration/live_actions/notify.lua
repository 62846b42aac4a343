-- A write behind the generics' back, announced by hand.
return {
  name = "liveTouch", description = "writes an item's note with api.redis and announces it",
  inputs = { id = { required = true }, note = { required = true } },
  run = function(api, data)
    local key = api.config.redis.prefix .. "resource:live_item:obj:" .. data.params.id
    api.redis.call("HSET", key, "note", api.json.encode(data.params.note))
    local obj = { id = tonumber(data.params.id), note = data.params.note }
    local title = api.redis.call("HGET", key, "title")
    obj.title = title and api.json.decode(title) or api.json.null
    data.response.announced = api.resources.notify("live_item", data.params.id, "partial_update", obj)
  end,
}
