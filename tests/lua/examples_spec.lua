-- Specs for the example actions and middleware users start from (actions/*.lua,
-- middleware/*.lua), loaded by the gateway's own loader from its default config and run
-- through the runtime as the transports run them: messages on a TCP or WebSocket
-- connection, HTTP requests. What needs Redis or the event loop (sessions, api.sleep)
-- is left to the integration tests; here, everything up to it.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local st = state.new()
local json = st.rt.json

-- One message's envelope on a fresh socket connection (or the one given).
local function call(message, connection)
  return (st.call(connection or st.connection("socket"), message))
end

local function errorEnvelope(action, status, errors)
  return { errors = errors, data = json.null, action = action, route = "", status = status }
end

local function okEnvelope(action, data)
  return { errors = {}, data = data, action = action, route = "", status = 200 }
end

describe("the example files", function()
  it("all load, each action from its file", function()
    local names = {}
    for name in pairs(st.rt.reg.versions) do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "greeting", "login", "logout", "moneyInCents", "openapi", "profile", "randomNumber",
      "showDocumentation", "sleepTest", "status", "userAdd", "userDelete" }, names)
    assert.equal(state.ROOT .. "/actions/users.lua", st.rt.reg.actions.userAdd[1]._file)
    assert.equal(state.ROOT .. "/actions/users.lua", st.rt.reg.actions.userDelete[1]._file)
    assert.same({ poweredBy = true }, (function()
      local set = {}
      for name in pairs(st.rt.reg.middleware) do set[name] = true end
      return set
    end)())
  end)
end)

describe("randomNumber", function()
  it("answers a number in [0, 1) by default", function()
    for _ = 1, 20 do
      local n = call({ action = "randomNumber" }).data.randomNumber
      assert.is_true(n >= 0 and n < 1, tostring(n))
    end
  end)

  it("scales by multiplier, given as text over TCP and HTTP", function()
    local c = st.connection("socket")
    st.message(c, "paramAdd multiplier=10")
    local text = st.message(c, "randomNumber")
    local n = json.decode(text).data.randomNumber
    assert.is_true(n >= 0 and n < 10, text)
    local status, _, body = st.web("GET", "/api/randomNumber", { multiplier = "1000" })
    assert.equal(200, status)
    n = json.decode(body).randomNumber
    assert.is_true(n >= 0 and n < 1000, body)
  end)

  it("refuses a negative or non-numeric multiplier", function()
    assert.same(errorEnvelope("randomNumber", 422, { { multiplier = { "must be > 0" } } }),
      call({ action = "randomNumber", data = { multiplier = "-1" } }))
    assert.same(errorEnvelope("randomNumber", 422, { { multiplier = { "must be a number" } } }),
      call({ action = "randomNumber", data = { multiplier = "ten" } }))
  end)
end)

describe("moneyInCents", function()
  local function money(value)
    return call({ action = "moneyInCents", data = { moneyInCents = value } })
  end

  it("echoes 4 and \"4\" as the number 4", function()
    assert.same(okEnvelope("moneyInCents", { moneyInCents = 4 }), money(4))
    assert.same(okEnvelope("moneyInCents", { moneyInCents = 4 }), money("4"))
  end)

  it("answers 422 for \"-4\" and \"hello\", with ActionHero's messages", function()
    assert.same(errorEnvelope("moneyInCents", 422, { { moneyInCents = { "money cannot be negative" } } }),
      money("-4"))
    assert.same(errorEnvelope("moneyInCents", 422, { { moneyInCents = { "not a number" } } }), money("hello"))
  end)

  it("gives \"\", null and an absent value the default 0", function()
    local zero = okEnvelope("moneyInCents", { moneyInCents = 0 })
    assert.same(zero, money(""))
    assert.same(zero, money(json.null))
    assert.same(zero, call({ action = "moneyInCents" }))
  end)

  it("answers the same over HTTP, with the error and every message", function()
    local status, _, body = st.web("POST", "/api/moneyInCents", {},
      { ["content-type"] = "application/json" }, '{"moneyInCents":"-4"}')
    assert.equal(422, status)
    local out = json.decode(body)
    assert.equal("money cannot be negative", out.error)
    assert.same({ "money cannot be negative" }, out.errors)
    status, _, body = st.web("GET", "/api/moneyInCents", { moneyInCents = "400" })
    assert.equal(200, status)
    assert.equal(400, json.decode(body).moneyInCents)
  end)
end)

describe("greeting", function()
  it("has versions 1 and 2, the highest by default", function()
    assert.same({ 1, 2 }, st.api.actions.versions.greeting)
    assert.same({ errors = {}, data = { greeting = "Hello, world!", version = 2 }, action = "greeting",
      route = "", status = 200 }, call({ action = "greeting" }))
  end)

  it("runs the version asked for, with the default name or the one given", function()
    assert.same(okEnvelope("greeting", { greeting = "hello world" }),
      call({ action = "greeting", data = { apiVersion = 1 } }))
    assert.same(okEnvelope("greeting", { greeting = "Hello, Ann!", version = 2 }),
      call({ action = "greeting", data = { name = "Ann" } }))
  end)

  it("refuses an unknown version", function()
    assert.same(errorEnvelope("greeting", 404, { "unknown action or invalid apiVersion" }),
      call({ action = "greeting", data = { apiVersion = 3 } }))
  end)
end)

describe("userAdd and userDelete", function()
  it("share their inputs: email trimmed and lowered, password checked", function()
    local good = { email = "  Jane@Example.COM ", password = "secret123" }
    assert.same(okEnvelope("userAdd", { user = { email = "jane@example.com" } }),
      call({ action = "userAdd", data = good }))
    assert.same(okEnvelope("userDelete", { deleted = "jane@example.com" }),
      call({ action = "userDelete", data = good }))
  end)

  it("report every failing input", function()
    assert.same(errorEnvelope("userAdd", 422, { {
      email = { "must be a valid email address" },
      password = { "must be at least 8 characters long" },
    } }), call({ action = "userAdd", data = { email = "jane", password = "short1" } }))
    assert.same(errorEnvelope("userDelete", 422, { { password = { "password must contain a digit" } } }),
      call({ action = "userDelete", data = { email = "jane@example.com", password = "longenough" } }))
    assert.same(errorEnvelope("userAdd", 422, { {
      email = { "This field is required." }, password = { "This field is required." },
    } }), call({ action = "userAdd" }))
  end)
end)

describe("status", function()
  it("reports the gateway's name and the open connections", function()
    local c = st.connection("socket")
    local before = st.api.connections.count()
    local data = call({ action = "status" }, c).data
    assert.equal("ok", data.status)
    assert.equal("gateway", data.name)
    assert.equal(before, data.connections)
    assert.is_true(data.uptime >= 0 and data.uptime == math.floor(data.uptime))
    assert.is_true(data.memoryKB > 0)
    st.runtime.close("socket", c)
    assert.equal(before - 1, st.api.connections.count())
  end)

  it("uses the configured name", function()
    local edge = state.new({ name = "edge" })
    assert.equal("edge", (edge.call(edge.connection("socket"), { action = "status" })).data.name)
    st = state.new() -- back to the defaults for the specs below
    json = st.rt.json
  end)
end)

describe("the session examples", function()
  it("profile needs an authenticated connection", function()
    local c = st.connection("websocket")
    assert.same(errorEnvelope("profile", 401, { "Authentication credentials were not provided." }),
      call({ action = "profile" }, c))
    c.user = { name = "alice" } -- what login or an authenticate message sets
    assert.same(okEnvelope("profile", { user = { name = "alice" } }), call({ action = "profile" }, c))
  end)

  it("login refuses a wrong password and needs both inputs", function()
    assert.same(errorEnvelope("login", 401, { "invalid user or password" }),
      call({ action = "login", data = { user = "alice", password = "guess" } }))
    assert.same(errorEnvelope("login", 422, { { password = { "This field is required." },
      user = { "This field is required." } } }), call({ action = "login" }))
  end)

  it("logout without a session ends nothing", function()
    local c = st.connection("socket")
    assert.same(okEnvelope("logout", { loggedOut = false }), call({ action = "logout" }, c))
    assert.is_nil(c.user)
  end)
end)

describe("sleepTest", function()
  it("takes sleepDuration as an integer, 1000 by default", function()
    local failures, params = st.inputs("sleepTest", {})
    assert.is_nil(failures)
    assert.equal(1000, params.sleepDuration)
    failures, params = st.inputs("sleepTest", { sleepDuration = "25" })
    assert.is_nil(failures)
    assert.equal(25, params.sleepDuration)
    assert.equal("integer", math.type(params.sleepDuration))
    assert.same({ { key = "sleepDuration", message = "must be an integer" } },
      (st.inputs("sleepTest", { sleepDuration = "soon" })))
  end)
end)

describe("the poweredBy middleware", function()
  it("names the gateway in a header of the web answers of actions that succeed", function()
    local status, headers = st.web("GET", "/api/randomNumber")
    assert.equal(200, status)
    assert.equal("gateway", headers["X-Powered-By"])
  end)

  it("is a postProcessor, so an action that fails gets no header (SPEC §3.2)", function()
    local status, headers = st.web("GET", "/api/moneyInCents", { moneyInCents = "hello" })
    assert.equal(422, status)
    assert.is_nil(headers["X-Powered-By"])
  end)
end)
