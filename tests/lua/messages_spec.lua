-- Specs for lua/gateway/transport/messages.lua (the envelope protocol of SPEC §5/§8) and the
-- verbs of lua/gateway/transport/socket.lua: parsing a message, rendering an envelope with its
-- keys in SPEC order, and the TCP verbs' answers, on the runtime state the gateway builds
-- from its default config (the example actions loaded).

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local messages = require("gateway.transport.messages")
local socket = require("gateway.transport.socket")

local st = state.new()
local rt = st.rt
local json = rt.json

-- Keys of a JSON object text in the order they appear (top level only, flat values).
local function keysInOrder(text)
  local keys = {}
  for key in text:gmatch('[{,]"([%w_]+)":') do keys[#keys + 1] = key end
  return keys
end

local function connection()
  return st.connection("socket")
end

describe("messages.envelope", function()
  it("puts the keys in SPEC order with errors [] on success", function()
    local text = messages.envelope(rt, { action = "a", route = "", idKey = "request_id", id = 7 }, 200,
      nil, { x = 1 })
    assert.same({ "errors", "data", "x", "action", "route", "status", "request_id" }, keysInOrder(text))
    assert.truthy(text:find('^{"errors":%[%],"data":{"x":1}'))
    assert.same({ errors = {}, data = { x = 1 }, action = "a", route = "", status = 200, request_id = 7 },
      json.decode(text))
  end)

  it("sends data null and the errors on failure", function()
    local text = messages.envelope(rt, { action = "a" }, 404, { "nope" }, { ignored = true })
    assert.equal('{"errors":["nope"],"data":null,"action":"a","route":"","status":404}', text)
  end)

  it("echoes messageId under its own name", function()
    local text = messages.envelope(rt, { action = "a", idKey = "messageId", id = "m-1" }, 200, nil, {})
    assert.truthy(text:find(',"messageId":"m%-1"}$'))
    assert.falsy(text:find("request_id"))
  end)

  it("answers 500 when the data cannot be encoded", function()
    local text = messages.envelope(rt, { action = "a" }, 200, nil, { f = function() end })
    assert.equal(500, json.decode(text).status)
  end)
end)

describe("messages.parse", function()
  it("takes params from data, params and extra top-level keys, data winning", function()
    local msg = assert(messages.parse(rt,
      '{"action":"a","route":"r/1","request_id":3,"x":1,"y":1,"data":{"y":2}}'))
    assert.equal("a", msg.action)
    assert.equal("r/1", msg.route)
    assert.same({ x = 1, y = 2 }, msg.params)
    assert.same({ action = "a", route = "r/1", idKey = "request_id", id = 3 }, msg.reply)
    assert.same({ z = 1 }, assert(messages.parse(rt, '{"action":"a","params":{"z":1}}')).params)
  end)

  local bad = {
    { "not json", "invalid JSON" },
    { "[1, 2]", "invalid JSON" },
    { '"text"', "invalid JSON" },
    { "42", "invalid JSON" },
    { '{"action":"a\xff"}', "invalid JSON" },
    { "{}", "action is required" },
    { '{"action": 5}', "action is required" },
    { '{"action": ""}', "action is required" },
    { '{"action":"a","data":"x"}', "data must be a JSON object" },
    { '{"action":"a","data":[1]}', "data must be a JSON object" },
    { '{"action":"a","data":{"n":1e999}}', "invalid JSON" },
    { '{"action":"a","data":{"n":-1E400}}', "invalid JSON" },
    { '{"action":"a","n":[' .. string.rep("9", 309) .. ']}', "invalid JSON" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1] .. " with '" .. case[2] .. "'", function()
      local msg, err = messages.parse(rt, case[1])
      assert.is_nil(msg)
      assert.equal(case[2], err)
    end)
  end

  it("accepts numbers a double holds, and exponents or digits inside strings", function()
    local msg = assert(messages.parse(rt, '{"action":"a","x":1e308,"y":"1e999","z":"'
      .. string.rep("9", 400) .. '","w":' .. string.rep("9", 308) .. '}'))
    assert.equal(1e308, msg.params.x)
    assert.equal("1e999", msg.params.y)
    assert.equal(400, #msg.params.z)
  end)

  it("keeps the request id of a message it rejects", function()
    local _, _, reply = messages.parse(rt, '{"request_id":"q","route":"x"}')
    assert.same({ idKey = "request_id", id = "q", route = "x" }, reply)
  end)
end)

describe("messages.complete", function()
  it("maps input failures to one object of lists", function()
    local ctx = { transport = "websocket", reply = { action = "a" } }
    local data = { connection = connection(), action = "a", params = {}, status = 422, duration = 0,
      error = { message = "m", status = 422, inputs = {
        { key = "email", message = "email is a required parameter for this action", required = true },
        { key = "n", message = "must be > 0" }, { key = "n", message = "too small" } } } }
    local out = json.decode(messages.complete(rt, ctx, data))
    assert.same({ { email = { "This field is required." }, n = { "must be > 0", "too small" } } }, out.errors)
    assert.equal(422, out.status)
  end)

  it("sends nothing when the action turned rendering off", function()
    local data = { connection = connection(), action = "a", params = {}, status = 200, toRender = false }
    assert.is_nil(messages.complete(rt, { transport = "socket", reply = {} }, data))
  end)
end)

describe("socket verbs", function()
  local function verb(c, line)
    local text, close = socket.handle(rt, { connection = c, text = line })
    return json.decode(text), close, text
  end

  it("keeps sticky params across lines", function()
    local c = connection()
    local out, _, text = verb(c, "paramAdd multiplier=10")
    assert.equal('{"status":"OK","data":null,"context":"response"}', text)
    assert.equal("OK", out.status)
    verb(c, "paramAdd name=a=b")
    assert.same({ multiplier = "10", name = "a=b" }, c.params)
    assert.equal("10", verb(c, "paramView multiplier").data)
    assert.same({ multiplier = "10", name = "a=b" }, verb(c, "paramsView").data)
    verb(c, "paramDelete name")
    assert.same({ multiplier = "10" }, c.params)
    verb(c, "paramsDelete")
    assert.same({}, c.params)
    assert.equal(6, c.messageCount)
  end)

  it("explains a verb used wrongly", function()
    local c = connection()
    local out = verb(c, "paramAdd novalue")
    assert.equal("error", out.status)
    assert.equal("paramAdd needs key=value", out.error)
    assert.equal("paramView needs a key", verb(c, "paramView").error)
  end)

  it("describes the connection and the documentation", function()
    local c = connection()
    local details = verb(c, "detailsView").data
    assert.same({ id = c.id, type = "socket", remoteIP = "127.0.0.1", remotePort = 40000,
      connectedAt = c.connectedAt, params = {}, pendingActions = 0, totalActions = 0,
      messageCount = 1 }, details)
    local doc = verb(c, "documentation").data
    assert.same(rt.api.documentation.documentation, doc)
    assert.equal("I echo an amount of money in cents", doc.moneyInCents["1"].description)
    assert.same({ "1", "2" }, (function()
      local vs = {}
      for v in pairs(doc.greeting) do vs[#vs + 1] = v end
      table.sort(vs)
      return vs
    end)())
  end)

  it("caps sticky params in count and bytes, refusing the one over", function()
    local limits = rt.config.servers.socket
    local saved = { limits.maxParams, limits.maxParamBytes }
    limits.maxParams, limits.maxParamBytes = 3, 20
    local c = connection()
    for i = 1, 3 do assert.equal("OK", verb(c, "paramAdd k" .. i .. "=v").status) end
    local out = verb(c, "paramAdd k4=v")
    assert.equal("error", out.status)
    assert.equal("too many sticky params (maxParams is 3)", out.error)
    assert.is_nil(c.params.k4)
    -- Replacing a key adds none; its old value no longer counts.
    assert.equal("OK", verb(c, "paramAdd k1=" .. ("x"):rep(10)).status)
    out = verb(c, "paramAdd k2=" .. ("y"):rep(4))
    assert.equal("sticky params too large (maxParamBytes is 20)", out.error)
    assert.equal("v", c.params.k2)
    verb(c, "paramsDelete")
    assert.equal("OK", verb(c, "paramAdd k4=v").status)
    limits.maxParams, limits.maxParamBytes = saved[1], saved[2]
  end)

  it("splits a verb line as the old pattern did, in linear time", function()
    local old = function(text) return text:match("^%s*(%S+)%s*(.-)%s*$") end
    local cases = { "paramAdd a=b", "  paramAdd   a = b  ", "word", " word ", "w\t x\ty \r",
      "", "   ", "a b", "a  b  c  ", "\ta", "x\v\fy" }
    for _, text in ipairs(cases) do
      local w1, a1 = old(text)
      local w2, a2 = socket.splitWord(text)
      assert.equal(w1, w2, text)
      assert.equal(a1, a2, text)
    end
    -- Random lines of words and runs of white space.
    local pieces = { "a", "bc", "=", " ", "  ", "\t", "\r", "x=y" }
    math.randomseed(14)
    for _ = 1, 2000 do
      local parts = {}
      for i = 1, math.random(0, 8) do parts[i] = pieces[math.random(#pieces)] end
      local text = table.concat(parts)
      local w1, a1 = old(text)
      local w2, a2 = socket.splitWord(text)
      assert.equal(w1, w2, text)
      assert.equal(a1, a2, text)
    end
    local word, arg = socket.splitWord("x y" .. (" "):rep(60000) .. "z ")
    assert.equal("x", word)
    assert.equal("y" .. (" "):rep(60000) .. "z", arg)
  end)

  it("says goodbye and asks to close on quit and exit", function()
    for _, word in ipairs({ "quit", "exit" }) do
      local out, close = verb(connection(), word)
      assert.equal("Bye!", out.data)
      assert.is_true(close)
    end
  end)
end)

describe("messages on a connection, as the transports hand them over", function()
  local function decoded(text) return json.decode(text) end

  it("answers a binary frame with 400 and keeps the connection", function()
    local c = connection()
    local text, close = st.message(c, '{"action":"randomNumber"}', true)
    assert.same({ errors = { "binary frames are not supported" }, data = json.null, action = "",
      route = "", status = 400 }, decoded(text))
    assert.is_nil(close)
    assert.equal(1, c.messageCount)
    assert.equal(200, decoded(st.message(c, '{"action":"randomNumber"}')).status)
  end)

  it("answers what the transport refused (a line over maxLineLength) with its status", function()
    local c = connection()
    local text = st.runtime.handle("socket", { connection = c,
      reject = { status = 413, message = "line is longer than maxLineLength" } })
    assert.equal('{"errors":["line is longer than maxLineLength"],"data":null,"action":"","route":"","status":413}',
      text)
    assert.equal(1, c.messageCount)
    assert.equal(0, c.pendingActions)
  end)

  it("asks to close after a refusal that ends the connection (a line past lineTimeout)", function()
    local c = connection()
    local text, close = st.runtime.handle("socket", { connection = c,
      reject = { status = 408, message = "line not completed within lineTimeout", close = true } })
    assert.equal(408, decoded(text).status)
    assert.is_true(close)
  end)

  it("answers an error, not the response, when a completed action's answer fails", function()
    -- What gw_call does when rendering raised after the action completed (out of
    -- memory, say): runtime.fail with 500 on the ctx of the request.
    local c = connection()
    local ctx = { connection = c, text = '{"action":"moneyInCents","data":{"moneyInCents":4},"request_id":9}' }
    assert.equal(200, decoded(st.runtime.handle("socket", ctx)).status)
    local text = st.runtime.fail("socket", ctx, 500, "The server experienced an internal error")
    assert.same({ errors = { "The server experienced an internal error" }, data = json.null,
      action = "moneyInCents", route = "", status = 500, request_id = 9 }, decoded(text))
    assert.equal(0, c.pendingActions)
    assert.equal(1, c.totalActions)
  end)
end)
