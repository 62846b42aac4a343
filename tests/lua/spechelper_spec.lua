-- The spec helper itself (lua/gateway/test.lua, core/testhost.c): a project of its own,
-- written to a temporary folder, whose actions wait on Redis, the cache and timers, never
-- finish, push to connections, and whose handler and consumer answer routes.

package.path = "lua/?.lua;" .. package.path

local helper = require("gateway.test")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function tempProject()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/actions " .. dir .. "/middleware"))
  write(dir .. "/gateway.lua", [[
return {
  name = "helper-spec",
  general = { actionTimeout = 300 },
  logging = { level = "crit" },
  app = { greeting = "hi from the app section" },
}
]])
  write(dir .. "/actions/waits.lua", [[
return {
  counter = {
    name = "counter", description = "I count in Redis",
    run = function(api, data) return { n = api.redis.call("INCR", "helper:counter") } end,
  },
  cached = {
    name = "cached", description = "I save and load through api.cache",
    inputs = { value = { required = true } },
    run = function(api, data)
      api.cache.save("helper-key", { value = data.params.value }, 10000)
      local loaded = api.cache.load("helper-key")
      return { loaded = loaded.value }
    end,
  },
  later = {
    name = "later", description = "I answer from a timer",
    run = function(api, data, next)
      api.timer.after(20, function() data.response.late = true; next() end)
    end,
  },
  never = { name = "never", description = "I never finish", run = function(api, data, next) end },
  webOnly = {
    name = "webOnly", description = "not over WebSocket", blockedConnectionTypes = { "websocket" },
    run = function(api, data) return { ok = true } end,
  },
  whoami = {
    name = "whoami", description = "I show my connection",
    run = function(api, data)
      local c = data.connection
      return { type = c.type, user = c.user, tag = c.tag, app = api.config.app.greeting }
    end,
  },
  pushTo = {
    name = "pushTo", description = "I push to a connection",
    inputs = { id = { required = true } },
    run = function(api, data)
      return { sent = api.connections.send(data.params.id, { hello = "there" }) }
    end,
  },
  stamp = {
    name = "stamp", description = "I remember on my connection",
    run = function(api, data)
      data.connection.stamped = (data.connection.stamped or 0) + 1
      return { stamped = data.connection.stamped }
    end,
  },
}
]])
  write(dir .. "/actions/items.lua", [[
return {
  routes = { [=[^items/$]=], [=[^items/(?P<pk>[-\w]+)/$]=] },
  resource = { name = "item", fields = { title = { required = true, maxLength = 10 } } },
  generics = { "retrieve", "list", "create", "remove" },
}
]])
  write(dir .. "/actions/vip.lua", [[
return {
  consumer = [=[^/ws/vip/(?P<room>\w+)/$]=],
  permissions = { "isAuthenticated" },
  connect = function(connection, kwargs)
    if kwargs.room == "closed" then return false end
  end,
  actions = { where = function(api, data) return { room = data.params.room }, 200 end },
}
]])
  return dir
end

describe("the spec helper", function()
  local dir, h

  setup(function()
    dir = tempProject()
    h = helper.start({ config = dir .. "/gateway.lua" })
  end)

  teardown(function()
    if h then h.stop() end
    os.execute("rm -rf " .. dir)
  end)

  it("runs actions that wait on Redis, the cache and timers", function()
    h.flush()
    assert.equal(1, h.runAction("counter").response.n)
    assert.equal(2, h.runAction("counter").response.n)
    assert.equal("2", h.redis.call("GET", "helper:counter"))
    assert.equal("v1", h.runAction("cached", { value = "v1" }).response.loaded)
    assert.is_true(h.redis.call("EXISTS", "gateway:cache:helper-key") == 1)
    assert.is_true(h.runAction("later").response.late)
  end)

  it("answers 504 when an action never finishes (general.actionTimeout)", function()
    local r = h.runAction("never")
    assert.equal(504, r.status)
    assert.equal("action timed out", r.error)
    assert.equal("action timed out", r.response.error)
  end)

  it("answers the errors the gateway answers", function()
    local r = h.runAction("noSuchAction")
    assert.equal(404, r.status)
    assert.equal("unknown action or invalid apiVersion", r.error)
    r = h.runAction("cached")
    assert.equal(422, r.status)
    assert.same({ "value is a required parameter for this action" }, r.errors)
  end)

  it("gives a fake connection its fields and type", function()
    local r = h.runAction("whoami", {}, { type = "socket", user = { id = 7 }, tag = "x" })
    assert.same({ type = "socket", user = { id = 7 }, tag = "x", app = "hi from the app section" }, r.response
      and { type = r.response.type, user = r.response.user, tag = r.response.tag, app = r.response.app })
    assert.equal("web", h.runAction("whoami").response.type)
    local blocked = h.runAction("webOnly", {}, { type = "websocket" })
    assert.equal(400, blocked.status)
    assert.equal("this action does not support the websocket connection type", blocked.error)
  end)

  it("keeps a connection's state between calls, and receives what is pushed to it", function()
    local c = h.connection({ type = "websocket" })
    assert.equal(1, h.runAction("stamp", {}, c).response.stamped)
    assert.equal(2, h.runAction("stamp", {}, c).response.stamped)
    assert.equal(2, c.stamped)
    assert.is_true(h.runAction("pushTo", { id = c.id }).response.sent)
    assert.same({ { hello = "there" } }, c:messages())
    c:close()
    assert.is_false(h.runAction("pushTo", { id = c.id }).response.sent)
  end)

  it("runs handler routes: generics on a Redis resource", function()
    h.flush()
    local created = h.runRoute("items/", "create", { title = "first" })
    assert.equal(201, created.status)
    assert.same({}, created.errors)
    local id = created.data.id
    assert.equal("first", h.runRoute("items/" .. id .. "/", "retrieve").data.title)
    assert.equal(1, #h.runRoute("items/", "list").data)
    local bad = h.runRoute("items/", "create", { title = "much too long" })
    assert.equal(422, bad.status)
    assert.equal(404, h.runRoute("nothing/", "list").status)
    assert.equal(405, h.runRoute("items/", "update").status)
  end)

  it("runs a consumer's actions on a connection to its URL, after its checks", function()
    local anonymous = h.runRoute("", "where", {}, { url = "/ws/vip/lobby/" })
    assert.equal(401, anonymous.status)
    local c = h.connection({ url = "/ws/vip/lobby/", user = { name = "ann" } })
    local env = h.runRoute("", "where", {}, c)
    assert.equal(200, env.status)
    assert.same({ room = "lobby" }, env.data)
    c:close()
    local refused, why = h.connection({ url = "/ws/vip/closed/" })
    assert.is_nil(refused)
    assert.equal(403, why.status)
    local none, nowhere = h.connection({ url = "/ws/elsewhere/" })
    assert.is_nil(none)
    assert.equal(404, nowhere.status)
  end)

  it("shares a Redis given by URL", function()
    h.flush()
    h.redis.call("SET", "helper:shared", "yes")
    local other = helper.start({ config = dir .. "/gateway.lua", redis = h.url })
    assert.equal("yes", other.redis.call("GET", "helper:shared"))
    assert.is_nil(other.redisServer)
    other.stop()
    assert.equal("yes", h.redis.call("GET", "helper:shared"))
  end)

  it("reports a config that does not load", function()
    write(dir .. "/bad.lua", "return { nope = 1 }")
    local ok, err = pcall(helper.start, { config = dir .. "/bad.lua" })
    assert.is_false(ok)
    assert.matches("nope: unknown key", err)
  end)

  it("stops its private redis-server and removes its folder", function()
    local other = helper.start({ config = dir .. "/gateway.lua" })
    local server = other.redisServer
    assert.is_truthy(server.pid)
    assert.is_true(os.execute("kill -0 " .. server.pid .. " 2>/dev/null") == true)
    other.stop()
    assert.is_not_true(os.execute("kill -0 " .. server.pid .. " 2>/dev/null"))
    assert.is_nil(os.rename(server.dir, server.dir))
    assert.has_error(function() other.runAction("counter") end)
  end)
end)
