-- Specs for the pure-Lua parts of tasks (docs/tasks.md): loading and checking task files
-- (lua/gateway/registry/tasks.lua) and what api.tasks sends to Redis when it enqueues
-- (lua/gateway/services/tasks.lua), on a Redis stub that records the commands. Taking,
-- running and the scheduler need the loop and a real Redis: tests/integration/test_tasks.py.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local registry = require("gateway.registry.tasks")
local service = require("gateway.services.tasks")

local st = state.new()
local api = st.api

-- Loads `files` (path -> table) as if they were in paths.tasks.
local function load(files)
  local paths = {}
  for p in pairs(files) do paths[#paths + 1] = p end
  table.sort(paths)
  local config = { paths = { tasks = { "dir" } }, general = { defaultMiddlewarePriority = 100 } }
  return registry.load(config, api, nil,
    function() return paths end,
    function(p) return files[p] end)
end

local function loadError(files)
  local ok, err = pcall(load, files)
  assert.is_false(ok)
  return err
end

local function noop() end

describe("task files", function()
  it("get the documented defaults", function()
    local r = load({ ["t.lua"] = { name = "a", description = "d", run = noop } })
    local t = r.tasks.a
    assert.equal("default", t.queue)
    assert.equal(0, t.frequency)
    assert.equal(0, t.retries)
    assert.same({ 1000, 5000, 30000 }, t.backoff)
    assert.same({}, t.middleware)
    assert.equal("t.lua", t._file)
  end)

  it("may hold several tasks and task middleware in one file", function()
    local r = load({ ["t.lua"] = {
      a = { name = "a", description = "d", run = noop, middleware = { "m" } },
      m = { name = "m", preEnqueue = noop },
    } })
    assert.is_table(r.tasks.a)
    assert.is_table(r.middleware.m)
    assert.equal(r.middleware.m, r.plans.a[1])
  end)

  it("order middleware global first-by-priority with the task's own", function()
    local r = load({ ["t.lua"] = {
      a = { name = "a", description = "d", run = noop, middleware = { "late", "early" } },
      early = { name = "early", priority = 10, preProcessor = noop },
      late = { name = "late", priority = 200, preProcessor = noop },
      g = { name = "g", global = true, priority = 50, preEnqueue = noop },
    } })
    local names = {}
    for i, m in ipairs(r.plans.a) do names[i] = m.name end
    assert.same({ "early", "g", "late" }, names)
  end)

  it("refuse what a broken definition gets wrong, naming the file", function()
    local cases = {
      { { name = "a", description = "d" }, "t.lua: task a has no run function" },
      { { name = "a", run = noop }, "t.lua: task a is missing 'description'" },
      { { name = "a", description = "d", run = noop, queue = "*" }, "'queue' must be" },
      { { name = "a", description = "d", run = noop, frequency = -5 }, "'frequency' must be 0 or more" },
      { { name = "a", description = "d", run = noop, frequency = 1.5 }, "'frequency' must be a whole number" },
      { { name = "a", description = "d", run = noop, retries = 1.5 }, "'retries' must be a whole number" },
      { { name = "a", description = "d", run = noop, backoff = {} }, "'backoff' must be" },
      { { name = "a", description = "d", run = noop, backoff = { "x" } }, "'backoff' must hold numbers" },
      { { name = "a", description = "d", run = noop, middleware = { "x" } }, 'unknown task middleware "x"' },
      { { name = "a", description = "d", run = noop, inputs = { k = { validator = "nosuch" } } }, 'task a input "k"' },
    }
    for _, c in ipairs(cases) do
      local err = loadError({ ["t.lua"] = c[1] })
      assert.truthy(err:find("t.lua: ", 1, true) == 1, err)
      assert.truthy(err:find(c[2], 1, true), err .. " (expected: " .. c[2] .. ")")
    end
    assert.truthy(loadError({ ["t.lua"] = 42 }):find("a task file must return a table", 1, true))
    assert.truthy(loadError({ ["a.lua"] = { name = "a", description = "d", run = noop },
      ["b.lua"] = { name = "a", description = "d", run = noop } }):find("task a is defined twice (also in a.lua)", 1, true))
  end)

  it("are documented for showDocumentation", function()
    local r = load({ ["t.lua"] = { name = "a", description = "d", run = noop, frequency = 60000,
      inputs = { k = { required = true, default = 3 } } } })
    assert.same({ a = { name = "a", description = "d", queue = "default", frequency = 60000, retries = 0,
      inputs = { k = { required = true, default = 3 } } } }, registry.document(r))
  end)
end)

describe("backoff", function()
  it("takes the n-th delay, then repeats the last", function()
    local t = { backoff = { 10, 20 } }
    assert.equal(10, service.backoffFor(t, 1))
    assert.equal(20, service.backoffFor(t, 2))
    assert.equal(20, service.backoffFor(t, 7))
  end)
end)

describe("params matching (del, delDelayed, scheduledAt)", function()
  it("compares decoded values deeply", function()
    assert.is_true(service.same({ a = 1, b = { 2, 3 } }, { b = { 2, 3 }, a = 1.0 }))
    assert.is_false(service.same({ a = 1 }, { a = 1, b = 2 }))
    assert.is_false(service.same({ a = "1" }, { a = 1 }))
  end)
end)

describe("api.tasks.enqueue", function()
  -- A tasks service on a Redis stub that records each command.
  local function make(files)
    local calls = {}
    local fake = {
      json = api.json, now = function() return 1234567 end, sleep = noop,
      redis = { call = function(...)
        local c = { ... }
        calls[#calls + 1] = c
        if c[1] == "SCRIPT" then return "sha" end
        return 1
      end },
    }
    local t = service.new(fake, { redis = { prefix = "p:" }, tasks = {} })
    t.setRegistry(load(files), st.rt.inputOpts)
    return t, calls
  end

  local files = { ["t.lua"] = {
    a = { name = "a", description = "d", run = noop, queue = "q1", middleware = { "guard" },
      inputs = { n = { required = true, formatter = "toNumber" }, d = { default = "x" } } },
    guard = { name = "guard", preEnqueue = function(job)
      if job.params.n == 13 then return false, "unlucky" end
    end },
  } }

  it("pushes the job's JSON to its queue in one script", function()
    local t, calls = make(files)
    local id = t.enqueue("a", { n = "5" })
    assert.equal(32, #id)
    local eval = calls[1]
    assert.equal("EVAL", eval[1])
    assert.same({ 2, "p:tasks:queue:q1", "p:tasks:queues", "q1" }, { eval[3], eval[4], eval[5], eval[6] })
    local job = api.json.decode(eval[7])
    assert.equal(id, job.id)
    assert.equal("a", job.task)
    assert.equal("q1", job.queue)
    assert.equal(1234567, job.enqueuedAt)
    assert.equal(0, job.attempts)
    assert.same({ n = 5, d = "x" }, job.params) -- defaults and formatters applied
  end)

  it("takes another queue when given one", function()
    local t, calls = make(files)
    t.enqueue("a", { n = 1 }, "other")
    assert.equal("p:tasks:queue:other", calls[1][4])
  end)

  it("raises a 422 for a failing input, before Redis", function()
    local t, calls = make(files)
    local ok, err = pcall(t.enqueue, "a", {})
    assert.is_false(ok)
    assert.equal(422, err.status)
    assert.equal("n is a required parameter for this action", err.message)
    assert.equal(0, #calls)
  end)

  it("returns false and the reason when preEnqueue refuses", function()
    local t, calls = make(files)
    local r, why = t.enqueue("a", { n = 13 })
    assert.is_false(r)
    assert.equal("unlucky", why)
    assert.equal(0, #calls)
  end)

  it("raises for an unknown task and a bad queue", function()
    local t = make(files)
    assert.has_error(function() t.enqueue("nope", {}) end, 'api.tasks.enqueue: unknown task "nope"')
    assert.has_error(function() t.enqueue("a", { n = 1 }, "*") end)
  end)

  it("puts delayed jobs in the delayed zset at their due time", function()
    local t, calls = make(files)
    t.enqueueIn(500, "a", { n = 1 })
    assert.same({ "ZADD", "p:tasks:delayed", 1234567 + 500 }, { calls[1][1], calls[1][2], calls[1][3] })
    t.enqueueAt(99999999, "a", { n = 1 })
    assert.equal(99999999, calls[2][3])
  end)
end)

describe("api.tasks.enqueue and the caller's params", function()
  it("leaves the caller's table as it was", function()
    local fake = { json = api.json, now = function() return 1 end, sleep = noop,
      redis = { call = function(c) if c == "SCRIPT" then return "sha" end return 1 end } }
    local t = service.new(fake, { redis = { prefix = "p:" }, tasks = {} })
    t.setRegistry(load({ ["t.lua"] = { name = "a", description = "d", run = noop,
      inputs = { n = { formatter = "toNumber" }, d = { default = "x" } } } }), st.rt.inputOpts)
    local params = { n = "5" }
    t.enqueue("a", params)
    assert.same({ n = "5" }, params)
  end)
end)
