-- cjson reads every JSON number as a float. Values the gateway stored as JSON (cached
-- values, task jobs, the spec helper's answers) come back with their whole numbers as
-- integers, as they most likely were saved: 42, not 42.0, so "items/" .. id is
-- "items/42". Floats past 2^53 are not exact and stay floats.

local MAXINT = 2 ^ 53

-- `v` with every integral float in it (nested tables too, changed in place) an integer.
local function integers(v)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v >= -MAXINT and v <= MAXINT then
      return math.tointeger(v)
    end
  elseif t == "table" then
    for k, x in pairs(v) do
      local y = integers(x)
      -- 42 == 42.0 in Lua: compare the number subtypes too.
      if y ~= x or math.type(y) ~= math.type(x) then v[k] = y end
    end
  end
  return v
end

return integers
