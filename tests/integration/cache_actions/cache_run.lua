-- Runs one api.cache function given as params and returns what it returned, so the tests
-- see exactly what an action gets. params: op ("save", "load", ...), args (an array; JSON
-- null stands for nil), try (run it under pcall and report what it raised).
local function describe(api, v)
  if v == nil then return { type = "nil" } end
  if v == api.json.null then return { type = "null" } end
  local t = type(v)
  if t == "number" then return { type = math.type(v), value = v } end
  return { type = t, value = v }
end

return {
  name = "cacheRun",
  description = "I run one api.cache function",
  inputs = { op = { required = true }, args = {}, try = {} },
  run = function(api, data, next)
    local p = data.params
    local args = type(p.args) == "table" and p.args or {}
    local n = #args
    for i = 1, n do
      if args[i] == api.json.null then args[i] = nil end
    end
    local fn = api.cache[p.op]
    local results
    if p.try then
      results = table.pack(pcall(fn, table.unpack(args, 1, n)))
      if not results[1] then
        local e = results[2]
        data.response.raised = type(e) == "table" and { status = e.status, message = e.message }
          or tostring(e)
        return next()
      end
      results = table.pack(table.unpack(results, 2, results.n))
    else
      results = table.pack(fn(table.unpack(args, 1, n)))
    end
    local out = {}
    for i = 1, results.n do out[i] = describe(api, results[i]) end
    data.response.results = out
    data.response.n = results.n
    data.response.lockName = api.cache.lockName()
    next()
  end,
}
