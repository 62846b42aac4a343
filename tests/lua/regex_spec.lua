-- Specs for api.regex (SPEC §6; core/vm/regexlib.c on the pattern cache of
-- core/base/regex.c): match and test, gsub with string, table and function replacements,
-- split, empty matches, UTF-8, the match limit, and bad patterns, which raise an error
-- naming the pattern and the offset.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")

local regex = state.new().api.regex

-- The error a call raises (it must raise).
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- gsub's two results as one table, to compare in one assertion.
local function gsub(...)
  return { regex.gsub(...) }
end

describe("api.regex", function()
  it("is the gateway's pcre2 binding with its four functions", function()
    for _, name in ipairs({ "match", "test", "gsub", "split" }) do
      assert.equal("function", type(regex[name]), name)
    end
  end)

  describe("match", function()
    it("returns the whole match at [0], numbered groups and named groups", function()
      local m = regex.match("item 42/x", [[^(?<kind>\w+) (\d+)/(?<rest>.*)$]])
      assert.same({ [0] = "item 42/x", "item", "42", "x", kind = "item", rest = "x" }, m)
    end)

    it("leaves an unset group out, numbered or named", function()
      local m = regex.match("ac", "a(b)?(?<named>z)?c")
      assert.same({ [0] = "ac" }, m)
    end)

    it("returns nil without a match", function()
      assert.is_nil(regex.match("abc", "^b"))
    end)

    it("searches anywhere unless the pattern or the A flag anchors it", function()
      assert.same({ [0] = "b" }, regex.match("abc", "b"))
      assert.is_nil(regex.match("abc", "b", "A"))
      assert.same({ [0] = "a" }, regex.match("abc", "a", "A"))
    end)

    it("applies the flags i, m, s and x", function()
      assert.same({ [0] = "ABC" }, regex.match("xABC", "abc", "i"))
      assert.is_nil(regex.match("xABC", "abc"))
      assert.same({ [0] = "two" }, regex.match("one\ntwo", "^two$", "m"))
      assert.is_nil(regex.match("one\ntwo", "^two$"))
      assert.same({ [0] = "a\nb" }, regex.match("a\nb", "a.b", "s"))
      assert.is_nil(regex.match("a\nb", "a.b"))
      assert.same({ [0] = "ab" }, regex.match("ab", "a b # comment", "x"))
      assert.same({ [0] = "AB" }, regex.match("x\nAB", "^a b$", "imx"))
    end)

    it("matches UTF-8 by character, and tolerates invalid UTF-8 subjects", function()
      assert.same({ [0] = "é" }, regex.match("é", "^.$"))
      assert.same({ [0] = "b" }, regex.match("a\xffb", "b"))
      assert.is_nil(regex.match("\xff", "^.$"))
    end)

    it("takes NUL bytes in subjects and patterns", function()
      assert.same({ [0] = "\0b", "b" }, regex.match("a\0b", "\0(b)"))
    end)
  end)

  describe("test", function()
    it("says whether the pattern matches", function()
      assert.is_true(regex.test("abc", "b"))
      assert.is_false(regex.test("abc", "^b"))
      assert.is_true(regex.test("ABC", "^abc$", "i"))
    end)
  end)

  describe("gsub with a string", function()
    it("replaces every match and counts them", function()
      assert.same({ "x-x-x", 3 }, gsub("a-b-c", "[a-z]", "x"))
      assert.same({ "nothing", 0 }, gsub("nothing", "\\d", "x"))
    end)

    it("puts in $0, $1..$9 and ${name} or ${number} captures", function()
      assert.same({ "[k=v] [a=1]", 2 },
        gsub("k:v a:1", "(\\w+):(?<value>\\w+)", "[$1=${value}]"))
      assert.same({ "<ab>", 1 }, gsub("ab", "ab", "<$0>"))
      -- One digit after $: "$10" is group 1 then "0"; ${10} is group 10.
      local ten = "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)"
      assert.same({ "a0|j", 1 }, gsub("abcdefghij", ten, "$10|${10}"))
    end)

    it("writes $$ as $, and keeps $ before anything else or at the end", function()
      assert.same({ "$|$x|$", 1 }, gsub("a", "a", "$$|$x|$"))
    end)

    it("puts nothing for an unset group or a number past the last group", function()
      assert.same({ "[][a]", 1 }, gsub("a", "(z)?(a)", "[$1][$2]"))
      assert.same({ "[]", 1 }, gsub("a", "(a)", "[$9]"))
    end)

    it("raises on an unknown name or an unterminated ${", function()
      assert.equal('unknown capture "nope" in replacement', raised(regex.gsub, "a", "(a)", "${nope}"))
      assert.equal("unterminated ${ in replacement", raised(regex.gsub, "a", "(a)", "${1"))
    end)

    it("takes a number as its text", function()
      assert.same({ "a7b7", 2 }, gsub("a1b2", "\\d", 7))
    end)

    it("applies the flags", function()
      assert.same({ "x-x", 2 }, gsub("A-a", "a", "x", "i"))
      assert.same({ "---b", 3 }, gsub("aaab", "a", "-", "A")) -- each match anchored where the last ended
    end)
  end)

  describe("gsub with a table or a function", function()
    it("looks the whole match up in a table; nil or false keeps the match", function()
      assert.same({ "one two 3", 3 }, gsub("1 2 3", "\\d", { ["1"] = "one", ["2"] = "two", ["3"] = false }))
      assert.same({ "10 20", 2 }, gsub("1 2", "\\d", { ["1"] = 10, ["2"] = 20 }))
    end)

    it("calls a function with the captures table, named groups included", function()
      local seen = {}
      local out = gsub("a=1;b=2", "(?<k>\\w)=(\\d)", function(c)
        seen[#seen + 1] = c
        return c.k:upper() .. c[2]
      end)
      assert.same({ "A1;B2", 2 }, out)
      assert.same({ [0] = "a=1", "a", "1", k = "a" }, seen[1])
      assert.same({ [0] = "b=2", "b", "2", k = "b" }, seen[2])
    end)

    it("keeps the match when the function returns nil or false", function()
      assert.same({ "a1b2", 2 }, gsub("a1b2", "\\d", function() return nil end))
      assert.same({ "a1b2", 2 }, gsub("a1b2", "\\d", function() return false end))
    end)

    it("lets the function run patterns itself, the same one included", function()
      local out = gsub("a1b2", "\\d", function(c) return (regex.gsub(c[0], "\\d", "<$0>")) end)
      assert.same({ "a<1>b<2>", 2 }, out)
    end)

    it("raises when the replacement is not text", function()
      assert.equal("invalid replacement value (a table)", raised(regex.gsub, "a", "a", function() return {} end))
      assert.equal("invalid replacement value (a table)", raised(regex.gsub, "a", "a", { a = {} }))
      assert.matches("string/function/table expected, got boolean", raised(regex.gsub, "a", "a", true))
    end)

    it("lets an error raised by the function through", function()
      assert.matches("inner trouble$", raised(regex.gsub, "a", "a", function() error("inner trouble") end))
    end)
  end)

  describe("gsub and empty matches", function()
    it("replaces at every position, between characters and at both ends", function()
      assert.same({ "-a-b-c-", 4 }, gsub("abc", "x*", "-"))
      assert.same({ "-", 1 }, gsub("", "x*", "-"))
    end)

    it("allows an empty match right after a non-empty one, as Perl does", function()
      assert.same({ "-a--c-", 4 }, gsub("abc", "b*", "-"))
    end)

    it("steps over whole UTF-8 characters", function()
      assert.same({ "-é-ö-", 3 }, gsub("éö", "", "-"))
    end)
  end)

  describe("split", function()
    it("splits on every match, keeping empty pieces", function()
      assert.same({ "a", "b", "", "c" }, regex.split("a,b,,c", ","))
      assert.same({ "", "a", "" }, regex.split(",a,", ","))
      assert.same({ "a", "b", "c" }, regex.split("a1b22c", "\\d+"))
    end)

    it("gives the whole subject when nothing matches, and one empty piece for \"\"", function()
      assert.same({ "abc" }, regex.split("abc", ","))
      assert.same({ "" }, regex.split("", ","))
    end)

    it("leaves capture groups out of the pieces", function()
      assert.same({ "a", "b", "c" }, regex.split("a1b22c", "(\\d)+"))
    end)

    it("splits between characters on empty matches, never inside one", function()
      assert.same({ "a", "b", "c" }, regex.split("abc", ""))
      assert.same({ "h", "é", "!" }, regex.split("hé!", ""))
      assert.same({ "a", "b" }, regex.split("a b", "\\s*"))
    end)

    it("applies the flags and splits on NUL bytes", function()
      assert.same({ "a", "b", "c" }, regex.split("aXbxc", "x", "i"))
      assert.same({ "a", "b" }, regex.split("a\0b", "\0"))
      assert.same({ "a\xff", "c" }, regex.split("a\xffbc", "b"))
    end)
  end)

  describe("bad patterns", function()
    local cases = {
      { "a(b", 'invalid regex "a(b": missing closing parenthesis at offset 3' },
      { "[z", 'invalid regex "[z": missing terminating ] for character class at offset 2' },
      { "a{2,1}", 'invalid regex "a{2,1}": numbers out of order in {} quantifier at offset 5' },
      { "(?<n>a)(?<n>b)",
        'invalid regex "(?<n>a)(?<n>b)": two named subpatterns have the same name (PCRE2_DUPNAMES not set) at offset 12' },
    }
    for _, case in ipairs(cases) do
      it("raise an error naming " .. case[1] .. " and the offset, in all four functions", function()
        assert.equal(case[2], raised(regex.match, "x", case[1]))
        assert.equal(case[2], raised(regex.test, "x", case[1]))
        assert.equal(case[2], raised(regex.gsub, "x", case[1], "y"))
        assert.equal(case[2], raised(regex.split, "x", case[1]))
        -- Not cached as if it were good: the next use raises the same.
        assert.equal(case[2], raised(regex.match, "x", case[1]))
      end)
    end

    it("and a pattern that is not UTF-8", function()
      assert.matches('^invalid regex "\xff": UTF%-8 error: .* at offset 0$', raised(regex.match, "x", "\xff"))
    end)

    it("and so does an unknown flag", function()
      assert.equal("unknown regex flag 'z'", raised(regex.match, "x", "a", "z"))
      assert.equal("unknown regex flag 'q'", raised(regex.split, "x", "a", "iq"))
    end)

    it("and arguments of the wrong type", function()
      assert.matches("bad argument #1", raised(regex.match, nil, "a"))
      assert.matches("bad argument #2", raised(regex.gsub, "a", {}, "b"))
    end)
  end)

  describe("limits", function()
    it("stops catastrophic backtracking with an error instead of hanging", function()
      local started = os.clock()
      assert.equal("regex match failed: the pattern backtracks too much on this subject (more than 100000 steps)",
        raised(regex.match, ("a"):rep(40) .. "b", "^(a+)+$"))
      assert.matches("backtracks too much", raised(regex.test, ("a"):rep(40) .. "b", "^(a+)+$"))
      assert.matches("backtracks too much", raised(regex.gsub, ("a"):rep(40) .. "b", "^(a+)+$", ""))
      assert.is_true(os.clock() - started < 30)
    end)

    it("counts a match over the limit as no match in core.regex_match and core.regex_test", function()
      local core = require("gateway.core")
      local subject = ("a"):rep(40) .. "b"
      assert.is_nil(core.regex_match(subject, "^(a+)+$"))
      assert.is_false(core.regex_test(subject, "^(a+)+$"))
      assert.same({ [0] = "aaa", "aaa" }, core.regex_match("aaa", "^(a+)+$"))
      assert.is_true(core.regex_test("aaa", "^(a+)+$"))
      assert.is_false(core.regex_test("b", "^(a+)+$"))
      assert.matches("invalid regex", raised(core.regex_test, "a", "("))
    end)

    it("keeps working past the cache's size (4096 patterns), old patterns included", function()
      local first = "^p0:(\\d+)$"
      assert.same({ [0] = "p0:7", "7" }, regex.match("p0:7", first))
      for i = 1, 5000 do
        assert.same({ [0] = "p" .. i .. ":" .. i, tostring(i) }, regex.match("p" .. i .. ":" .. i, "^p" .. i .. ":(\\d+)$"))
      end
      assert.same({ [0] = "p0:8", "8" }, regex.match("p0:8", first))
    end)

    it("handles a large subject", function()
      local big = ("ab,"):rep(100000)
      local out, n = regex.gsub(big, ",", ";")
      assert.equal(100000, n)
      assert.equal(("ab;"):rep(100000), out)
      local pieces = regex.split(big, ",")
      assert.equal(100001, #pieces)
      assert.equal("ab", pieces[100000])
      assert.equal("", pieces[100001])
    end)
  end)
end)
