-- Specs for lua/gateway/pipeline/formatters.lua, the built-ins behind api.formatters.
-- Formatters are lenient: what they cannot convert must come back unchanged.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local formatters = require("gateway.pipeline.formatters")

-- Asserts formatter(input) == expected for each { input, expected } pair, including the
-- Lua number subtype (4 and 4.0 are equal but not the same result).
local function converts(formatter, cases)
  for _, case in ipairs(cases) do
    local input, expected = case[1], case[2]
    local result = formatter(input)
    assert.are.equal(expected, result, "input: " .. tostring(input))
    assert.are.equal(math.type(expected), math.type(result), "subtype for: " .. tostring(input))
  end
end

-- Asserts that each value comes back as the very same value.
local function unchanged(formatter, values)
  for _, value in ipairs(values) do
    assert.are.equal(value, formatter(value), "expected unchanged: " .. tostring(value))
  end
end

local aTable = {}
local aFunction = function() end

describe("formatters", function()
  it("are all functions", function()
    for name, entry in pairs(formatters) do
      assert.are.equal("function", type(entry), name)
    end
  end)

  describe("toNumber", function()
    it("converts numeric strings and keeps numbers", function()
      converts(formatters.toNumber, { { "4", 4 }, { "-4.5", -4.5 }, { " 7 ", 7 }, { "1e3", 1e3 },
        { 4, 4 }, { 4.5, 4.5 } })
    end)

    it("leaves everything else unchanged", function()
      unchanged(formatters.toNumber, { "", "abc", "4abc", true, aTable, aFunction })
    end)
  end)

  describe("toInteger", function()
    it("truncates numbers and numeric strings toward zero", function()
      converts(formatters.toInteger, { { "4.7", 4 }, { "-4.7", -4 }, { "4", 4 }, { 4.7, 4 },
        { -4.7, -4 }, { 4.0, 4 }, { 7, 7 }, { "1e3", 1000 }, { "0x10", 16 } })
    end)

    it("leaves unconvertible values unchanged", function()
      unchanged(formatters.toInteger, { "", "abc", "4abc", math.huge, -math.huge, 1e300, true,
        aTable, aFunction })
      local nan = formatters.toInteger(0 / 0)
      assert.is_true(nan ~= nan)
    end)
  end)

  describe("toString", function()
    it("converts numbers and booleans", function()
      converts(formatters.toString, { { 4, "4" }, { 4.0, "4" }, { -4.5, "-4.5" }, { true, "true" },
        { false, "false" } })
    end)

    it("leaves strings and tables unchanged", function()
      unchanged(formatters.toString, { "", "abc", aTable })
    end)
  end)

  describe("toBoolean", function()
    it("converts true-ish and false-ish words in any case", function()
      converts(formatters.toBoolean, { { "true", true }, { "TRUE", true }, { "1", true },
        { "yes", true }, { "On", true }, { "false", false }, { "False", false }, { "0", false },
        { "no", false }, { "OFF", false }, { " yes ", true } })
    end)

    it("converts numbers by zero and keeps booleans", function()
      converts(formatters.toBoolean, { { 0, false }, { 0.0, false }, { 1, true }, { -2.5, true },
        { true, true }, { false, false } })
    end)

    it("leaves other values unchanged", function()
      unchanged(formatters.toBoolean, { "", "maybe", "2", aTable, aFunction })
    end)
  end)

  describe("trim, lower and upper", function()
    it("change strings", function()
      converts(formatters.trim, { { "  a b  ", "a b" }, { "\t\na\r\n", "a" }, { "   ", "" },
        { "", "" }, { "x", "x" } })
      converts(formatters.lower, { { "AbC", "abc" }, { "", "" } })
      converts(formatters.upper, { { "AbC", "ABC" }, { "", "" } })
    end)

    it("leave other types unchanged", function()
      for _, name in ipairs({ "trim", "lower", "upper" }) do
        unchanged(formatters[name], { 4, true, aTable, aFunction })
      end
    end)

    it("trim stays fast on long runs of spaces", function()
      local s = "a" .. string.rep(" ", 100000) .. "b" .. string.rep(" ", 100000)
      assert.are.equal(100002, #formatters.trim(s))
    end)
  end)
end)
