-- Specs for lua/gateway/pipeline/validators.lua, the built-ins behind api.validators.
-- The regex validator runs on the C core's pcre2 binding (build/lua/gateway/core.so,
-- which make test-lua builds): without it these specs fail rather than skip.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

require("gateway.core")
local validators = require("gateway.pipeline.validators")

-- Asserts that every value passes / fails with 'message'.
local function passes(validator, values)
  for _, value in ipairs(values) do
    assert.are.equal(true, validator(value), "expected to pass: " .. tostring(value))
  end
end

local function fails(validator, message, values)
  for _, value in ipairs(values) do
    assert.are.equal(message, validator(value), "expected to fail: " .. tostring(value))
  end
end

local NOT_STRINGS = { 42, true, false, {}, function() end }

describe("validators", function()
  it("lists its factories apart from its validators", function()
    assert.are.same({ minLength = true, maxLength = true, regex = true }, validators._factories)
    for name, entry in pairs(validators) do
      if name ~= "_factories" then
        assert.are.equal("function", type(entry), name)
      end
    end
  end)

  describe("email", function()
    it("accepts ordinary addresses", function()
      passes(validators.email, { "evan@example.com", "first.last+tag@mail.example.co.uk",
        "a_b-c@sub-domain.example.org", "UPPER@EXAMPLE.COM" })
    end)

    it("rejects malformed addresses and other types", function()
      fails(validators.email, "must be a valid email address", { "", "evan", "evan@", "@example.com",
        "evan@example", "evan@@example.com", "ev an@example.com", "evan@exa mple.com",
        ".evan@example.com", "evan.@example.com", "ev..an@example.com", "evan@-example.com",
        "evan@example..com", "evan@example.c0m", "evan@example.com\n" })
      fails(validators.email, "must be a valid email address", NOT_STRINGS)
    end)
  end)

  describe("url", function()
    it("accepts http and https URLs with a host", function()
      passes(validators.url, { "http://example.com", "https://example.com/path?q=1#frag",
        "HTTPS://Example.COM", "http://localhost:8080/", "http://user:pw@example.com/",
        "http://127.0.0.1", "http://[::1]:8080/x", "https://example.com?x=1" })
    end)

    it("rejects other schemes, missing hosts and other types", function()
      fails(validators.url, "must be a valid URL", { "", "example.com", "ftp://example.com",
        "http://", "http:///path", "https://:80/", "http://exa mple.com", "http://example.com:99999",
        "http://exa_mple.com", "javascript:alert(1)", "http//example.com" })
      fails(validators.url, "must be a valid URL", NOT_STRINGS)
    end)
  end)

  describe("uuid", function()
    it("accepts 8-4-4-4-12 hex in any case", function()
      passes(validators.uuid, { "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000", "00000000-0000-0000-0000-000000000000" })
    end)

    it("rejects anything else", function()
      fails(validators.uuid, "must be a valid UUID", { "", "123e4567e89b12d3a456426614174000",
        "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-4266141740000",
        "g23e4567-e89b-12d3-a456-426614174000", "{123e4567-e89b-12d3-a456-426614174000}" })
      fails(validators.uuid, "must be a valid UUID", NOT_STRINGS)
    end)
  end)

  describe("integer", function()
    it("accepts integers, integer-valued floats and signed digit strings", function()
      passes(validators.integer, { 0, 4, -4, 4.0, math.maxinteger, "4", "-4", "+4", "007" })
    end)

    it("rejects fractions, non-finite numbers, other strings and other types", function()
      fails(validators.integer, "must be an integer", { 4.5, 0 / 0, math.huge, -math.huge,
        "", "4.0", "4.5", " 4", "4 ", "1e3", "0x10", "-", "four", true, {}, function() end })
    end)
  end)

  describe("number", function()
    it("accepts numbers and strings tonumber accepts", function()
      passes(validators.number, { 0, -4, 4.5, "4", "-4.5", "1e3", "0x10", " 7 " })
    end)

    it("rejects NaN, infinities, non-numeric strings and other types", function()
      fails(validators.number, "must be a number", { 0 / 0, math.huge, -math.huge, "", "abc",
        "4abc", "nan", "inf", "1e999", true, {}, function() end })
    end)
  end)

  describe("minLength", function()
    it("counts UTF-8 characters in strings", function()
      local v = validators.minLength(3)
      passes(v, { "abc", "abcd", "héé", "日本語" })
      fails(v, "must be at least 3 characters long", { "", "ab", "hé", "日本" })
    end)

    it("counts bytes in invalid UTF-8", function()
      local v = validators.minLength(3)
      assert.are.equal(true, v("\xff\xfe\xfd"))
      assert.are.equal("must be at least 3 characters long", v("\xff\xfe"))
    end)

    it("counts tables with #", function()
      local v = validators.minLength(2)
      passes(v, { { 1, 2 }, { 1, 2, 3 } })
      fails(v, "must be at least 2 characters long", { {}, { 1 } })
    end)

    it("fails other types with 'must be a string'", function()
      fails(validators.minLength(1), "must be a string", { 42, true, function() end })
    end)

    it("raises on a bad argument", function()
      assert.has_error(function() validators.minLength("3") end)
      assert.has_error(function() validators.minLength(-1) end)
      assert.has_error(function() validators.minLength(2.5) end)
      assert.has_error(function() validators.minLength() end)
      assert.are.equal(true, validators.minLength(2.0)("ab"))
    end)
  end)

  describe("maxLength", function()
    it("counts UTF-8 characters in strings", function()
      local v = validators.maxLength(3)
      passes(v, { "", "abc", "日本語" })
      fails(v, "must be at most 3 characters long", { "abcd", "日本語か" })
    end)

    it("counts tables with # and fails other types", function()
      local v = validators.maxLength(1)
      passes(v, { {}, { 1 } })
      fails(v, "must be at most 1 characters long", { { 1, 2 } })
      fails(v, "must be a string", { 42, false })
    end)

    it("raises on a bad argument", function()
      assert.has_error(function() validators.maxLength({}) end)
      assert.has_error(function() validators.maxLength(nil) end)
    end)
  end)

  describe("regex", function()
    it("raises on a bad argument", function()
      assert.has_error(function() validators.regex(42) end)
      assert.has_error(function() validators.regex("^a$", 42) end)
    end)

    it("passes matching strings and fails others with the default message", function()
      local v = validators.regex("^[a-z]+\\d*$")
      passes(v, { "abc", "abc123" })
      fails(v, "does not match the required pattern", { "", "ABC", "abc-1", {}, true })
    end)

    it("uses a custom message and matches numbers as text", function()
      local v = validators.regex("^\\d{3}$", "must be three digits")
      passes(v, { "123", 123 })
      fails(v, "must be three digits", { "12", 12, "abcd" })
    end)

    it("raises at creation on a bad pattern, naming it and the offset", function()
      assert.has_error(function() validators.regex("(unclosed") end,
        'invalid regex "(unclosed": missing closing parenthesis at offset 9')
    end)
  end)
end)
