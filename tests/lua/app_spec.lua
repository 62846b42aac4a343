-- The example actions (actions/*.lua) through the spec helper, as a project's own specs
-- test theirs (docs/testing.md): the runtime with the example config, its event loop and
-- a private redis-server, so sessions, api.sleep and Redis work as in the gateway.

package.path = "lua/?.lua;" .. package.path

local helper = require("gateway.test")

describe("the example actions, through the spec helper", function()
  local h

  setup(function()
    h = helper.start({ config = "gateway.lua.example" })
  end)

  teardown(function()
    h.stop()
  end)

  before_each(function()
    h.flush()
  end)

  describe("randomNumber", function()
    it("answers a number below the multiplier", function()
      local r = h.runAction("randomNumber", { multiplier = 10 })
      assert.is_nil(r.error)
      assert.equal(200, r.status)
      assert.is_true(r.response.randomNumber >= 0 and r.response.randomNumber < 10)
      assert.equal(10, r.data.params.multiplier) -- after the formatter
    end)

    it("refuses a negative multiplier with 422", function()
      local r = h.runAction("randomNumber", { multiplier = -1 })
      assert.equal(422, r.status)
      assert.equal("must be > 0", r.error)
      assert.equal("must be > 0", r.response.error) -- ActionHero's shape: on the response
    end)
  end)

  describe("moneyInCents (ActionHero's table)", function()
    local function money(value)
      return h.runAction("moneyInCents", { moneyInCents = value })
    end

    it("takes 4 and \"4\" as 4", function()
      assert.equal(4, money(4).response.moneyInCents)
      assert.equal(4, money("4").response.moneyInCents)
    end)

    it("refuses \"-4\" and \"hello\"", function()
      assert.equal("money cannot be negative", money("-4").error)
      assert.equal("not a number", money("hello").error)
    end)

    it("gives \"\" and null the default 0", function()
      assert.equal(0, money("").response.moneyInCents)
      assert.equal(0, money(h.null).response.moneyInCents)
    end)
  end)

  describe("sleepTest", function()
    it("waits with api.sleep on the gateway's event loop", function()
      local r = h.runAction("sleepTest", { sleepDuration = 30 })
      assert.is_nil(r.error)
      assert.equal(30, r.response.sleepDuration)
      -- libuv timers count whole milliseconds: the wait is 29 ms or more of the wall clock.
      assert.is_true(r.response.sleepEnded - r.response.sleepStarted >= 28)
    end)
  end)

  describe("login, profile, logout", function()
    it("keeps the user on the connection, and the session in Redis", function()
      local c = h.connection({ type = "websocket" })
      assert.equal(401, h.runAction("profile", {}, c).status)

      local r = h.runAction("login", { user = "alice", password = "secret" }, c)
      assert.is_nil(r.error)
      assert.same({ name = "alice" }, c.user)
      local stored = h.redis.call("GET", "gateway:session:" .. r.response.token)
      assert.same({ name = "alice" }, h.json.decode(stored))

      assert.same({ name = "alice" }, h.runAction("profile", {}, c).response.user)
      assert.is_true(h.runAction("logout", {}, c).response.loggedOut)
      assert.is_nil(c.user)
      assert.is_nil(h.redis.call("GET", "gateway:session:" .. r.response.token))
      c:close()
    end)

    it("restores the user from a web request's Bearer header, until logout ends the session", function()
      local token = h.runAction("login", { user = "carol", password = "secret" }).response.token
      local bearer = { headers = { Authorization = "Bearer " .. token } }
      assert.same({ name = "carol" }, h.runAction("profile", {}, bearer).response.user)
      -- A logout on another connection ends the session everywhere: a WebSocket that
      -- authenticated with it loses its user on its next message.
      local ws = h.connection({ type = "websocket", user = { name = "carol" }, session = token })
      assert.is_true(h.runAction("logout", {}, bearer).response.loggedOut)
      assert.equal(401, h.runAction("profile", {}, bearer).status)
      assert.equal(401, h.runAction("profile", {}, ws).status)
      assert.is_nil(ws.user)
      ws:close()
    end)

    it("refuses a wrong password", function()
      local r = h.runAction("login", { user = "alice", password = "guess" })
      assert.equal(401, r.status)
      assert.equal("invalid user or password", r.error)
    end)

    it("runs profile for a connection given its user", function()
      local r = h.runAction("profile", {}, { user = { name = "bob" } })
      assert.same({ name = "bob" }, r.response.user)
    end)
  end)

  describe("greeting", function()
    it("runs the version asked for", function()
      assert.equal("hello world", h.runAction("greeting", { apiVersion = 1 }).response.greeting)
      assert.equal(2, h.runAction("greeting", {}).response.version)
    end)
  end)

  describe("the chat consumer", function()
    it("answers on a connection to its URL, in the room the URL names", function()
      local env = h.runRoute("", "members", {}, { url = "/ws/chat/lobby/" })
      assert.equal(200, env.status)
      assert.equal("lobby", env.data.room)
    end)

    it("says to the room's members", function()
      local a = h.connection({ url = "/ws/chat/kitchen/" })
      local b = h.connection({ url = "/ws/chat/kitchen/" })
      local env = h.runRoute("", "say", { message = "hi" }, a)
      assert.same({ delivered = 2 }, env.data)
      local heard = b:messages()
      assert.equal(1, #heard)
      assert.same({ event = "say", room = "kitchen", from = a.id, message = "hi" }, heard[1])
      assert.same({}, b:messages()) -- read once
      a:close()
      b:close()
    end)
  end)
end)
