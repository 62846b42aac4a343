-- Specs for lua/gateway/pipeline/inputs.lua, the inputs pipeline of SPEC §3.3:
-- compile-time name resolution and the per-request default -> formatter -> validator ->
-- required steps, failures and their messages. The `api` and the options (missing
-- checks, JSON null) are the ones the gateway builds from its default config, and the
-- example action actions/moneyInCents.lua is the one the loader loads.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local inputs = require("gateway.pipeline.inputs")
local validators = require("gateway.pipeline.validators")
local formatters = require("gateway.pipeline.formatters")

local st = state.new()
local api = st.api
local NULL = st.rt.json.null
local OPTS = st.rt.inputOpts

describe("the state the specs run on", function()
  it("has the default missing checks, the JSON null and the built-in tables", function()
    assert.same({ ["nil"] = true, ["null"] = true, [""] = true }, OPTS.missing)
    assert.equal(api.json.null, OPTS.null)
    assert.equal(validators, api.validators)
    assert.equal(formatters, api.formatters)
  end)
end)

-- Builds and compiles an action with these inputs.
local function action(inputTable, name)
  local a = { name = name or "test", inputs = inputTable }
  inputs.compile(a, api)
  return a
end

-- Compiles and processes in one go; returns failures and the (mutated) params.
local function run(inputTable, params, opts)
  params = params or {}
  return inputs.process(action(inputTable), params, {}, opts or OPTS), params
end

local function compileError(inputTable)
  local ok, err = pcall(inputs.compile, { name = "demo", inputs = inputTable }, api)
  assert.is_false(ok, "expected compile to fail")
  return err
end

describe("inputs.compile", function()
  it("sorts the input keys and normalises steps to lists", function()
    local f = function(v) return v end
    local a = action({ b = { formatter = f }, a = { validator = "email" }, c = {} })
    assert.are.same({ "a", "b", "c" }, a._inputKeys)
    assert.are.same({ f }, a.inputs.b._formatters)
    assert.are.same({}, a.inputs.b._validators)
    assert.are.equal(validators.email, a.inputs.a._validators[1])
    assert.are.same({}, a.inputs.c._formatters)
  end)

  it("gives an action without inputs an empty key list", function()
    local a = { name = "none" }
    inputs.compile(a, api)
    assert.are.same({}, a._inputKeys)
    assert.is_nil(inputs.process(a, {}, {}, OPTS))
  end)

  it("accepts the three name forms for validators and formatters", function()
    for _, form in ipairs({ "api.%s.%s", "%s.%s", "%s" }) do
      local function name(kind, entry)
        return form:find("%%s%.%%s") and form:format(kind, entry) or form:format(entry)
      end
      local a = action({ x = { formatter = name("formatters", "trim"),
                               validator = name("validators", "uuid") } })
      assert.are.equal(formatters.trim, a.inputs.x._formatters[1], form)
      assert.are.equal(validators.uuid, a.inputs.x._validators[1], form)
    end
  end)

  it("resolves lists of names and functions in order", function()
    local f = function(v) return v end
    local min = validators.minLength(2)
    local a = action({ x = { formatter = { "api.formatters.trim", f, "lower" },
                             validator = { min, "validators.email" } } })
    assert.are.same({ formatters.trim, f, formatters.lower }, a.inputs.x._formatters)
    assert.are.same({ min, validators.email }, a.inputs.x._validators)
  end)

  it("looks names up in the api tables it is given", function()
    local custom = function() return "custom" end
    local myApi = { validators = setmetatable({ even = custom }, { __index = validators }),
                    formatters = formatters }
    local a = { name = "own", inputs = { x = { validator = "api.validators.even" } } }
    inputs.compile(a, myApi)
    assert.are.equal(custom, a.inputs.x._validators[1])
  end)

  it("is idempotent", function()
    local a = action({ y = { validator = "email" }, x = { formatter = { "trim", "lower" } } })
    inputs.compile(a, api)
    assert.are.same({ "x", "y" }, a._inputKeys)
    assert.are.same({ formatters.trim, formatters.lower }, a.inputs.x._formatters)
    assert.are.same({ validators.email }, a.inputs.y._validators)
  end)

  it("rejects unknown names", function()
    assert.are.equal('Action demo input "email": unknown validator "api.validators.emial"',
      compileError({ email = { validator = "api.validators.emial" } }))
    assert.are.equal('Action demo input "x": unknown formatter "shout"',
      compileError({ x = { formatter = { "trim", "shout" } } }))
    assert.are.equal('Action demo input "x": unknown validator "api.formatters.trim"',
      compileError({ x = { validator = "api.formatters.trim" } }))
    assert.are.equal('Action demo input "x": unknown validator "_factories"',
      compileError({ x = { validator = "_factories" } }))
  end)

  it("rejects factories used without arguments", function()
    local err = compileError({ name = { validator = "api.validators.minLength" } })
    assert.matches('^Action demo input "name": validator "api.validators.minLength" is a factory',
      err)
    assert.matches("is a factory", compileError({ name = { validator = { "email", "regex" } } }))
    assert.matches("api.validators.maxLength is a factory",
      compileError({ name = { validator = validators.maxLength } }))
  end)

  it("rejects values of the wrong type", function()
    assert.matches('^Action demo input "x": validator must be a function or the name of one, got number',
      compileError({ x = { validator = 42 } }))
    assert.matches('^Action demo input "x": formatter must be a function or the name of one, got boolean',
      compileError({ x = { formatter = { "trim", true } } }))
    assert.matches('^Action demo input "x": formatter must be a function, a name or a list',
      compileError({ x = { formatter = { trim = "trim" } } }))
    assert.matches('^Action demo input "x": must be a table', compileError({ x = "email" }))
    assert.matches("^Action demo input \"x\": 'required' must be a boolean",
      compileError({ x = { required = "yes" } }))
    assert.matches("^Action demo: input names must be strings", compileError({ "positional" }))
  end)
end)

describe("inputs.process", function()
  describe("missing checks", function()
    it("treats absent, JSON null and empty string as missing by default", function()
      local failures = run({ a = { required = true }, b = { required = true },
                             c = { required = true } }, { b = NULL, c = "" })
      assert.are.same({ "a", "b", "c" }, { failures[1].key, failures[2].key, failures[3].key })
      assert.are.equal("a is a required parameter for this action", failures[1].message)
      assert.is_true(failures[3].required)
    end)

    it("treats false, 0 and {} as present", function()
      local seen = {}
      local record = function(v, _, _, key) seen[key] = v return true end
      local empty = {}
      local failures = run({ f = { required = true, validator = record },
                             z = { required = true, validator = record },
                             t = { required = true, validator = record } },
                           { f = false, z = 0, t = empty })
      assert.is_nil(failures)
      assert.are.same({ f = false, z = 0, t = empty }, seen)
    end)

    it("counts \"\" as present when the \"\" check is disabled", function()
      local opts = { missing = { ["nil"] = true, ["null"] = true }, null = NULL }
      local seen
      local failures = run({ x = { required = true, default = "d",
                                   validator = function(v) seen = v return true end } },
                           { x = "" }, opts)
      assert.is_nil(failures)
      assert.are.equal("", seen)
      local params = { y = NULL }
      assert.are.equal("y is a required parameter for this action",
        run({ y = { required = true } }, params, opts)[1].message)
    end)

    it("counts JSON null as present when the null check is disabled", function()
      local opts = { missing = { ["nil"] = true, [""] = true }, null = NULL }
      local failures, params = run({ x = { required = true, default = 5 } }, { x = NULL }, opts)
      assert.is_nil(failures)
      assert.are.equal(NULL, params.x)
    end)

    it("counts an absent value as present when the nil check is disabled", function()
      local opts = { missing = { ["null"] = true, [""] = true }, null = NULL }
      local seen = "not called"
      local failures, params = run({ x = { required = true, default = 5,
        validator = function(v) seen = v return true end } }, {}, opts)
      assert.is_nil(failures)
      assert.is_nil(params.x)
      assert.is_nil(seen)
    end)

    it("leaves missing optional null and \"\" values in params", function()
      local failures, params = run({ a = {}, b = { validator = "email" } }, { a = NULL, b = "" })
      assert.is_nil(failures)
      assert.are.equal(NULL, params.a)
      assert.are.equal("", params.b)
    end)
  end)

  describe("default", function()
    it("applies a plain value when missing, not when present", function()
      local _, params = run({ a = { default = 1 }, b = { default = 1 }, c = { default = 1 },
                              d = { default = 1 } }, { b = NULL, c = "", d = 7 })
      assert.are.same({ a = 1, b = 1, c = 1, d = 7 }, params)
    end)

    it("calls a default function with (param, connection, actionTemplate, key)", function()
      local a = action({ when = { default = function(param, connection, template, key)
        return { param = param, connection = connection, template = template, key = key }
      end } })
      local connection = { id = "c1" }
      local params = { when = "" }
      assert.is_nil(inputs.process(a, params, connection, OPTS))
      assert.are.equal("", params.when.param)
      assert.are.equal(connection, params.when.connection)
      assert.are.equal(a, params.when.template)
      assert.are.equal("when", params.when.key)
    end)

    it("copies table defaults so requests do not share them", function()
      local a = action({ list = { default = { 1, 2 } } })
      local first, second = {}, {}
      inputs.process(a, first, {}, OPTS)
      table.insert(first.list, 3)
      inputs.process(a, second, {}, OPTS)
      assert.are.same({ 1, 2 }, second.list)
      assert.are.same({ 1, 2 }, a.inputs.list.default)
    end)

    it("satisfies required, and required still fails when the default gives nothing", function()
      assert.is_nil(run({ x = { required = true, default = 3 } }, {}))
      local failures = run({ x = { required = true, default = function() return "" end } }, {})
      assert.are.same({ { key = "x", message = "x is a required parameter for this action",
                          required = true } }, failures)
    end)

    it("is formatted and validated like a given value", function()
      local failures, params = run({ n = { default = "-3", formatter = "toInteger",
        validator = function(v) return v > 0 or "must be > 0" end } }, {})
      assert.are.equal(-3, params.n)
      assert.are.equal("must be > 0", failures[1].message)
    end)

    it("lets an error raised by a default function propagate", function()
      assert.has_error(function()
        run({ x = { default = function() error("boom") end } }, {})
      end)
    end)
  end)

  describe("formatters", function()
    it("apply a list in order, each result replacing the value", function()
      local _, params = run({ email = { formatter = { "trim", "api.formatters.lower",
        function(v) return v .. "!" end } } }, { email = "  Evan@Example.COM " })
      assert.are.equal("evan@example.com!", params.email)
    end)

    it("receive (param, connection, actionTemplate, key)", function()
      local got
      local a = action({ k = { formatter = function(...) got = { ... } return 1 end } })
      local connection = {}
      inputs.process(a, { k = "v" }, connection, OPTS)
      assert.are.same({ "v", connection, a, "k" }, got)
      assert.are.equal(connection, got[2])
    end)

    it("do not run on missing values", function()
      local called = false
      local _, params = run({ x = { formatter = function() called = true return "set" end } },
                            { x = "" })
      assert.is_false(called)
      assert.are.equal("", params.x)
    end)

    it("can make a value missing, which skips validators and triggers required", function()
      local failures = run({ name = { required = true, formatter = "trim", validator = "email" } },
                           { name = "   " })
      assert.are.same({ { key = "name", message = "name is a required parameter for this action",
                          required = true } }, failures)
    end)

    it("let a raised error propagate", function()
      assert.has_error(function()
        run({ x = { formatter = function(v) return v + 1 end } }, { x = "abc" })
      end)
    end)
  end)

  describe("validators", function()
    local function failureOf(validator, value)
      local failures = run({ x = { validator = validator } }, { x = value or "v" })
      return failures and failures[1].message
    end

    it("pass on true and nil", function()
      assert.is_nil(failureOf(function() return true end))
      assert.is_nil(failureOf(function() end))
    end)

    it("fail with a returned string", function()
      assert.are.equal("too short", failureOf(function() return "too short" end))
    end)

    it("fail with the generic message on false or any other value", function()
      local generic = 'Input for parameter "x" failed validation!'
      assert.are.equal(generic, failureOf(function() return false end))
      assert.are.equal(generic, failureOf(function() return 0 end))
      assert.are.equal(generic, failureOf(function() return {} end))
      assert.are.equal(generic, failureOf(function() return "" end))
    end)

    it("fail with a raised string, without its position", function()
      assert.are.equal("bad value", failureOf(function() error("bad value") end))
      assert.are.equal("no position", failureOf(function() error("no position", 0) end))
      assert.are.equal("a: 5: b", failureOf(function() error("a: 5: b", 0) end))
      local chunk = load("error('from chunk')", "=actions/foo.lua")
      assert.are.equal("from chunk", failureOf(chunk))
      local stringChunk = load("error('from string')")
      assert.are.equal("from string", failureOf(stringChunk))
    end)

    it("fail with a raised table's message, else its text", function()
      assert.are.equal("table says no",
        failureOf(function() error({ message = "table says no", status = 402 }) end))
      local odd = setmetatable({}, { __tostring = function() return "odd error" end })
      assert.are.equal("odd error", failureOf(function() error(odd) end))
      assert.are.equal('Input for parameter "x" failed validation!',
        failureOf(function() error(nil) end))
    end)

    it("stop at the first failure for a key", function()
      local later = false
      local failures = run({ x = { validator = { function() return "first" end,
        function() later = true return "second" end } } }, { x = 1 })
      assert.are.equal(1, #failures)
      assert.are.equal("first", failures[1].message)
      assert.is_false(later)
    end)

    it("run a list in order until one fails", function()
      local order = {}
      local failures = run({ x = { validator = {
        function() order[#order + 1] = 1 return true end,
        function() order[#order + 1] = 2 end,
        function() order[#order + 1] = 3 return "third" end } } }, { x = 1 })
      assert.are.same({ 1, 2, 3 }, order)
      assert.are.equal("third", failures[1].message)
    end)

    it("see the formatted value", function()
      local seen
      run({ x = { formatter = "toInteger", validator = function(v) seen = v end } }, { x = "4.7" })
      assert.are.equal(4, seen)
      assert.are.equal("integer", math.type(seen))
    end)

    it("do not run on missing values", function()
      local called = false
      assert.is_nil(run({ x = { validator = function() called = true return "no" end } },
                        { x = NULL }))
      assert.is_false(called)
    end)

    it("work with built-ins by name and factories", function()
      local failures = run({
        email = { validator = "api.validators.email" },
        name = { validator = { validators.minLength(2), validators.maxLength(4) } },
        id = { validator = "uuid" },
      }, { email = "nope", name = "abcde", id = "123e4567-e89b-12d3-a456-426614174000" })
      assert.are.same({
        { key = "email", message = "must be a valid email address" },
        { key = "name", message = "must be at most 4 characters long" },
      }, failures)
    end)
  end)

  describe("failures", function()
    it("report every failing input in key order", function()
      local failures = run({
        zeta = { required = true },
        alpha = { validator = function() return "alpha is wrong" end },
        mid = { validator = "integer" },
        ok = { required = true },
      }, { alpha = 1, mid = "x", ok = "here" })
      assert.are.same({
        { key = "alpha", message = "alpha is wrong" },
        { key = "mid", message = "must be an integer" },
        { key = "zeta", message = "zeta is a required parameter for this action", required = true },
      }, failures)
    end)

    it("are nil when everything passes", function()
      assert.is_nil(run({ a = { required = true }, b = {} }, { a = 1 }))
    end)

    it("use the default missing checks when opts are omitted", function()
      local a = action({ x = { required = true } })
      assert.are.equal("x", inputs.process(a, { x = "" }, {})[1].key)
    end)

    it("raise when the action was not compiled", function()
      assert.has_error(function() inputs.process({ name = "raw", inputs = {} }, {}, {}, OPTS) end)
    end)
  end)

  describe("the example action moneyInCents", function()
    -- actions/moneyInCents.lua as the loader loaded it (inputs compiled).
    local function check(value)
      local params = { moneyInCents = value }
      return st.inputs("moneyInCents", params), params
    end

    it("is loaded from actions/moneyInCents.lua", function()
      local a = st.rt.reg.actions.moneyInCents[1]
      assert.equal(state.ROOT .. "/actions/moneyInCents.lua", a._file)
      assert.same({ "moneyInCents" }, a._inputKeys)
    end)

    it("accepts 4", function()
      local failures, params = check(4)
      assert.is_nil(failures)
      assert.are.equal(4, params.moneyInCents)
    end)

    it("accepts \"4\" and stores the number 4", function()
      local failures, params = check("4")
      assert.is_nil(failures)
      assert.are.equal(4, params.moneyInCents)
      assert.are.equal("integer", math.type(params.moneyInCents))
    end)

    it("rejects \"-4\" with money cannot be negative", function()
      assert.are.same({ { key = "moneyInCents", message = "money cannot be negative" } }, check("-4"))
    end)

    it("gives \"\", JSON null and an absent value the default 0", function()
      for _, value in ipairs({ "", NULL, false }) do
        if value == false then value = nil end
        local failures, params = check(value)
        assert.is_nil(failures)
        assert.are.equal(0, params.moneyInCents)
        assert.are.equal("integer", math.type(params.moneyInCents))
      end
    end)

    it("rejects \"hello\" with not a number", function()
      local failures, params = check("hello")
      assert.are.same({ { key = "moneyInCents", message = "not a number" } }, failures)
      assert.are.equal("hello", params.moneyInCents)
    end)
  end)
end)
