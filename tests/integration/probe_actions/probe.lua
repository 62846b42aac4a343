-- Calls the test module tests/integration/module_src/probe.c (see test_module_api.py).
return {
  {
    name = "probeInfo",
    description = "I return api.probe.info and what the connection hooks saw",
    middleware = { "probePost" },
    inputs = { probeFail = {} },
    run = function(api, data, next)
      data.response.info = api.probe.info
      data.response.seen = data.connection.probeSeen == true
      data.response.created, data.response.destroyed = api.probe.counts()
      data.response.connected = api.probe.connected()
      next()
    end,
  },
  {
    name = "probeRedis",
    description = "I run one Redis command through the probe module",
    inputs = { cmd = { required = true }, args = {} },
    run = function(api, data, next)
      local argv = { data.params.cmd }
      for word in tostring(data.params.args or ""):gmatch("%S+") do argv[#argv + 1] = word end
      local reply, err = api.probe.redis(table.unpack(argv))
      data.response.reply = reply
      data.response.err = err
      next()
    end,
  },
  {
    name = "probeWhy",
    description = "I ask where the probe module may suspend",
    run = function(api, data, next)
      data.response.here = api.probe.why() or "can suspend"
      local inSort
      table.sort({ 2, 1 }, function(a, b)
        inSort = inSort or api.probe.why()
        return a < b
      end)
      data.response.inSort = inSort
      data.response.inCoroutine = coroutine.wrap(function() return api.probe.why() end)()
      local ok, err = pcall(table.sort, { 2, 1 }, function(a, b)
        api.probe.redis("PING")
        return a < b
      end)
      data.response.redisInSort = not ok and tostring(err) or "no error"
      next()
    end,
  },
}
