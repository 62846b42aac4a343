-- Actions for the fuzz targets: plain answers, declared inputs with formatters and
-- validators, a required input, an error, and versions.
return {
  ping = {
    name = "ping", description = "fuzz ping",
    run = function(api, data) return { pong = true } end,
  },
  echo = {
    name = "echo", description = "fuzz echo",
    inputs = {
      a = {}, b = { default = "b" }, n = { formatter = function(p) return tonumber(p) end },
      id = {}, x = {}, rest = {}, pk = {}, slug = {},
    },
    run = function(api, data)
      return { a = data.params.a, b = data.params.b, n = data.params.n, id = data.params.id,
               x = data.params.x, rest = data.params.rest, pk = data.params.pk }
    end,
  },
  strict = {
    name = "strict", description = "fuzz strict",
    inputs = {
      title = { required = true },
      count = {
        formatter = function(p) return tonumber(p) end,
        validator = function(p) if type(p) ~= "number" or p < 0 then return "must be >= 0" end return true end,
      },
    },
    run = function(api, data) return { title = data.params.title, count = data.params.count } end,
  },
  boom = {
    name = "boom", description = "fuzz boom",
    run = function(api, data) error("boom") end,
  },
  fail = {
    name = "fail", description = "fuzz fail",
    run = function(api, data) error({ status = 409, message = "conflict" }) end,
  },
  versioned1 = { name = "versioned", description = "fuzz versioned", version = 1, run = function() return { v = 1 } end },
  versioned2 = { name = "versioned", description = "fuzz versioned", version = 2, run = function() return { v = 2 } end },
  text = {
    name = "text", description = "fuzz text",
    matchExtensionMimeType = true,
    run = function(api, data) return "plain text" end,
  },
}
