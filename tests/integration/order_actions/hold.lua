-- Stays pending until the file named by `flag` exists (or `ms`, at most 20 s, pass), so a
-- test can keep a connection's pending slots full for as long as it needs, without
-- guessing durations. Logs `hold start key=<key>` once it is pending.
return {
  name = "hold",
  description = "I wait for a flag file",
  inputs = {
    key = { required = true },
    flag = { required = true },
    ms = { default = 20000, formatter = function(p) return math.min(tonumber(p) or 20000, 20000) end },
  },
  run = function(api, data, next)
    local p = data.params
    local deadline = api.now() + p.ms
    api.log("hold start key=" .. tostring(p.key), "info")
    local released = false
    while api.now() < deadline do
      local f = io.open(p.flag, "r")
      if f then
        f:close()
        released = true
        break
      end
      api.sleep(10)
    end
    data.response.key = p.key
    data.response.released = released
    next()
  end,
}
