-- Runs one Redis command given as params and describes the reply with its Lua type, so
-- the tests see exactly what api.redis hands to actions. mode: "call" (default), "pcall",
-- or "try" (Lua's pcall around api.redis.call, to look at what call raises).
local function describe(v)
  local t = type(v)
  if t == "nil" then return { type = "nil" } end
  if t == "boolean" then return { type = "boolean", value = v } end
  if t == "number" then return { type = math.type(v), value = v } end
  if t == "string" then return { type = "string", value = v } end
  if t ~= "table" then return { type = t } end
  if v.ok ~= nil then return { type = "status", value = v.ok } end
  if v.err ~= nil then return { type = "error", value = v.err, text = tostring(v) } end
  local items = {}
  for i = 1, #v do items[i] = describe(v[i]) end
  return { type = "array", n = #v, value = items }
end

return {
  name = "redisRun",
  description = "I run one Redis command and describe its reply",
  inputs = { command = { required = true }, args = {}, mode = {} },
  run = function(api, data, next)
    local p = data.params
    local args = type(p.args) == "table" and p.args or {}
    if p.mode == "pcall" then
      local v, err = api.redis.pcall(p.command, table.unpack(args))
      data.response.reply = describe(v)
      data.response.err = err
    elseif p.mode == "try" then
      local ok, e = pcall(api.redis.call, p.command, table.unpack(args))
      data.response.ok = ok
      if ok then
        data.response.reply = describe(e)
      elseif type(e) == "table" then
        data.response.raised = { err = e.err, status = e.status, message = e.message, text = tostring(e) }
      else
        data.response.raised = { text = tostring(e) }
      end
    else
      data.response.reply = describe(api.redis.call(p.command, table.unpack(args)))
    end
    next()
  end,
}
