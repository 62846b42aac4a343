-- Specs for lua/gateway/pipeline/processor.lua's plans and calls: each action's plan (its
-- middleware in running order, its blocked connection types) is made when a registry
-- is published and made again by a reload; callWithNext takes next only from the
-- functions that declare it; the connection a request's coroutine serves is forgotten
-- when the request ends (its coroutine may serve a timer or another request next).

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")
local processor = require("gateway.pipeline.processor")

local made = {}
local function tmpdir()
  local p = assert(io.popen("mktemp -d"))
  local dir = p:read("l")
  p:close()
  made[#made + 1] = dir
  return dir
end

local function writeFile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A project of its own: the action `probe` (its own middleware `own`, blocked for the
-- web) and whatever middleware files a spec writes.
local function project()
  local dir = tmpdir()
  os.execute("mkdir -p " .. dir .. "/actions " .. dir .. "/mw")
  writeFile(dir .. "/actions/probe.lua", [[
return {
  name = "probe", description = "what ran", middleware = { "own" },
  blockedConnectionTypes = { "web" },
  run = function(api, data) data.response.ran = (data.response.ran or "") .. "run;" end,
}]])
  writeFile(dir .. "/mw/own.lua", [[
return { name = "own", preProcessor = function(data) data.response.ran = (data.response.ran or "") .. "own;" end }]])
  local st = state.new({ paths = { actions = { dir .. "/actions" }, middleware = { dir .. "/mw" } } })
  return st, dir
end

describe("plans", function()
  teardown(function()
    for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
  end)

  it("are made for every action when the registry is published", function()
    local st = project()
    local reg = st.rt.reg
    local plan = reg.plans[reg.actions.probe[1]]
    assert.is_table(plan)
    assert.same({ "own" }, (function()
      local names = {}
      for i, m in ipairs(plan.pre) do names[i] = m.name end
      return names
    end)())
    assert.same({}, plan.post)
    assert.same({ web = true }, plan.blocked)
    assert.is_table(reg.plans[reg.actions.showDocumentation[1]])
  end)

  it("are made again by a reload, with the middleware loaded then", function()
    local st, dir = project()
    local c = st.connection("socket")
    assert.same({ ran = "own;run;" }, st.call(c, { action = "probe" }).data)
    local before = st.rt.reg.plans[st.rt.reg.actions.probe[1]]

    writeFile(dir .. "/mw/first.lua", [[
return { name = "first", global = true, priority = 1,
  preProcessor = function(data) data.response.ran = (data.response.ran or "") .. "first;" end,
  postProcessor = function(data) data.response.ran = data.response.ran .. "post;" end }]])
    st.runtime.reload()
    local after = st.rt.reg.plans[st.rt.reg.actions.probe[1]]
    assert.are_not.equal(before, after)
    assert.equal(2, #after.pre)
    assert.equal(1, #after.post)
    -- The global preProcessor runs first, then the action's own.
    assert.same({ ran = "first;own;run;post;" }, st.call(c, { action = "probe" }).data)
    assert.equal(400, (st.web("GET", "/api/probe")))
  end)

  it("come on first use for an action the registry has none for", function()
    local st = project()
    local reg = st.rt.reg
    local action = reg.actions.probe[1]
    reg.plans[action] = nil
    assert.same({ ran = "own;run;" }, st.call(st.connection("socket"), { action = "probe" }).data)
    assert.is_table(reg.plans[action])
  end)
end)

describe("callWithNext", function()
  it("calls a function that takes no next without one, done when it returns", function()
    local got
    local kind, value = processor.callWithNext(function(a, b, ...)
      got = select("#", ...)
      return { a = a, b = b }
    end, 3, 1, 2)
    -- A vararg function takes next.
    assert.equal(1, got)
    assert.equal("ok", kind)
    assert.same({ a = 1, b = 2 }, value)

    local n
    kind, value = processor.callWithNext(function(data) n = data end, 2, 7)
    assert.equal(7, n)
    assert.equal("ok", kind)
    assert.is_nil(value)
  end)

  it("gives next to a function that declares it, and reads what it was passed", function()
    local kind, err = processor.callWithNext(function(_, _, next) next("no") end, 3, 1, 2)
    assert.equal("error", kind)
    assert.equal("no", err)
    kind, err = processor.callWithNext(function(_, next) return nil, "returned" end, 2, 1)
    assert.equal("error", kind)
    assert.equal("returned", err)
    kind, err = processor.callWithNext(function(_, next) error({ status = 402 }) end, 2, 1)
    assert.equal("raised", kind)
    assert.same({ status = 402 }, err.raised)
  end)
end)

describe("the connection a coroutine serves", function()
  it("is known while the request runs and forgotten when it ends", function()
    local st = state.new()
    local c = st.connection("socket")
    local during
    st.rt.reg.actions.status[1].run = function()
      during = processor.connectionOf(coroutine.running())
    end
    st.call(c, { action = "status" })
    assert.equal(c, during)
    assert.is_nil(processor.connectionOf(coroutine.running()))
  end)
end)

describe("the middleware contract (postProcessors)", function()
  local function withPost(post, run)
    local dir = tmpdir()
    os.execute("mkdir -p " .. dir .. "/actions " .. dir .. "/mw")
    writeFile(dir .. "/actions/a.lua", "return { name = 'a', description = 'a', run = " .. run .. " }")
    writeFile(dir .. "/mw/post.lua", "return { name = 'post', global = true, postProcessor = " .. post .. " }")
    return state.new({ paths = { actions = { dir .. "/actions" }, middleware = { dir .. "/mw" } } })
  end
  local stamp = "function(data) data.response.note = 'x' end"

  it("gives postProcessors an object; a list result is sent as it is", function()
    local st = withPost(stamp, "function(api, data) data.response = { 1, 2 } end")
    local r = st.call(st.connection("socket"), { action = "a" })
    assert.equal(200, r.status)
    assert.same({ 1, 2 }, r.data)
  end)

  it("keeps a string result and a nil result", function()
    local st = withPost(stamp, "function(api, data) data.response = 'text' end")
    assert.equal("text", st.call(st.connection("socket"), { action = "a" }).data)
    st = withPost(stamp, "function(api, data) data.response = nil end")
    local r = st.call(st.connection("socket"), { action = "a" })
    assert.equal(200, r.status)
    assert.is_true(r.data == nil or r.data == st.rt.json.null)
  end)

  it("adds the middleware's fields to an object result", function()
    local st = withPost(stamp, "function(api, data) data.response.a = 1 end")
    assert.same({ a = 1, note = "x" }, st.call(st.connection("socket"), { action = "a" }).data)
  end)

  it("sends the action's answer when a postProcessor raises", function()
    local st = withPost("function(data) error('boom') end", "function(api, data) data.response.a = 1 end")
    local r = st.call(st.connection("socket"), { action = "a" })
    assert.equal(200, r.status)
    assert.same({ a = 1 }, r.data)
    -- A raised table with a status is a deliberate error (as next(err)).
    st = withPost("function(data) error({ status = 409, message = 'no' }) end",
      "function(api, data) data.response.a = 1 end")
    assert.equal(409, st.call(st.connection("socket"), { action = "a" }).status)
  end)
end)

describe("loggableParams", function()
  local rt = { filtered = { password = true, apikey = true } }

  it("filters nested keys, in lists too, whatever their case", function()
    local params = {
      user = { name = "ann", password = "a", Deep = { PassWord = "b" } },
      PASSWORD = "c", ApiKey = "d", list = { { password = "e" }, "plain" }, n = 1,
    }
    assert.same({
      user = { name = "ann", password = "[FILTERED]", Deep = { PassWord = "[FILTERED]" } },
      PASSWORD = "[FILTERED]", ApiKey = "[FILTERED]", list = { { password = "[FILTERED]" }, "plain" }, n = 1,
    }, processor.loggableParams(rt, params))
    -- The request's own params are left as they were.
    assert.equal("a", params.user.password)
  end)

  it("stops at a cycle an action made", function()
    local t = { a = 1 }
    t.self = t
    local out = processor.loggableParams(rt, { t = t })
    local depth, node = 0, out.t
    while type(node) == "table" do
      node, depth = node.self, depth + 1
    end
    assert.equal("[...]", node)
    assert.is_true(depth < 40)
  end)
end)
