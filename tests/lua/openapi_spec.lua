-- Specs for lua/gateway/registry/openapi.lua: handler patterns as paths, and the sorted-key
-- encoder (the document itself is checked by tests/integration/test_openapi.py).

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local openapi = require("gateway.registry.openapi")
local json = require("gateway.json")

describe("openapi.patternPath", function()
  local function path(p)
    local text, params = openapi.patternPath(p)
    return text, params
  end

  it("turns literal text and whole named groups into a path template", function()
    local text, params = path([[^items/(?P<pk>\d+)/$]])
    assert.are.equal("items/{pk}/", text)
    assert.are.same({ { name = "pk", pattern = [[^(?:\d+)$]] } }, { params[1] })
    text, params = path([[^kw/(?P<child_id>[-\w]+)/(?<n>[a-z]{2,3})$]])
    assert.are.equal("kw/{child_id}/{n}", text)
    assert.are.equal([[^(?:[a-z]{2,3})$]], params[2].pattern)
    assert.are.equal("a.b/c-d/", (path([[^a\.b/c\-d\/$]])))
    assert.are.equal("", (path("^$")))
  end)

  it("keeps nested groups and classes inside a named group", function()
    local text, params = path([[^x/(?P<id>(\d+|new)[)(]?)/$]])
    assert.are.equal("x/{id}/", text)
    assert.are.equal([[^(?:(\d+|new)[)(]?)$]], params[1].pattern)
    -- ECMA-262 spells a nested named group (?<name>...).
    local _, p2 = path([[^y/(?P<a>(?P<b>\d)x)$]])
    assert.are.equal([[^(?:(?<b>\d)x)$]], p2[1].pattern)
  end)

  it("refuses what is not a plain path, saying why", function()
    local cases = {
      ["items/$"] = "anchored with %^",
      ["^items/"] = "anchored with %$",
      ["^items/\\$"] = "anchored with %$",
      ["^items/?$"] = "quantifier",
      ["^items/(\\d+)/$"] = "not a named capture",
      ["^(?P<a>x)+$"] = "quantifier after the group",
      ["^a|b$"] = "metacharacter |",
      ["^items/\\d+$"] = "escape",
      ["^it.ms$"] = "metacharacter %.",
      ["^a[bc]$"] = "metacharacter %[",
      ["^(?P<a>x$"] = "unbalanced",
      ["^a b$"] = "character",
      ["^(?P<a>x)(?P<a>y)$"] = "twice",
    }
    for pattern, why in pairs(cases) do
      local text, reason = path(pattern)
      assert.is_nil(text, pattern)
      assert.truthy(reason:find(why), pattern .. ": " .. tostring(reason))
    end
  end)
end)

describe("openapi.fieldSchema", function()
  local function schema(field) return openapi.fieldSchema(field, json) end

  it("reads the keys a resource field may carry", function()
    assert.are.same({ type = "string", format = "date-time", readOnly = true },
      schema({ type = "datetime", readOnly = true }))
    assert.are.same({ type = "string", format = "email" }, schema({ type = "email" }))
    assert.are.same({ type = "integer" }, schema({ type = "INT" }))
    assert.are.same({ type = "array", items = {} }, schema({ type = "list" }))
    assert.are.same({ type = "string", maxLength = 5, minLength = 1, description = "d" },
      schema({ maxLength = 5, blank = false, description = "d" }))
    assert.are.same({ type = "string", minLength = 3 }, schema({ minLength = 3, blank = false }))
    assert.are.same({ default = "x", type = "string" }, schema({ default = "x" }))
    assert.are.same({}, schema({ default = function() return 1 end, type = "no such type" }))
  end)

  it("takes choices as a list, as { value, label } pairs, or as a map", function()
    assert.are.same({ "a", "b" }, schema({ choices = { "a", "b" } }).enum)
    assert.are.same({ "bug", "idea" }, schema({ choices = { { "bug", "A bug" }, { value = "idea" } } }).enum)
    assert.are.same({ "high", "low" }, schema({ choices = { low = "Low", high = "High" } }).enum)
    assert.is_nil(schema({ choices = {} }).enum)
  end)
end)

describe("openapi.encode", function()
  it("sorts keys, keeps marked empty arrays and unescapes slashes", function()
    local doc = { b = 1, a = { z = openapi.array(), y = {} }, ["/p/{x}"] = json.null, list = { 3, "x/y" } }
    assert.are.equal('{"/p/{x}":null,"a":{"y":{},"z":[]},"b":1,"list":[3,"x/y"]}', openapi.encode(doc, nil, json))
    assert.are.equal('[]', openapi.encode(json.empty_array, nil, json))
    assert.are.equal('"a\\\\/b"', openapi.encode("a\\/b", nil, json)) -- a backslash before a slash stays one
    assert.are.equal('{\n  "a": [\n    1\n  ]\n}\n', openapi.encode({ a = { 1 } }, "  ", json))
  end)

  it("refuses a cycle instead of looping", function()
    local t = {}
    t.self = t
    assert.has_error(function() openapi.encode(t, nil, json) end)
  end)
end)
