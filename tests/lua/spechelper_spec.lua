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
  background = {
    name = "background", description = "I answer, then work from a timer",
    run = function(api, data)
      api.timer.after(20, function() api.redis.call("SET", "helper:background", "done") end)
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
  signin = {
    name = "signin", description = "I start a session",
    inputs = { user = { required = true } },
    run = function(api, data)
      return { token = api.session.create(data.connection, { name = data.params.user }) }
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
  generics = { "retrieve", "list", "create", "remove", "subscribe" },
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
  local dir, h, server

  -- One Redis for the whole file, so that a spec can stop `h` to start another runtime
  -- (one runs at a time) and start `h` again on the same data.
  setup(function()
    dir = tempProject()
    server = helper.redisServer()
    h = helper.start({ config = dir .. "/gateway.lua", redis = server.url })
  end)

  teardown(function()
    if h then h.stop() end
    server.stop()
    os.execute("rm -rf " .. dir)
  end)

  -- Run fn while `h` is stopped.
  local function without_h(fn)
    h.stop()
    local ok, err = pcall(fn)
    h = helper.start({ config = dir .. "/gateway.lua", redis = server.url })
    assert(ok, err)
  end

  it("runs actions that wait on Redis, the cache and timers", function()
    h.flush()
    -- The whole answer in the message: under load this once came back without `n`.
    local first = h.runAction("counter")
    assert.equal(1, first.response and first.response.n, require("cjson").encode(first))
    assert.equal(2, h.runAction("counter").response.n)
    assert.equal("2", h.redis.call("GET", "helper:counter"))
    assert.equal("v1", h.runAction("cached", { value = "v1" }).response.loaded)
    assert.is_true(h.redis.call("EXISTS", "gateway:cache:helper-key") == 1)
    assert.is_true(h.runAction("later").response.late)
  end)

  it("turns the loop on h.wait, for work an action left behind", function()
    h.flush()
    assert.equal(200, h.runAction("background").status)
    assert.is_nil(h.redis.call("GET", "helper:background"))
    for _ = 1, 100 do
      h.wait(10)
      if h.redis.call("GET", "helper:background") then break end
    end
    assert.equal("done", h.redis.call("GET", "helper:background"))
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
    assert.has_error(function() h.runAction("stamp", {}, c) end,
      "gateway.test.runAction: no open test connection " .. c.id)
    assert.has_error(function() h.runAction("stamp", {}, { type = "carrier-pigeon" }) end,
      "gateway.test.runAction: connection type must be web, websocket or socket")
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

  it("pushes a resource's writes to a subscribed connection (live resources)", function()
    h.flush()
    local c = h.connection({ type = "websocket" })
    local answer = h.runRoute("items/", "subscribe", {}, c)
    assert.equal(200, answer.status)
    assert.same({ subscribed = true, route = "items/" }, answer.data)
    local created = h.runRoute("items/", "create", { title = "live" })
    h.wait(10)
    local route = "items/" .. created.data.id .. "/"
    assert.same({ { errors = {}, data = created.data, action = "create", route = route, status = 201 } },
      c:messages())
    assert.equal(204, h.runRoute(route, "remove").status)
    h.wait(10)
    local removed = c:messages()
    assert.equal(1, #removed)
    assert.equal(h.null, removed[1].data)
    assert.same({ "remove", route, 204 }, { removed[1].action, removed[1].route, removed[1].status })
    c:close()
    assert.equal(201, h.runRoute("items/", "create", { title = "after" }).status)
    h.wait(10)
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
    assert.has_error(function() h.runRoute("items/", "list", {}, { type = "web" }) end,
      "gateway.test.runRoute: a route runs on a websocket or socket connection")
    local no, refusal = h.runRoute("", "where", {}, { url = "/ws/vip/closed/" })
    assert.is_nil(no)
    assert.equal(403, refusal.status)
  end)

  it("runs one runtime at a time, and shares a Redis given by URL", function()
    local ok, err = pcall(helper.start, { config = dir .. "/gateway.lua", redis = server.url })
    assert.is_false(ok)
    assert.matches("a runtime is already running in this process", err)
    h.flush()
    h.redis.call("SET", "helper:shared", "yes")
    without_h(function()
      local other = helper.start({ config = dir .. "/gateway.lua", redis = server.url })
      assert.equal("yes", other.redis.call("GET", "helper:shared"))
      assert.is_nil(other.redisServer)
      assert.equal(1, other.runAction("counter").response.n)
      other.stop()
    end)
    assert.equal("yes", h.redis.call("GET", "helper:shared"))
    assert.equal(2, h.runAction("counter").response.n)
  end)

  it("loads the C modules the config lists (make modules)", function()
    local mdir = dir .. "/with_module"
    assert(os.execute("mkdir -p " .. mdir .. "/actions"))
    local so = helper._root() .. "/build/modules/hello.so"
    write(mdir .. "/gateway.lua", string.format(
      'return { modules = { { name = "hello", path = %q, config = { greeting = "Hi" } } } }', so))
    write(mdir .. "/actions/greet.lua", [[
return { name = "greet", description = "d", run = function(api, data) return { text = api.hello.greet("Ann") } end }
]])
    without_h(function()
      local other = helper.start({ config = mdir .. "/gateway.lua", redis = server.url })
      assert.equal("Hi, Ann!", other.runAction("greet").response.text)
      other.stop()
    end)
  end)

  it("restores a session from the upgrade's Bearer header on a consumer URL", function()
    local login = h.connection({ type = "socket" })
    local r = h.runAction("signin", { user = "zoe" }, login)
    local token = r.response.token
    assert.is_string(token, h.json.encode(r))
    -- The project's vip consumer needs an authenticated connection.
    local c = assert(h.connection({ url = "/ws/vip/lobby/", headers = { Authorization = "Bearer " .. token } }))
    assert.same({ name = "zoe" }, c.user)
    assert.equal(200, h.runRoute("", "where", {}, c).status)
    c:close()
    login:close()
  end)

  it("reports a config that does not load", function()
    write(dir .. "/bad.lua", "return { nope = 1 }")
    without_h(function()
      local ok, err = pcall(helper.start, { config = dir .. "/bad.lua", redis = server.url })
      assert.is_false(ok)
      assert.matches("nope: unknown key", err)
    end)
  end)

  it("stops its private redis-server and removes its folder", function()
    without_h(function()
      local other = helper.start({ config = dir .. "/gateway.lua" })
      local private = other.redisServer
      assert.is_truthy(private.pid)
      assert.is_true(os.execute("kill -0 " .. private.pid .. " 2>/dev/null") == true)
      other.stop()
      assert.is_not_true(os.execute("kill -0 " .. private.pid .. " 2>/dev/null"))
      assert.is_nil(os.rename(private.dir, private.dir))
      assert.has_error(function() other.runAction("counter") end)
    end)
  end)
end)
