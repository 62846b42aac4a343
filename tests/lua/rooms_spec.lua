-- Specs for lua/gateway/services/rooms.lua, the parts that need no Redis: room names, the
-- say event's text, the middleware's refuse/rewrite rules, and the local fan-out (each
-- local member once, nobody else), with api.redis and api.cluster stubbed; and the loader's
-- room middleware. The Redis side is tested end to end in tests/integration/test_rooms.py.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local rooms = require("gateway.services.rooms")
local connections = require("gateway.services.connections")
local loader = require("gateway.registry.loader")
local json = require("gateway.json")

describe("rooms.checkName", function()
  it("takes a non-empty UTF-8 string up to the limit", function()
    assert.is_nil(rooms.checkName("lobby", 5))
    assert.is_nil(rooms.checkName("é", 2))
    assert.equal(rooms.REQUIRED, rooms.checkName(nil, 5))
    assert.equal(rooms.REQUIRED, rooms.checkName("", 5))
    assert.equal("must be a string", rooms.checkName(5, 5))
    assert.equal("must be a string", rooms.checkName({}, 5))
    assert.equal("must be at most 5 bytes", rooms.checkName("lobby!", 5))
    assert.equal("must be valid UTF-8", rooms.checkName("\xff", 5))
  end)
end)

describe("rooms.sayText", function()
  it("writes event, room, from and message in that order", function()
    assert.equal('{"event":"say","room":"lobby","from":"c1","message":{"a":1}}',
      rooms.sayText(json, "lobby", "c1", { a = 1 }))
    assert.equal('{"event":"say","room":"a\\"b","from":null,"message":null}',
      rooms.sayText(json, 'a"b', nil, json.null))
  end)

  it("says why a message cannot be encoded", function()
    local text, why = rooms.sayText(json, "r", "c", { f = function() end })
    assert.is_nil(text)
    assert.is_string(why)
  end)
end)

describe("rooms.runHooks", function()
  local function mw(name, hooks)
    hooks.name = name
    return hooks
  end

  it("passes when hooks return nothing, true or nil alone", function()
    local list = { mw("a", { join = function() end }), mw("b", { join = function() return true end }),
      mw("c", { join = function() return nil end }) }
    assert.is_true((rooms.runHooks(list, "join", {}, "r")))
  end)

  it("refuses with false or nil plus a message, 403", function()
    local ok, message, status = rooms.runHooks({ mw("a", { join = function() return false end }) }, "join", {}, "r")
    assert.is_false(ok)
    assert.equal('refused by room middleware "a"', message)
    assert.equal(403, status)
    ok, message, status = rooms.runHooks({ mw("a", { join = function() return nil, "no" end }) }, "join", {}, "r")
    assert.same({ false, "no", 403 }, { ok, message, status })
  end)

  it("refuses with a raised table's message and status; another raise is a 500", function()
    local ok, message, status = rooms.runHooks({ mw("a", {
      leave = function() error({ message = "stay", status = 409 }) end }) }, "leave", {}, "r")
    assert.same({ false, "stay", 409 }, { ok, message, status })
    ok, message, status = rooms.runHooks({ mw("a", { leave = function() error("bug") end }) }, "leave", {}, "r")
    assert.same({ false, "The server experienced an internal error", 500 }, { ok, message, status })
  end)

  it("lets say hooks rewrite the message in order, and stops at a refusal", function()
    local seen
    local list = {
      mw("a", { say = function(_, _, m) return m .. "!" end }),
      mw("b", { say = function() end }),
      mw("c", { say = function(_, _, m) seen = m; return { wrapped = m } end }),
    }
    local ok, message = rooms.runHooks(list, "say", {}, "r", "hi")
    assert.is_true(ok)
    assert.equal("hi!", seen)
    assert.same({ wrapped = "hi!" }, message)
    list[2] = mw("b", { say = function() return nil, "quiet" end })
    local refused, why = rooms.runHooks(list, "say", {}, "r", "hi")
    assert.is_false(refused)
    assert.equal("quiet", why)
  end)
end)

describe("the local fan-out", function()
  -- A cluster of one worker that delivers at once, and a Redis that says yes.
  local function setup()
    local handlers = {}
    local published = {}
    local cluster = {
      id = "w1",
      publish = function(topic, payload)
        published[#published + 1] = payload
        handlers[topic](json.decode(json.encode(payload)), "w1")
        return true
      end,
      on = function(topic, fn) handlers[topic] = fn end,
      onWorkerGone = function() end,
    }
    local api = {
      json = json, cluster = cluster, connections = { connections = {} },
      redis = { call = function(cmd) if cmd == "HEXISTS" then return 1 end return 1 end },
    }
    local svc = rooms.new(api, { redis = { prefix = "t:" }, rooms = { maxRoomsPerConnection = 2 } })
    local rt = { api = api, reg = { connectionMiddlewareList = {} } }
    local function member(id)
      local got = {}
      local c = connections.open(rt, { id = id, type = "websocket" }, function(text)
        got[#got + 1] = text
        return true
      end)
      return c, got
    end
    return svc, member, published
  end

  it("delivers one broadcast once to each local member and to nobody else", function()
    local svc, member, published = setup()
    local a, gotA = member("a")
    local b, gotB = member("b")
    local _, gotC = member("c")
    assert.equal(200, svc.join(a, "lobby", true))
    assert.equal(200, svc.join(b, "lobby", true))
    assert.equal(200, svc.join(b, "lobby", true)) -- again: still once
    assert.equal(200, svc.say(a, "lobby", "hi"))
    assert.equal(1, #published)
    local text = '{"event":"say","room":"lobby","from":"a","message":"hi"}'
    assert.same({ text }, gotA)
    assert.same({ text }, gotB)
    assert.same({}, gotC)
    assert.same({ "lobby" }, b.rooms)
  end)

  it("refuses a say from a non-member, and caps rooms per connection", function()
    local svc, member = setup()
    local a = member("a")
    local status, message = svc.say(a, "lobby", "hi")
    assert.equal(403, status)
    assert.equal('you are not a member of room "lobby"', message)
    assert.equal(200, svc.join(a, "r1", true))
    assert.equal(200, svc.join(a, "r2", true))
    status, message = svc.join(a, "r3", true)
    assert.equal(429, status)
    assert.equal("too many rooms (rooms.maxRoomsPerConnection is 2)", message)
  end)

  it("stops delivering to a connection that left or closed", function()
    local svc, member = setup()
    local a, gotA = member("a")
    local b, gotB = member("b")
    svc.join(a, "lobby", true)
    svc.join(b, "lobby", true)
    assert.equal(200, svc.leave(b, "lobby"))
    assert.same({}, b.rooms)
    svc.closed(a)
    svc.api.broadcast(nil, "lobby", 1)
    assert.same({}, gotA)
    assert.same({}, gotB)
  end)

  it("tells local members of a destroyed room and forgets them", function()
    local svc, member = setup()
    local a, gotA = member("a")
    svc.join(a, "lobby", true)
    assert.is_true(svc.api.destroy("lobby"))
    assert.same({ '{"event":"roomDestroyed","room":"lobby"}' }, gotA)
    assert.same({}, a.rooms)
    assert.same({}, svc.api.roomsOf(a))
  end)
end)

describe("loader: room middleware", function()
  local function load(files)
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. "/mw " .. dir .. "/actions")
    for name, text in pairs(files) do
      local f = assert(io.open(dir .. "/mw/" .. name, "w"))
      f:write(text)
      f:close()
    end
    local config = { paths = { middleware = { dir .. "/mw" }, actions = { dir .. "/actions" } },
      general = { defaultMiddlewarePriority = 100 } }
    local api = { permissions = require("gateway.pipeline.permissions").new() }
    local ok, reg = pcall(loader.load, config, api)
    os.execute("rm -rf " .. dir)
    return ok, reg
  end

  it("lists join/leave/say middleware by priority, apart from the others", function()
    local ok, reg = load({ ["a.lua"] = [[return {
      { name = "late", priority = 50, say = function() end },
      { name = "early", priority = 5, join = function() end },
      { name = "conn", create = function() end },
    }]] })
    assert.is_true(ok, reg)
    assert.equal("early", reg.roomMiddlewareList[1].name)
    assert.equal("late", reg.roomMiddlewareList[2].name)
    assert.is_nil(reg.middleware.early)
    assert.is_not_nil(reg.connectionMiddleware.conn)
  end)

  it("refuses a hook that is not a function, or room hooks mixed with others", function()
    local ok, err = load({ ["b.lua"] = [[return { name = "x", join = 5 }]] })
    assert.is_false(ok)
    assert.matches("middleware x: 'join' must be a function", err, 1, true)
    ok, err = load({ ["c.lua"] = [[return { name = "y", join = function() end, preProcessor = function() end }]] })
    assert.is_false(ok)
    assert.matches("room hooks (join, leave, say) go in a middleware of their own", err, 1, true)
  end)
end)
