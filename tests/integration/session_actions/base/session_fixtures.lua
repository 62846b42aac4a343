-- Used only by test_sessions.py: api.session called directly, with a ttl of the test's
-- choosing, and what is stored in Redis.
return {
  sessionCreate = {
    name = "sessionCreate",
    description = "I create a session for any user with the given ttl",
    inputs = { user = { required = true }, ttlMs = { required = false } },
    run = function(api, data, next)
      local ttl = data.params.ttlMs and tonumber(data.params.ttlMs) or nil
      local token = api.session.create(data.connection, { name = data.params.user }, ttl)
      data.response.token = token
      data.response.connectionUser = data.connection.user
      data.response.connectionSession = data.connection.session == token
      next()
    end,
  },
  sessionInspect = {
    name = "sessionInspect",
    description = "I load a session by token and show its Redis key",
    inputs = { token = { required = true } },
    run = function(api, data, next)
      local token = data.params.token
      data.response.user = api.session.load(token) or api.json.null
      local k = api.config.redis.prefix .. "session:" .. token
      data.response.pttl = api.redis.call("PTTL", k)
      data.response.stored = api.redis.call("GET", k) or api.json.null
      next()
    end,
  },
  sessionWhoami = {
    name = "sessionWhoami",
    description = "I tell who the connection is, without a permission",
    run = function(api, data, next)
      data.response.user = data.connection.user or api.json.null
      data.response.hasSession = data.connection.session ~= nil
      next()
    end,
  },
  sessionMisuse = {
    name = "sessionMisuse",
    description = "I call api.session wrongly",
    run = function(api, data, next)
      local out = {}
      local ok, e = pcall(api.session.create, data.connection, nil)
      out.nilUser = tostring(e)
      ok, e = pcall(api.session.create, data.connection, "u", -5)
      out.badTtl = tostring(e)
      ok, e = pcall(api.session.create, data.connection, { f = function() end })
      out.notJson = ok and "ok" or "error"
      out.loadJunk = api.session.load("../../etc") == nil and api.session.load(42) == nil
      data.response = out
      next()
    end,
  },
}
