-- What api.redis refuses, with the messages an action author sees.
return {
  name = "redisMisuse",
  description = "I call api.redis where it cannot work",
  run = function(api, data, next)
    local out = {}
    for _, cmd in ipairs({ "MULTI", "subscribe", "SELECT", "CLIENT" }) do
      local ok, e = pcall(api.redis.call, cmd, cmd == "CLIENT" and "REPLY" or "1", "OFF")
      out[cmd] = ok and "allowed" or tostring(e)
    end
    local ok, e = pcall(api.redis.pcall, "MULTI")
    out.pcall_multi = ok and "allowed" or tostring(e)
    local co = coroutine.wrap(function() return pcall(api.redis.call, "PING") end)
    local _, e2 = co()
    out.own_coroutine = tostring(e2)
    local okSort, e3 = pcall(table.sort, { 2, 1 }, function(a, b)
      api.redis.call("PING")
      return a < b
    end)
    out.not_yieldable = okSort and "allowed" or tostring(e3)
    data.response.messages = out
    next()
  end,
}
