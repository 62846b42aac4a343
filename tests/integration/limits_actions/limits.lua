-- Actions for test_vm_limits.py: Lua code that allocates without bound, and pcre2 patterns
-- that backtrack catastrophically on what the client sends.
return {
  memoryHog = {
    name = "memory_hog",
    description = "I build a table until the state holds 'mb' MiB (or the memory cap stops me)",
    inputs = { mb = { default = 256, formatter = function(p) return tonumber(p) end } },
    run = function(api, data, next)
      local t, i = {}, 0
      while collectgarbage("count") < data.params.mb * 1024 do
        i = i + 1
        t[i] = ("x"):rep(65536) .. i
      end
      data.response.entries = #t
      next()
    end,
  },
  bigRep = {
    name = "big_rep",
    description = "I make one string of 'mb' MiB",
    inputs = { mb = { default = 256, formatter = function(p) return tonumber(p) end } },
    run = function(api, data, next)
      data.response.length = #string.rep("x", data.params.mb * 1024 * 1024)
      next()
    end,
  },
  caughtHog = {
    name = "caught_hog",
    description = "I catch the memory error of a hog and answer anyway",
    run = function(api, data, next)
      local ok, err = pcall(function()
        local t = {}
        for i = 1, 1e9 do t[i] = ("y"):rep(65536) .. i end
      end)
      data.response.caught = not ok
      data.response.err = tostring(err)
      next()
    end,
  },
  regexProbe = {
    name = "regex_probe",
    description = "I run api.regex.test on my input and report what it raised",
    inputs = { s = { required = true } },
    run = function(api, data, next)
      local ok, err = pcall(api.regex.test, data.params.s, "^(a+)+$")
      data.response.ok = ok
      data.response.err = not ok and tostring(err) or nil
      next()
    end,
  },
  regexValidated = {
    name = "regex_validated",
    description = "My input must match a pattern that backtracks catastrophically",
    inputs = { s = { required = true, validator = api.validators.regex("^(a+)+$", "must be a's") } },
    run = function(api, data, next)
      data.response.s = data.params.s
      next()
    end,
  },
}
