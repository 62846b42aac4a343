-- Built-in input formatters, exposed to actions as `api.formatters` (SPEC §3.3, §3.5).
-- A formatter is fn(value, connection, actionTemplate, key) -> newValue. They are lenient:
-- a value that cannot be converted comes back unchanged, so a validator can report it.
-- Looking names up and running the formatters is left to gateway.inputs.

local formatters = {}

local function isFinite(n)
  return n == n and n ~= math.huge and n ~= -math.huge
end

-- Trims with two anchored searches, which stay linear on long runs of spaces.
local function trim(s)
  local first = s:find("%S")
  if not first then return "" end
  local last = s:match(".*()%S")
  return s:sub(first, last)
end

function formatters.toNumber(value)
  if type(value) == "string" then
    return tonumber(value) or value
  end
  return value
end

-- Truncates toward zero, as JavaScript's parseInt does for "4.7" and "-4.7". Values
-- outside the integer range, NaN and infinities are left as they are.
function formatters.toInteger(value)
  local n = value
  if type(value) == "string" then n = tonumber(value) end
  if type(n) ~= "number" then return value end
  if math.type(n) == "integer" then return n end
  if not isFinite(n) then return value end
  local whole = n >= 0 and math.floor(n) or math.ceil(n)
  return math.tointeger(whole) or value
end

-- Integer-valued floats print without ".0": lua-cjson decodes the JSON number 4 as 4.0,
-- and users expect "4", not "4.0".
function formatters.toString(value)
  if type(value) == "number" then
    if math.type(value) == "float" and isFinite(value) and value == math.floor(value)
        and math.abs(value) < 2^53 then
      return string.format("%d", value)
    end
    return tostring(value)
  elseif type(value) == "boolean" then
    return tostring(value)
  end
  return value
end

local TRUTHY = { ["true"] = true, ["1"] = true, yes = true, on = true }
local FALSY = { ["false"] = true, ["0"] = true, no = true, off = true }

function formatters.toBoolean(value)
  if type(value) == "string" then
    local word = trim(value):lower()
    if TRUTHY[word] then return true end
    if FALSY[word] then return false end
  elseif type(value) == "number" then
    return value ~= 0
  end
  return value
end

function formatters.trim(value)
  if type(value) == "string" then return trim(value) end
  return value
end

function formatters.lower(value)
  if type(value) == "string" then return value:lower() end
  return value
end

function formatters.upper(value)
  if type(value) == "string" then return value:upper() end
  return value
end

return formatters
