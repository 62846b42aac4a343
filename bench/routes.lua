-- Route matching cost per request with 10, 100 and 1,000 routes of each kind: web routes
-- (lua/gateway/registry/router.lua) and handler patterns (lua/gateway/registry/handlers.lua),
-- measured in process with the gateway's own pcre2 binding. Run through bench/routes.sh.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local router = require("gateway.registry.router")
local handlers = require("gateway.registry.handlers")

local ITER_BUDGET = tonumber(os.getenv("BENCH_ROUTES_SECONDS") or "0.3") -- per measurement

-- Microseconds per call of fn, over as many calls as fit in the budget.
local function perCall(fn)
  local n, t0 = 0, os.clock()
  local batch = 1000
  repeat
    for _ = 1, batch do fn() end
    n = n + batch
  until os.clock() - t0 >= ITER_BUDGET
  return (os.clock() - t0) / n * 1e6
end

local function webRoutes(n, shape)
  local list = {}
  for i = 1, n do
    local path = shape == "static" and ("/res" .. i .. "/:id(^\\d+$)") or ("/:kind/res" .. i .. "/:id")
    list[i] = { path = path, action = "a" }
  end
  return router.compile({ get = list }, "bench", function() return true end)
end

local function handlerIndex(n, shape)
  local patterns = {}
  for i = 1, n do
    patterns[i] = shape == "anchored" and ("^res" .. i .. [[/(?P<pk>\d+)/$]]) or ("res" .. i .. [[/(?P<pk>\d+)/$]])
  end
  return handlers.compile({ { file = "bench", handler = { routes = patterns, actions = { retrieve = function() end } } } },
    function(def) return def end)
end

local rows = {}
local function row(kind, shape, n, case, us)
  rows[#rows + 1] = string.format("| %-14s | %-9s | %5d | %-6s | %8.2f |", kind, shape, n, case, us)
end

for _, n in ipairs({ 10, 100, 1000 }) do
  local web = webRoutes(n, "static")
  row("web route", "static", n, "first", perCall(function() assert(router.match(web, "get", "res1/42")) end))
  row("web route", "static", n, "last", perCall(function() assert(router.match(web, "get", "res" .. n .. "/42")) end))
  row("web route", "static", n, "miss", perCall(function() assert(not router.match(web, "get", "nothing/42")) end))
end
for _, n in ipairs({ 10, 100, 1000 }) do
  local web = webRoutes(n, "variable")
  row("web route", "variable", n, "last", perCall(function() assert(router.match(web, "get", "x/res" .. n .. "/42")) end))
end
for _, n in ipairs({ 10, 100, 1000 }) do
  local index = handlerIndex(n, "anchored")
  row("handler", "anchored", n, "first", perCall(function() assert(handlers.match(index, "res1/42/")) end))
  row("handler", "anchored", n, "last", perCall(function() assert(handlers.match(index, "res" .. n .. "/42/")) end))
  row("handler", "anchored", n, "miss", perCall(function() assert(not handlers.match(index, "nothing/42/")) end))
end
for _, n in ipairs({ 10, 100, 1000 }) do
  local index = handlerIndex(n, "unanchored")
  row("handler", "unanchored", n, "last", perCall(function() assert(handlers.match(index, "res" .. n .. "/42/")) end))
end

print("| kind           | shape     | routes | case   | µs/match |")
print("|----------------|-----------|-------:|--------|---------:|")
for _, r in ipairs(rows) do print(r) end
