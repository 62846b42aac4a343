-- Specs for the pure pieces of issue 15's resource rules: the type coercions of
-- lua/gateway/registry/resources.lua (DRF's IntegerField, FloatField, BooleanField,
-- CharField), the load-time checks of field rules and handler options (the generics
-- factory), object permissions in lua/gateway/pipeline/permissions.lua, and GET on a
-- lookupField route meaning retrieve in handlers.resolve. What needs Redis is covered by
-- tests/integration/test_resource_rules.py.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")
state.new()

local resources = require("gateway.registry.resources")
local permissions = require("gateway.pipeline.permissions")
local handlers = require("gateway.registry.handlers")

local coerce = resources.coerce

local function ok(kind, given, expected)
  local good, value = coerce[kind](given)
  assert.is_true(good, kind .. " should take " .. tostring(given))
  assert.equal(expected, value)
  assert.equal(math.type(expected), math.type(value))
end

local function refused(kind, given)
  local good = coerce[kind](given)
  assert.is_false(good, kind .. " should refuse " .. tostring(given))
end

describe("type = integer", function()
  it("takes integral numbers and strings of integers", function()
    ok("integer", 5, 5)
    ok("integer", 5.0, 5)
    ok("integer", "5", 5)
    ok("integer", "-3", -3)
    ok("integer", "+4", 4)
    ok("integer", " 7 ", 7)
    ok("integer", "5.0", 5)
    ok("integer", "5.", 5)
  end)
  it("refuses everything else", function()
    for _, v in ipairs({ 5.5, "5.5", "abc", "", " ", "0x10", "1e3", true, false, {}, math.huge,
                         0 / 0, string.rep("9", 30), string.rep("1", 1001) }) do
      refused("integer", v)
    end
  end)
end)

describe("type = number", function()
  it("takes finite numbers and decimal strings", function()
    ok("number", 1.5, 1.5)
    ok("number", 2, 2)
    ok("number", "1.5", 1.5)
    ok("number", "-2", -2)
    ok("number", ".5", 0.5)
    ok("number", " 3 ", 3)
    ok("number", "1e3", 1000.0)
  end)
  it("refuses hex, nan, inf, booleans and other values", function()
    for _, v in ipairs({ "0x10", "nan", "inf", "-inf", "1e999", "", ".", "1..2", "e5", true, {},
                         math.huge, 0 / 0 }) do
      refused("number", v)
    end
  end)
end)

describe("type = boolean", function()
  it("takes DRF's true and false values", function()
    for _, v in ipairs({ true, 1, 1.0, "1", "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True",
                         "TRUE", "on", "On", "ON" }) do
      ok("boolean", v, true)
    end
    for _, v in ipairs({ false, 0, 0.0, "0", "f", "F", "n", "N", "no", "No", "NO", "false", "False",
                         "FALSE", "off", "Off", "OFF" }) do
      ok("boolean", v, false)
    end
  end)
  it("refuses other spellings and values", function()
    for _, v in ipairs({ "tRuE", "yES", "", "2", 2, -1, {}, "maybe" }) do refused("boolean", v) end
  end)
end)

describe("type = string", function()
  it("takes strings and numbers as their text", function()
    ok("string", "abc", "abc")
    ok("string", "", "")
    ok("string", 12, "12")
    ok("string", 12.0, "12")
    ok("string", 1.5, "1.5")
  end)
  it("refuses booleans and tables", function()
    for _, v in ipairs({ true, false, {}, math.huge }) do refused("string", v) end
  end)
end)

-- The generics factory's answer for a handler: the action, or nil and the load error.
local function factory(handler)
  return resources.generics.create(handler, "create")
end

local function loadError(handler)
  local def, err = factory(handler)
  assert.is_nil(def)
  return err
end

describe("field rules at load time", function()
  local function field(rules)
    return { routes = { "^x/$" }, resource = { name = "r", fields = { a = rules } } }
  end

  it("accepts every documented rule", function()
    local def = factory(field({ required = true, default = "x", blank = false, type = "string",
      choices = { "x", "y" }, maxLength = 3, minLength = 1, description = "d",
      formatter = "api.formatters.trim", validator = function() return true end }))
    assert.is_table(def)
    assert.is_table(factory(field({ readOnly = true, default = function() return 1 end })))
  end)

  local cases = {
    { { type = "float" }, 'resource "r" field "a": unknown type "float"' },
    { { choices = {} }, 'resource "r" field "a": choices must be a non-empty list' },
    { { choices = { a = 1 } }, 'resource "r" field "a": choices must be a non-empty list' },
    { { choices = { "x", {} } }, 'resource "r" field "a": choices must be strings, numbers or booleans, got table' },
    { { blank = 0 }, 'resource "r" field "a": blank must be a boolean, got number' },
    { { readOnly = "yes" }, 'resource "r" field "a": readOnly must be a boolean, got string' },
    { { readOnly = true, required = true }, 'resource "r" field "a": a readOnly field cannot be required' },
    { { readonly = true }, 'resource "r" field "a": unknown rule "readonly"' },
    { { type = "boolean", minLength = 1 }, 'resource "r" field "a": maxLength and minLength apply to strings, not to type boolean' },
    { { maxLength = -1 }, 'resource "r" field "a": maxLength must be a non-negative integer' },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[2], function()
      local err = loadError(field(case[1]))
      assert.equal(case[2], err:sub(1, #case[2]))
    end)
  end

  it("checks the handler's lookupField and objectPermissions", function()
    local h = field({})
    h.lookupField = "b"
    assert.equal('resource "r": lookupField "b" is not one of its fields', loadError(h))
    h = field({})
    h.lookupField = 5
    assert.equal('resource "r": lookupField must be a field name', loadError(h))
    h = field({})
    h.objectPermissions = "isOwner"
    assert.equal('resource "r": objectPermissions must be a list of names', loadError(h))
    h = field({})
    h.objectPermissions = { "a", 5 }
    assert.equal('resource "r": objectPermissions must be a list of names', loadError(h))
    for _, f in ipairs({ "a", "pk", "id" }) do
      h = field({})
      h.lookupField = f
      assert.is_table(factory(h))
    end
  end)
end)

describe("object permissions", function()
  it("live in their own namespace and get (data, object)", function()
    local p = permissions.new()
    p.add("isOwner", function() return true end)
    p.addObject("isOwner", function(data, obj) return obj.author == data.user end)
    assert.is_function(p.permissions.isOwner)
    assert.is_function(p.objects.isOwner)
    assert.is_not.equal(p.permissions.isOwner, p.objects.isOwner)
    assert.is_nil(permissions.check(p.objects, { "isOwner" }, { user = "a" }, { author = "a" }))
    assert.same({ permissions.DENIED, 403 },
      { permissions.check(p.objects, { "isOwner" }, { user = "b" }, { author = "a" }) })
  end)

  it("answer with a reason as add's checks do, the first denial winning", function()
    local p = permissions.new()
    p.addObject("a", function() return false, "not yours" end)
    p.addObject("b", function() return nil, { status = 409, message = "locked" } end)
    assert.same({ "locked", 409 }, { permissions.check(p.objects, { "b", "a" }, {}, {}) })
    assert.same({ "not yours", 403 }, { permissions.check(p.objects, { "a", "b" }, {}, {}) })
  end)

  it("raise on a bad call as add does", function()
    local p = permissions.new()
    assert.has_error(function() p.addObject("", function() end) end,
      "api.permissions.addObject: name must be a string")
    assert.has_error(function() p.addObject("x", true) end,
      "api.permissions.addObject: x needs a function")
  end)
end)

describe("GET over HTTP on a handler route", function()
  local function make(def) return def end
  local function index(lookupField)
    return handlers.compile({ { file = "f.lua", handler = {
      routes = { [[^pages/$]], [[^pages/(?P<slug>[-\w]+)/$]], [[^pages/id/(?P<pk>\d+)/$]] },
      lookupField = lookupField,
      actions = { retrieve = function() end, list = function() end },
    } } }, make, {})
  end

  it("is retrieve when the route has pk or the lookupField's group, else list", function()
    local idx = index("slug")
    assert.equal("retrieve", (handlers.resolve(idx, "pages/hello/", nil, "GET")).name)
    assert.equal("retrieve", (handlers.resolve(idx, "pages/id/3/", nil, "GET")).name)
    assert.equal("list", (handlers.resolve(idx, "pages/", nil, "GET")).name)
    -- Without lookupField, the slug group is just a param.
    assert.equal("list", (handlers.resolve(index(nil), "pages/hello/", nil, "GET")).name)
  end)
end)
