-- Built-in input validators, exposed to actions as `api.validators` (SPEC §3.3, §3.5).
-- A validator is fn(value, connection, actionTemplate, key) -> true | message; it never
-- raises on a bad value. Messages leave out the key: the caller adds it where needed.
-- Looking names up and running the validators is left to gateway.inputs.

local validators = {}

-- Names of the entries that are factories (minLength(n), ...) rather than validators.
-- The leading underscore keeps it out of the way of real validator names, and it is a
-- table, not a function, so a lookup that accepts only functions never mistakes it for a
-- validator. Code that registers its own factory in api.validators should add its name here.
validators._factories = { minLength = true, maxLength = true, regex = true }

local function isFinite(n)
  return n == n and n ~= math.huge and n ~= -math.huge
end

-- Emails: one "@", a dot-atom local part and a domain of at least two labels. This is
-- deliberately simpler than RFC 5322 (no quoted local parts, no IP-literal domains).
local function isEmail(s)
  if #s > 254 then return false end
  local localPart, domain = s:match("^([^@]+)@([^@]+)$")
  if not localPart or #localPart > 64 then return false end
  if not localPart:match("^[%w!#$%%&'*+/=?^_`{|}~.-]+$") then return false end
  if localPart:sub(1, 1) == "." or localPart:sub(-1) == "." or localPart:find("..", 1, true) then
    return false
  end
  local labels = 0
  for label in (domain .. "."):gmatch("(.-)%.") do
    if #label == 0 or #label > 63 or not label:match("^[%w-]+$")
        or label:sub(1, 1) == "-" or label:sub(-1) == "-" then
      return false
    end
    labels = labels + 1
  end
  -- The top-level domain must be letters only, at least two of them.
  return labels >= 2 and domain:match("%.(%a%a+)$") ~= nil
end

local function isHostname(host)
  if host:match("^%[[%x:.]+%]$") then return true end          -- IPv6 literal
  if #host == 0 or #host > 253 then return false end
  for label in (host .. "."):gmatch("(.-)%.") do
    if #label == 0 or not label:match("^[%w-]+$") then return false end
  end
  return true
end

-- URLs: http or https (any case), an optional user@, a host, an optional port, then
-- anything without whitespace that starts with "/", "?" or "#".
local function isUrl(s)
  if s:find("%s") then return false end
  local rest = s:match("^[Hh][Tt][Tt][Pp][Ss]?://(.*)$")
  if not rest then return false end
  local authority = rest:match("^[^/?#]*")
  authority = authority:gsub("^[^@]*@", "", 1)
  local host, port = authority:match("^(.-):(%d+)$")
  if not host then
    host = authority
  elseif tonumber(port) > 65535 then
    return false
  end
  return isHostname(host)
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

function validators.email(value)
  if type(value) == "string" and isEmail(value) then return true end
  return "must be a valid email address"
end

function validators.url(value)
  if type(value) == "string" and isUrl(value) then return true end
  return "must be a valid URL"
end

function validators.uuid(value)
  if type(value) == "string" and value:match(UUID) then return true end
  return "must be a valid UUID"
end

-- Integer-valued floats count: lua-cjson decodes every JSON number as a float, so the
-- JSON number 4 arrives as 4.0.
function validators.integer(value)
  if type(value) == "number" then
    if math.type(value) == "integer" or (isFinite(value) and value == math.floor(value)) then
      return true
    end
  elseif type(value) == "string" and value:match("^[+-]?%d+$") then
    return true
  end
  return "must be an integer"
end

function validators.number(value)
  local n
  if type(value) == "number" then
    n = value
  elseif type(value) == "string" then
    n = tonumber(value)
  end
  if n and isFinite(n) then return true end
  return "must be a number"
end

-- Factories. A wrong argument is a bug in the action, so it raises at load time.

local function checkCount(name, n)
  local count = math.type(n) == "float" and math.tointeger(n) or n
  if math.type(count) ~= "integer" or count < 0 then
    error(name .. "(n): n must be a non-negative integer, got " .. tostring(n), 3)
  end
  return count
end

-- Strings are counted in UTF-8 characters, or in bytes when they are not valid UTF-8.
local function lengthOf(value)
  if type(value) == "string" then
    return utf8.len(value) or #value
  elseif type(value) == "table" then
    return #value
  end
  return nil
end

function validators.minLength(n)
  local count = checkCount("minLength", n)
  local message = string.format("must be at least %d characters long", count)
  return function(value)
    local len = lengthOf(value)
    if len == nil then return "must be a string" end
    if len < count then return message end
    return true
  end
end

function validators.maxLength(n)
  local count = checkCount("maxLength", n)
  local message = string.format("must be at most %d characters long", count)
  return function(value)
    local len = lengthOf(value)
    if len == nil then return "must be a string" end
    if len > count then return message end
    return true
  end
end

-- The pcre2 binding lives in the C core (gateway.regex; build/lua/gateway/regex.so
-- outside the gateway). It is loaded on first use so that this module loads without it.
-- Values are tested with core.regex_test, for which a match over pcre2's limits (a
-- pattern backtracking catastrophically on the value) is no match: the value fails.
local pcre, clientTest

local function loadRegex()
  if pcre == nil then
    local ok, mod = pcall(require, "gateway.regex")
    pcre = ok and mod or false
    local okCore, core = pcall(require, "gateway.core")
    clientTest = okCore and core.regex_test or (pcre and pcre.test)
  end
  return pcre or nil
end

-- regex(pattern [, message]): strings (and numbers, as text) must match the pcre2
-- pattern; other values fail. When the core is present a bad pattern raises here, at
-- load time, rather than on the first request.
function validators.regex(pattern, message)
  if type(pattern) ~= "string" then
    error("regex(pattern [, message]): pattern must be a string, got " .. type(pattern), 2)
  end
  if message ~= nil and type(message) ~= "string" then
    error("regex(pattern [, message]): message must be a string, got " .. type(message), 2)
  end
  message = message or "does not match the required pattern"
  local re = loadRegex()
  if re then re.test("", pattern) end
  return function(value)
    if type(value) == "number" then value = tostring(value) end
    if type(value) ~= "string" then return message end
    local lib = loadRegex()
    if not lib then error("api.validators.regex needs the gateway.regex module", 0) end
    if clientTest(value, pattern) then return true end
    return message
  end
end

return validators
