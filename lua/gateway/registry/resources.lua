-- The Redis-backed generic handlers of SPEC §6 (rest_framework_channels generics):
-- retrieve, list, create, update, partial_update, remove/destroy on a handler's
-- `resource = { name, fields, pageSize }`, and subscribe/unsubscribe (live resources,
-- docs/realtime.md: the writes announce themselves through api.resources). The loader hands `M.generics` to
-- handlers.compile, which asks `generics[name](handler, name)` for an action definition.
--
-- Keys (SPEC §9), P = redis.prefix .. "resource:<name>:":
--   P.."id"        string  the id counter (INCR)
--   P.."index"     zset    member = id, score = id: the ordered index
--   P.."obj:"..id  hash    "id" -> the id, and one entry per field holding its value
--                          JSON-encoded (a field without a value has no entry)
--   P.."lookup:"..field  zset  the lookup index of a lookupField (see INDEX below)
--   P.."lookups"   hash    field -> "1" while its lookup index is complete
-- Every write is one EVAL (below), so an object is never half-written or missing from
-- the index, even if the gateway dies mid-write. Reads of a list are one EVAL too (a
-- consistent snapshot of count and page).
--
-- A write whose EVAL got no reply within redis.commandTimeout may still run (Redis may be
-- slow, not gone): it answers 504 WRITE_TIMEOUT so the client knows to look before it
-- repeats a create (update, partial_update and remove are safe to repeat). A read that
-- times out stays 503 "redis timeout". A list without pageSize answers at most
-- redis.maxListSize objects, the first in id order.
--
-- Fields are checked here, not by the inputs pipeline, in DRF's order (see validate).
-- Handler-level options: objectPermissions (api.permissions.addObject) run on the loaded
-- object in retrieve, update, partial_update and remove; lookupField finds the object by
-- a field's value. An update or remove that loaded the object to decide passes it to its
-- write script, which writes only if it is unchanged (else the generic starts over).

local inputs = require("gateway.pipeline.inputs")
local permissions = require("gateway.pipeline.permissions")
local handlers = require("gateway.registry.handlers")

local M = {}

-- The lookup indexes (lookupField): for each field some handler on the resource uses as
-- its lookupField, P.."lookup:"..field is a sorted set (scores 0) of "<JSON value>\0<id
-- padded to 20 digits>", so a lexicographic range finds a value's objects in id order in
-- O(log n); P.."lookups" is a hash field -> "1" while that index is complete. Every write
-- script starts with ARGV: P, the count and names of the indexed fields of this load
-- (every lookupField of every handler on the resource), and keeps them up to date. A
-- write by a gateway that does not know an index (an older config, another node) drops
-- its "complete" mark instead, and the next lookup rebuilds it with one scan.
local INDEX = [=[
local P = ARGV[1]
local indexed = {}
for j = 1, tonumber(ARGV[2]) do indexed[j] = ARGV[2 + j] end
local base = 3 + #indexed
local function member(value, id)
  return value .. '\0' .. string.rep('0', 20 - #id) .. id
end
local function indexedValues(key)
  if #indexed == 0 then return {} end
  return redis.call('HMGET', key, unpack(indexed))
end
local function reindex(key, id, old)
  local mine = {}
  for j, f in ipairs(indexed) do
    mine[f] = true
    local new = redis.call('HGET', key, f)
    if old[j] ~= new then
      if old[j] then redis.call('ZREM', P .. 'lookup:' .. f, member(old[j], id)) end
      if new then redis.call('ZADD', P .. 'lookup:' .. f, 0, member(new, id)) end
    end
  end
  for _, f in ipairs(redis.call('HKEYS', P .. 'lookups')) do
    if not mine[f] then redis.call('HDEL', P .. 'lookups', f) end
  end
end
]=]

-- KEYS: id counter, index. ARGV: (INDEX), object key prefix, then field, JSON value pairs.
local CREATE = INDEX .. [[
local id = redis.call('INCR', KEYS[1])
local key = ARGV[base] .. id
redis.call('HSET', key, 'id', id, unpack(ARGV, base + 1))
redis.call('ZADD', KEYS[2], id, id)
reindex(key, tostring(id), {})
return redis.call('HGETALL', key)
]]

-- The check a careful write starts with (an update or remove that first loaded the object
-- to run object permissions or to find it by lookupField): the object must still be the
-- one that was loaded, hash entry for hash entry. ARGV[i] is the count of the flat list
-- that follows (0: no check). -> same, the index past the list.
local SAME = [=[
local function same(key, i)
  local n = tonumber(ARGV[i])
  if n == 0 then return true, i + 1 end
  local cur = redis.call('HGETALL', key)
  if #cur ~= n then return false, i + n + 1 end
  local seen = {}
  for j = 1, #cur, 2 do seen[cur[j]] = cur[j + 1] end
  for j = i + 1, i + n, 2 do
    if seen[ARGV[j]] ~= ARGV[j + 1] then return false, i + n + 1 end
  end
  return true, i + n + 1
end
]=]

-- KEYS: object, index. ARGV: (INDEX), id, clear ('1': a full update, whose omitted fields
-- become absent), the count and names of the readOnly fields a full update keeps, the
-- expected object (SAME), then field, JSON value pairs. An empty reply: no such object;
-- 0: the object changed since it was loaded.
local UPDATE = INDEX .. SAME .. [[
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local id, nkeep = ARGV[base], tonumber(ARGV[base + 2])
local ok, i = same(KEYS[1], base + 3 + nkeep)
if not ok then return 0 end
local old = indexedValues(KEYS[1])
local kept = {}
if ARGV[base + 1] == '1' then
  if nkeep > 0 then
    local values = redis.call('HMGET', KEYS[1], unpack(ARGV, base + 3, base + 2 + nkeep))
    for j = 1, nkeep do
      if values[j] then kept[#kept + 1] = ARGV[base + 2 + j]; kept[#kept + 1] = values[j] end
    end
  end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'id', id, unpack(kept))
if #ARGV >= i then redis.call('HSET', KEYS[1], unpack(ARGV, i)) end
redis.call('ZADD', KEYS[2], id, id)
reindex(KEYS[1], id, old)
return redis.call('HGETALL', KEYS[1])
]]

-- KEYS: object, index. ARGV: (INDEX), id, the expected object (SAME). 1 when it existed
-- and was deleted, 0 when it did not exist, -1 when it changed since it was loaded.
local DELETE = INDEX .. SAME .. [[
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if not same(KEYS[1], base + 1) then return -1 end
local old = indexedValues(KEYS[1])
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[base])
reindex(KEYS[1], ARGV[base], old)
return n
]]

-- KEYS: index. ARGV: P, field, then the JSON encodings that match. -> the hash of the
-- first object in id order whose field holds one of them, or {}. O(log n) with a complete
-- lookup index; builds it first when it is not (one scan of the resource, O(n)).
local FIND = [=[
local P, field = ARGV[1], ARGV[2]
local zkey = P .. 'lookup:' .. field
if redis.call('HGET', P .. 'lookups', field) ~= '1' then
  redis.call('DEL', zkey)
  local first = 0
  while true do
    local ids = redis.call('ZRANGE', KEYS[1], first, first + 999)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local v = redis.call('HGET', P .. 'obj:' .. id, field)
      if v then redis.call('ZADD', zkey, 0, v .. '\0' .. string.rep('0', 20 - #id) .. id) end
    end
    first = first + 1000
  end
  redis.call('HSET', P .. 'lookups', field, '1')
end
while true do
  local best, bestMember, bestValue
  for i = 3, #ARGV do
    local found = redis.call('ZRANGEBYLEX', zkey, '[' .. ARGV[i] .. '\0', '[' .. ARGV[i] .. '\0\255', 'LIMIT', 0, 1)
    if found[1] then
      local padded = string.sub(found[1], -20)
      if not best or padded < best then best, bestMember, bestValue = padded, found[1], ARGV[i] end
    end
  end
  if not best then return {} end
  local key = P .. 'obj:' .. string.match(best, '^0*(%d+)$')
  -- An entry the index kept for a value the object no longer holds is dropped.
  if redis.call('HGET', key, field) == bestValue then return redis.call('HGETALL', key) end
  redis.call('ZREM', zkey, bestMember)
end
]=]

-- KEYS: index. ARGV: object key prefix, first rank, last rank (-1: to the end).
-- -> { count, hash, hash, ... } in id order.
local PAGE = [[
local out = { redis.call('ZCARD', KEYS[1]) }
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3])) do
  local h = redis.call('HGETALL', ARGV[1] .. id)
  if #h > 0 then out[#out + 1] = h end
end
return out
]]

local NOT_FOUND = "Not found."
local INVALID_PAGE = "Invalid page."
local NOT_OBJECT = "data must be a JSON object"
local WRITE_TIMEOUT = "redis timeout: the write may have happened"
local CHANGED = "The object changed while this request ran; try again."
local RESERVED_FIELDS = { id = true, pk = true, page = true, payload = true }

-- The field rules' messages (Django REST Framework's wording), also read by the specs.
M.MESSAGES = {
  blank = "This field may not be blank.",
  integer = "A valid integer is required.",
  number = "A valid number is required.",
  boolean = "Must be a valid boolean.",
  string = "Not a valid string.",
  choice = '"%s" is not a valid choice.',
  changed = CHANGED,
}
local MSG = M.MESSAGES

-- A careful update or remove (see SAME) that finds the object changed loads it again and
-- starts over, at most this many times in all; then 409 CHANGED.
local WRITE_ATTEMPTS = 3

-- The rules a field may have; anything else is a load error (a typo such as `readonly`
-- must not pass silently).
local RULES = { required = true, default = true, formatter = true, validator = true,
  maxLength = true, minLength = true, blank = true, type = true, choices = true,
  readOnly = true, description = true }

local function isFinite(n)
  return n == n and n ~= math.huge and n ~= -math.huge
end

-- A number as its text: integral floats without ".0" (lua-cjson decodes 4 as 4.0).
local function textOf(n)
  return tostring(math.tointeger(n) or n)
end

-- utf8 length, or the byte length of an invalid string.
local function length(s)
  return utf8.len(s) or #s
end

local function trim(s)
  local first = s:find("%S")
  if not first then return "" end
  return s:sub(first, s:match(".*()%S"))
end

-- DRF's BooleanField.TRUE_VALUES / FALSE_VALUES (its strings, case as it lists them).
local TRUE = { t = true, T = true, y = true, Y = true, yes = true, Yes = true, YES = true,
  ["true"] = true, True = true, TRUE = true, on = true, On = true, ON = true, ["1"] = true }
local FALSE = { f = true, F = true, n = true, N = true, no = true, No = true, NO = true,
  ["false"] = true, False = true, FALSE = true, off = true, Off = true, OFF = true, ["0"] = true }

-- A decimal number's text (sign, digits with an optional point, optional exponent): what
-- Python's float() takes, less "nan", "inf" and "1_000"; Lua's hex forms are refused.
local function decimalText(s)
  local mantissa, exponent = s:match("^[+-]?([%d%.]+)([eE]?[+-]?%d*)$")
  if not mantissa then return false end
  if not (mantissa:match("^%d+%.?%d*$") or mantissa:match("^%.%d+$")) then return false end
  return exponent == "" or exponent:match("^[eE][+-]?%d+$") ~= nil
end

-- type -> function(value) -> true, the typed value | false. As DRF's fields convert.
local COERCE = {}

-- IntegerField: an integral number, or a string of one ("5", " -3 ", "5.0").
function COERCE.integer(v)
  if math.type(v) == "integer" then return true, v end
  if math.type(v) == "float" then
    local i = isFinite(v) and v == math.floor(v) and math.tointeger(v)
    if i then return true, i end
    return false
  end
  if type(v) ~= "string" or #v > 1000 then return false end
  local s = trim((v:gsub("%.0*%s*$", "", 1))) -- DRF strips a trailing ".0*" first
  if not s:match("^[+-]?%d+$") then return false end
  local i = math.tointeger(tonumber(s))
  if i == nil then return false end -- beyond 64 bits
  return true, i
end

-- FloatField: a finite number, or a string of a decimal number.
function COERCE.number(v)
  if type(v) == "number" then return isFinite(v), v end
  if type(v) ~= "string" or #v > 1000 then return false end
  local s = trim(v)
  if not decimalText(s) then return false end
  local n = tonumber(s)
  if n == nil or not isFinite(n) then return false end
  return true, n
end

-- BooleanField: true/false, 1/0, and DRF's strings.
function COERCE.boolean(v)
  if type(v) == "boolean" then return true, v end
  if v == 1 then return true, true end
  if v == 0 then return true, false end
  if TRUE[v] then return true, true end
  if FALSE[v] then return true, false end
  return false
end

-- CharField: a string, or a number taken as its text.
function COERCE.string(v)
  if type(v) == "string" then return true, v end
  if type(v) == "number" and isFinite(v) then return true, textOf(v) end
  return false
end
M.coerce = COERCE

-- A value as a choice compares it (DRF's str(data)): strings as they are, numbers as their
-- text, booleans as true/false; other values have no form and match no choice.
local function choiceForm(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return textOf(v) end
  if type(v) == "boolean" then return tostring(v) end
  return nil
end

-- A string empty or only whitespace (DRF's CharField trims before its blank check).
local function isBlank(v)
  return type(v) == "string" and not v:find("%S")
end

-- The length check of maxLength/minLength: a string (a number is taken as its text, like
-- DRF's CharField) of a fitting length; the message or nil.
local function lengthMessage(field, value)
  if type(value) == "number" then
    value = textOf(value)
  elseif type(value) ~= "string" then
    return MSG.string
  end
  local n = length(value)
  if field.maxLength and n > field.maxLength then
    return string.format("Ensure this field has no more than %d characters.", field.maxLength)
  end
  if field.minLength and n < field.minLength then
    return string.format("Ensure this field has at least %d characters.", field.minLength)
  end
  return nil
end

-- A present value through type, choices, lengths and the field's validators, in DRF's
-- order: (message) on the first failure, else (nil, the value to store).
local function checkValue(field, input, key, value, connection, action, json)
  local given = value
  if field.type then
    local ok, typed = COERCE[field.type](value)
    if not ok then return MSG[field.type] end
    value = typed
  end
  if field.choices then
    local form = choiceForm(value)
    local match
    for _, c in ipairs(field.choices) do
      if form ~= nil and choiceForm(c) == form then match = c break end
    end
    if match == nil then
      local shown = choiceForm(given)
      if shown == nil then
        local ok, text = pcall(json.encode, given)
        shown = ok and text or type(given)
      end
      return string.format(MSG.choice, shown)
    end
    if not field.type then value = match end
  end
  if field.maxLength or field.minLength then
    local message = lengthMessage(field, value)
    if message then return message end
  end
  local message = inputs.validate(input, key, value, connection, action)
  if message then return message end
  return nil, value
end

local function copy(value)
  if type(value) ~= "table" then return value end
  local out = {}
  for k, v in pairs(value) do out[copy(k)] = copy(v) end
  return setmetatable(out, getmetatable(value))
end

local function defaultOf(input, key, connection, action, value)
  if type(input.default) == "function" then return input.default(value, connection, action, key) end
  return copy(input.default)
end

local function ruleError(res, key, message)
  error(string.format('resource "%s" field "%s": %s', res, key, message), 0)
end

-- The load-time checks of one field's rules (raises naming the resource and the field).
local function checkRules(res, key, field)
  for rule in pairs(field) do
    if not RULES[rule] then
      ruleError(res, key, 'unknown rule "' .. tostring(rule) .. '" (required, default, formatter, '
        .. "validator, maxLength, minLength, blank, type, choices, readOnly, description)")
    end
  end
  for _, rule in ipairs({ "maxLength", "minLength" }) do
    local v = field[rule]
    if v ~= nil and (math.type(v) ~= "integer" or v < 0) then
      ruleError(res, key, rule .. " must be a non-negative integer")
    end
  end
  for _, rule in ipairs({ "blank", "readOnly" }) do
    if field[rule] ~= nil and type(field[rule]) ~= "boolean" then
      ruleError(res, key, rule .. " must be a boolean, got " .. type(field[rule]))
    end
  end
  if field.type ~= nil and not COERCE[field.type] then
    ruleError(res, key, 'unknown type "' .. tostring(field.type) .. '" (integer, number, boolean, string)')
  end
  if (field.maxLength or field.minLength) and field.type and field.type ~= "string" then
    ruleError(res, key, "maxLength and minLength apply to strings, not to type " .. field.type)
  end
  if field.choices ~= nil then
    local c = field.choices
    local count = 0
    if type(c) == "table" then for _ in pairs(c) do count = count + 1 end end
    if type(c) ~= "table" or count == 0 or count ~= #c then
      ruleError(res, key, "choices must be a non-empty list")
    end
    for _, v in ipairs(c) do
      if type(v) ~= "string" and type(v) ~= "boolean" and not (type(v) == "number" and isFinite(v)) then
        ruleError(res, key, "choices must be strings, numbers or booleans, got " .. type(v))
      end
    end
  end
  if field.readOnly and field.required then
    ruleError(res, key, "a readOnly field cannot be required (clients cannot give it)")
  end
end

local function handlerError(res, message)
  error('resource "' .. res .. '": ' .. message, 0)
end

-- The compiled resource of a handler (once per handler table), or raises a load error.
-- Handler-level options (objectPermissions, lookupField) are read here too: two handlers
-- may share a resource name with different options.
local compiled = setmetatable({}, { __mode = "k" })
-- The lookup-indexed fields of each resource name, per load: every handler of one load
-- on a resource keeps the union of their lookupFields indexed. A load is told by its
-- api.permissions table (each load makes a new one).
local indexedByLoad = setmetatable({}, { __mode = "k" })
-- Per load, resource name -> { on = true } once some handler or consumer of the load
-- lists "subscribe" for it: then its writes are announced (gateway.services.live).
local liveByLoad = setmetatable({}, { __mode = "k" })

-- The instance routes a push can name (live resources): the templates of the handler's
-- patterns that capture the lookup param, or of a consumer's URL pattern (as a path with
-- its leading "/"); and the names of their groups.
local function instanceTemplates(handler, lookupParam)
  local patterns, slash = handler.routes, ""
  if type(handler.consumer) == "string" then
    patterns = { handler.consumer }
    local c = handler.consumer
    if c:sub(1, 2) ~= "^/" and c:sub(1, 1) ~= "/" then slash = "/" end
  end
  local templates, groups = {}, {}
  for _, pattern in ipairs(type(patterns) == "table" and patterns or {}) do
    local t = handlers.routeTemplate(pattern)
    if t and handlers.templateHas(t, lookupParam) then
      if slash ~= "" then table.insert(t, 1, slash) end
      templates[#templates + 1] = t
      for _, part in ipairs(t) do
        if type(part) == "table" then groups[part.group] = true end
      end
    end
  end
  return templates, groups
end

local function compile(handler)
  if compiled[handler] then return compiled[handler] end
  local r = handler.resource
  if type(r) ~= "table" then error("a handler with generics needs a 'resource' table", 0) end
  if type(r.name) ~= "string" or not r.name:match("^[%w_%-%.]+$") then
    error("resource.name must be a non-empty string of letters, digits, _ - and .", 0)
  end
  if type(r.fields) ~= "table" then handlerError(r.name, "fields must be a table") end
  local keys, fields, readOnlyKeys = {}, {}, {}
  local def = { name = "resource " .. r.name, inputs = {} }
  for key, field in pairs(r.fields) do
    if type(key) ~= "string" then handlerError(r.name, "field names must be strings") end
    if RESERVED_FIELDS[key] then handlerError(r.name, 'field name "' .. key .. '" is reserved') end
    if type(field) ~= "table" then
      error('resource "' .. r.name .. '" field "' .. key .. '" must be a table', 0)
    end
    checkRules(r.name, key, field)
    fields[key] = field
    def.inputs[key] = { required = field.required, default = field.default,
      formatter = field.formatter, validator = field.validator }
    keys[#keys + 1] = key
    if field.readOnly then readOnlyKeys[#readOnlyKeys + 1] = key end
  end
  table.sort(keys)
  table.sort(readOnlyKeys)
  if r.pageSize ~= nil and (math.type(r.pageSize) ~= "integer" or r.pageSize < 1) then
    handlerError(r.name, "pageSize must be a positive integer")
  end
  local api = rawget(_G, "api")
  local ok, err = pcall(inputs.compile, def, api)
  if not ok then handlerError(r.name, tostring(err)) end

  local objectPermissions = handler.objectPermissions or {}
  if type(objectPermissions) ~= "table" then handlerError(r.name, "objectPermissions must be a list of names") end
  for i, name in pairs(objectPermissions) do
    if math.type(i) ~= "integer" or type(name) ~= "string" or name == "" then
      handlerError(r.name, "objectPermissions must be a list of names")
    end
  end
  local lookupField = handler.lookupField
  if lookupField ~= nil then
    if type(lookupField) ~= "string" then handlerError(r.name, "lookupField must be a field name") end
    if lookupField == "pk" or lookupField == "id" then
      lookupField = nil -- by id, as without it (the param of that name)
    elseif not fields[lookupField] then
      handlerError(r.name, 'lookupField "' .. lookupField .. '" is not one of its fields')
    end
  end
  local res = {
    name = r.name, keys = keys, fields = fields, def = def, readOnlyKeys = readOnlyKeys,
    pageSize = r.pageSize, objectPermissions = objectPermissions,
    lookupField = lookupField, lookupParam = handler.lookupField or "pk",
    -- The object permissions registered by this load's files (api.permissions is replaced
    -- by each load; the loader checks the names once every file has run).
    objectRegistry = api and api.permissions and api.permissions.objects,
  }
  local load = api and api.permissions or M
  indexedByLoad[load] = indexedByLoad[load] or {}
  local indexed = indexedByLoad[load][r.name] or {}
  indexedByLoad[load][r.name] = indexed
  if lookupField and not indexed[lookupField] then
    indexed[lookupField] = true
    indexed[#indexed + 1] = lookupField
    table.sort(indexed)
  end
  res.indexed = indexed
  liveByLoad[load] = liveByLoad[load] or {}
  local live = liveByLoad[load][r.name] or { on = false }
  liveByLoad[load][r.name] = live
  for _, g in ipairs(type(handler.generics) == "table" and handler.generics or {}) do
    if g == "subscribe" then live.on = true end
  end
  res.live = live
  res.templates, res.templateGroups = instanceTemplates(handler, res.lookupParam)
  -- An update or remove compares the object it writes with the one it loaded when the
  -- load decided something (a permission, or which object a lookupField names).
  res.careful = #objectPermissions > 0 or lookupField ~= nil
  compiled[handler] = res
  return res
end

-- Key prefix of a resource, from the config of the running gateway (fixed for the
-- process: a reload reloads the files, not the config), worked out once per handler.
local function prefix(api, res)
  local p = res.prefix
  if not p then
    p = tostring(api.config.redis.prefix or "") .. "resource:" .. res.name .. ":"
    res.prefix = p
  end
  return p
end

-- A hash reply (flat field, value list) as the object: id a number, fields decoded, every
-- declared field present (null when it has no value).
local function toObject(api, res, flat)
  local obj = {}
  for i = 1, #flat, 2 do
    local k, v = flat[i], flat[i + 1]
    if k == "id" then
      obj.id = math.tointeger(tonumber(v)) or v
    elseif res.fields[k] then
      local ok, value = pcall(api.json.decode, v)
      if ok then obj[k] = value else obj[k] = v end -- `ok and value or v` turns false into "false"
    end
  end
  for _, k in ipairs(res.keys) do
    if obj[k] == nil then obj[k] = api.json.null end
  end
  return obj
end

local function fail(data, status, message)
  data.status = status
  data.error = { message = message, status = status }
  data.errors = { message }
end

-- A pk as an integer id string, or nil (answered 404).
local function idOf(pk)
  if type(pk) == "number" then pk = tostring(math.tointeger(pk) or pk) end
  if type(pk) ~= "string" or not pk:match("^%d+$") or #pk > 18 then return nil end
  return pk
end

-- The stored (JSON) forms a lookupField value matches, taking the field's type into
-- account: "5" from a URL finds an integer field's 5. nil when nothing can match.
local function lookupForms(api, field, value)
  if value == nil or type(value) == "table" then return nil end
  local forms = {}
  local function add(v)
    local ok, text = pcall(api.json.encode, v)
    if ok then forms[#forms + 1] = text end
  end
  if field.type then
    local ok, typed = COERCE[field.type](value)
    if not ok then return nil end
    add(typed)
    if type(typed) == "number" then add(math.tointeger(typed) or (typed + 0.0)) end
  else
    -- A field without a type holds what clients sent: the text, or the number it spells.
    add(value)
    if type(value) == "string" and decimalText(value) then
      local n = tonumber(value)
      if n and isFinite(n) then add(n) end
    elseif type(value) == "number" then
      add(textOf(value))
    end
  end
  return forms
end

-- eval(api, script, keys, args): one EVAL.
local function eval(api, script, keys, args)
  local argv = { script, #keys }
  for _, k in ipairs(keys) do argv[#argv + 1] = k end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return api.redis.call("EVAL", table.unpack(argv))
end

-- The object the request names (by `pk`, or by the handler's lookupField): (id, flat
-- hash), or nil.
local function find(api, res, data)
  local p = prefix(api, res)
  local value = data.params[res.lookupParam]
  if not res.lookupField then
    local id = idOf(value)
    local flat = id and api.redis.call("HGETALL", p .. "obj:" .. id)
    if not flat or #flat == 0 then return nil end
    return id, flat
  end
  local forms = lookupForms(api, res.fields[res.lookupField], value)
  if not forms or #forms == 0 then return nil end
  local args = { p, res.lookupField }
  for _, f in ipairs(forms) do args[#args + 1] = f end
  local flat = eval(api, FIND, { p .. "index" }, args)
  if #flat == 0 then return nil end
  for i = 1, #flat, 2 do
    if flat[i] == "id" then return flat[i + 1], flat end
  end
  return nil
end

-- Run the handler's object permissions on the loaded object: true, or false with the
-- denial set on data (403, or the permission's reason).
local function objectAllowed(api, res, data, obj)
  if #res.objectPermissions == 0 then return true end
  local registry = res.objectRegistry or api.permissions.objects
  local message, status = permissions.check(registry, res.objectPermissions, data, obj)
  if not message then return true end
  fail(data, status, message)
  return false
end

-- Missing as the inputs pipeline says (general.missingParamChecks), except that "" given to
-- an integer, number or boolean field is a value, and an invalid one (DRF's fields).
local function isMissing(value, opts, field)
  if value == nil then return opts.missing["nil"] == true end
  if value == opts.null then return opts.missing["null"] == true end
  if value == "" then return opts.missing[""] == true and (field.type or "string") == "string" end
  return false
end

-- Every field's rules on the request's params, in DRF's order: readOnly fields ignored
-- (their default on create), then per field: blank, missing -> default, formatters,
-- blank again, required, type, choices, lengths, validators. `mode` is "create", "update"
-- (every writable field) or "partial" (only the given ones, no defaults). Returns the
-- values to store, or nil with data.error set (422 in the input-failure shape; 400 for
-- data that is not an object).
local function validate(api, opts, res, data, mode)
  local params = data.params
  if params.payload ~= nil then
    fail(data, 400, NOT_OBJECT)
    return nil
  end
  local values, failures = {}, {}
  local connection, action = data.connection, res.def
  for _, key in ipairs(res.keys) do
    local field, input = res.fields[key], res.def.inputs[key]
    local value = params[key]
    local message, required
    if field.readOnly then
      value = nil
      if mode == "create" and field.default ~= nil then
        value = defaultOf(input, key, connection, action, nil)
      end
    elseif mode ~= "partial" or value ~= nil then
      if field.blank == false and isBlank(value) then
        message = MSG.blank
      else
        if isMissing(value, opts, field) and mode ~= "partial" and input.default ~= nil then
          value = defaultOf(input, key, connection, action, value)
        end
        if not isMissing(value, opts, field) then
          for _, formatter in ipairs(input._formatters) do
            value = formatter(value, connection, action, key)
          end
        end
        if field.blank == false and isBlank(value) then
          message = MSG.blank
        elseif isMissing(value, opts, field) then
          if field.required then
            message, required = key .. " is a required parameter for this action", true
          end
        else
          message, value = checkValue(field, input, key, value, connection, action, api.json)
        end
      end
    end
    values[key] = value
    if message then failures[#failures + 1] = { key = key, message = message, required = required } end
  end
  if #failures > 0 then
    -- The envelope renders `inputs` as [{"field": [...]}]; over HTTP the body's `errors`
    -- is data.errors, given the same shape here.
    data.error = { message = failures[1].message, status = 422, inputs = failures }
    data.errors = { inputs.messagesByField(failures) }
    return nil
  end
  return values
end

-- The options for the field checks: the gateway's missing checks and JSON null (the
-- config is fixed for the process: worked out once per handler).
local function inputOpts(api, res)
  if res.opts then return res.opts end
  local checks = {}
  for _, c in ipairs(api.config.general.missingParamChecks) do checks[c] = true end
  res.opts = { missing = checks, null = api.json.null }
  return res.opts
end

-- The field, JSON value pairs to store (fields without a value are left out).
local function pairsToStore(api, values, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = values[k]
    if v ~= nil then
      out[#out + 1] = k
      out[#out + 1] = api.json.encode(v)
    end
  end
  return out
end

-- eval for a write: a timeout is raised as 504 WRITE_TIMEOUT (the write is in doubt);
-- every other failure as it came.
local function write(api, script, keys, args)
  local ok, result = pcall(eval, api, script, keys, args)
  if ok then return result end
  if type(result) == "table" and result.message == "redis timeout" then
    error({ status = 504, message = WRITE_TIMEOUT }, 0)
  end
  error(result, 0)
end

-- The first arguments of every write script (INDEX): the key prefix and the indexed
-- fields of the resource.
local function indexArgs(p, res)
  local args = { p, #res.indexed }
  for i, f in ipairs(res.indexed) do args[2 + i] = f end
  return args
end

-- Appends the expected object (SAME's count and flat list) to args: the loaded hash when
-- the write is careful, else nothing to compare.
local function expect(args, res, flat)
  if not res.careful then
    args[#args + 1] = 0
    return
  end
  args[#args + 1] = #flat
  for _, v in ipairs(flat) do args[#args + 1] = v end
end

-- Resources whose unpaged list was cut to redis.maxListSize (logged once each).
local truncatedLogged = {}

-- Live resources: announce a write to the subscribers of the resource, wherever they are
-- (api.resources, gateway.services.live), when some handler of this load lists
-- "subscribe" for it. A failed announce (Redis unreachable) is logged; the write stands.
local function announce(api, res, action, id, object)
  if not res.live.on then return end
  local resources = api.resources
  if not resources then return end
  local ok, sent, reason = pcall(resources.notify, res.name, id, action, object)
  if not ok or not sent then
    api.log(string.format('resource "%s": the %s of %s was not announced to subscribers: %s',
      res.name, action, tostring(id), tostring(ok and reason or sent)), "warning")
  end
end

-- The route of a push for subscription `sub`: the first instance template whose groups
-- all have a value (the lookup param: the object's id, or its lookupField value; "pk" and
-- "id": the id; another group: the object's field of that name, else the value the
-- subscription's route or URL kwargs gave it); else the route it subscribed on.
local function pushRoute(res, sub, object, id)
  local null = sub.null
  local function valueOf(name)
    if name == res.lookupParam and res.lookupField then
      local v = object and object[res.lookupField]
      if v ~= null then return v end
      return nil
    end
    if name == res.lookupParam or name == "pk" or name == "id" then return id end
    local v = object and object[name]
    if v ~= nil and v ~= null and type(v) ~= "table" then return v end
    return sub.params[name]
  end
  for _, t in ipairs(res.templates) do
    local route = handlers.buildRoute(t, valueOf)
    if route then return route end
  end
  return sub.route
end

-- subscribe and unsubscribe: an instance when the request names one (its route's lookup
-- group, or a consumer's URL kwarg), else the collection.
local function subscription(api, res, data)
  local value = data.params[res.lookupParam]
  if value == api.json.null or value == "" then value = nil end
  if type(value) == "table" then value = nil end
  local key = value ~= nil and ("i" .. tostring(value)) or "c"
  return value, key
end

local IMPL = {}

function IMPL.subscribe(res)
  return {
    run = function(api, data)
      local value, key = subscription(api, res, data)
      local sub = { resource = res.name, key = key, null = api.json.null, params = {},
        route = (data.route or ""):match("^[^?]*") }
      for name in pairs(res.templateGroups) do
        local v = data.params[name]
        if type(v) == "string" or type(v) == "number" then sub.params[name] = v end
      end
      local answer = { subscribed = true }
      if value ~= nil then
        local id, flat = find(api, res, data)
        if not id then return fail(data, 404, NOT_FOUND) end
        local obj = toObject(api, res, flat)
        if res.objectPermissions[1] and not objectAllowed(api, res, data, obj) then return end
        sub.id = id
        answer.id = obj.id
        answer.route = pushRoute(res, sub, obj, id)
      else
        answer.route = sub.route
      end
      if res.objectPermissions[1] then
        local registry = res.objectRegistry or api.permissions.objects
        local check = { connection = data.connection, params = data.params, action = data.action,
          route = data.route }
        sub.allowed = function(object)
          if object == nil then return true end -- a remove that did not load the object
          return permissions.check(registry, res.objectPermissions, check, object) == nil
        end
      end
      sub.routeOf = function(object, id) return pushRoute(res, sub, object, id) end
      local ok, message, status = api.resources._subscribe(data.connection, sub)
      if not ok then return fail(data, status, message) end
      data.response = answer
    end,
  }
end

-- Always 200: unsubscribing what is not subscribed changes nothing (as a repeated
-- remove of a subscription would). The object is not loaded: it may be gone.
function IMPL.unsubscribe(res)
  return {
    run = function(api, data)
      local _, key = subscription(api, res, data)
      api.resources._unsubscribe(data.connection, res.name, key)
      data.response = { subscribed = false, route = (data.route or ""):match("^[^?]*") }
    end,
  }
end

function IMPL.create(res)
  return {
    inputs = "fields",
    run = function(api, data)
      local values = validate(api, inputOpts(api, res), res, data, "create")
      if not values then return end
      local p = prefix(api, res)
      local args = indexArgs(p, res)
      args[#args + 1] = p .. "obj:"
      for _, v in ipairs(pairsToStore(api, values, res.keys)) do args[#args + 1] = v end
      local flat = write(api, CREATE, { p .. "id", p .. "index" }, args)
      data.response = toObject(api, res, flat)
      data.status = 201
      announce(api, res, "create", data.response.id, data.response)
    end,
  }
end

function IMPL.retrieve(res)
  return {
    run = function(api, data)
      local _, flat = find(api, res, data)
      if not flat then return fail(data, 404, NOT_FOUND) end
      local obj = toObject(api, res, flat)
      if res.objectPermissions[1] and not objectAllowed(api, res, data, obj) then return end
      data.response = obj
    end,
  }
end

-- update and partial_update: load the object (404), run the object permissions (403),
-- validate (422), write. A careful write that finds the object changed starts over.
local function updater(partial)
  return function(res)
    return {
      inputs = "fields",
      run = function(api, data)
        local p = prefix(api, res)
        local values
        for _ = 1, WRITE_ATTEMPTS do
          local id, flat = find(api, res, data)
          if not id then return fail(data, 404, NOT_FOUND) end
          if not objectAllowed(api, res, data, toObject(api, res, flat)) then return end
          if not values then
            values = validate(api, inputOpts(api, res), res, data, partial and "partial" or "update")
            if not values then return end
          end
          local args = indexArgs(p, res)
          for _, v in ipairs({ id, partial and "0" or "1", #res.readOnlyKeys }) do args[#args + 1] = v end
          for _, k in ipairs(res.readOnlyKeys) do args[#args + 1] = k end
          expect(args, res, flat)
          for _, v in ipairs(pairsToStore(api, values, res.keys)) do args[#args + 1] = v end
          local reply = write(api, UPDATE, { p .. "obj:" .. id, p .. "index" }, args)
          if type(reply) == "table" then
            if #reply == 0 then return fail(data, 404, NOT_FOUND) end
            data.response = toObject(api, res, reply)
            announce(api, res, partial and "partial_update" or "update", id, data.response)
            return
          end
        end
        return fail(data, 409, CHANGED)
      end,
    }
  end
end
IMPL.update = updater(false)
IMPL.partial_update = updater(true)

function IMPL.remove(res)
  return {
    run = function(api, data)
      local p = prefix(api, res)
      for _ = 1, WRITE_ATTEMPTS do
        local id, flat
        if res.careful then
          id, flat = find(api, res, data)
          if not id then return fail(data, 404, NOT_FOUND) end
          if not objectAllowed(api, res, data, toObject(api, res, flat)) then return end
        else
          id = idOf(data.params.pk)
          if not id then return fail(data, 404, NOT_FOUND) end
        end
        local args = indexArgs(p, res)
        args[#args + 1] = id
        expect(args, res, flat)
        local n = write(api, DELETE, { p .. "obj:" .. id, p .. "index" }, args)
        if n == 0 then return fail(data, 404, NOT_FOUND) end
        if n == 1 then
          data.body = api.json.null -- no body; data.response stays an object (see processor)
          data.status = 204
          announce(api, res, "remove", id, flat and toObject(api, res, flat) or nil)
          return
        end
      end
      return fail(data, 409, CHANGED)
    end,
  }
end
IMPL.destroy = IMPL.remove

-- The page number asked for: a positive integer, "last", or nil (invalid).
local function pageNumber(value)
  if value == nil or value == "" then return 1 end
  local n = tonumber(value)
  if not n or math.type(n) == "float" and n ~= math.floor(n) then return nil end
  n = math.tointeger(n)
  if not n or n < 1 then return nil end
  return n
end

function IMPL.list(res)
  return {
    inputs = { page = {} },
    run = function(api, data)
      local p = prefix(api, res)
      local size = res.pageSize
      local empty = api.json.empty_array
      local function objects(reply)
        local list = {}
        for i = 2, #reply do list[#list + 1] = toObject(api, res, reply[i]) end
        if #list == 0 then return empty end
        return list
      end
      if not size then
        local max = math.tointeger(api.config.redis.maxListSize) or 1000
        local reply = eval(api, PAGE, { p .. "index" }, { p .. "obj:", 0, max - 1 })
        if reply[1] > max and not truncatedLogged[res.name] then
          truncatedLogged[res.name] = true
          api.log(string.format('resource "%s": list answers the first %d of %d objects '
            .. "(redis.maxListSize); give the resource a pageSize to page through all of them",
            res.name, max, reply[1]), "warning")
        end
        -- An array: the body itself, so middleware's fields cannot turn it into an object.
        data.body = objects(reply)
        return
      end
      local pageParam = data.params.page
      if pageParam == api.json.null then pageParam = nil end
      -- The page is read with its count in one script; "last" needs the count first.
      local n = pageNumber(pageParam)
      if pageParam == "last" then
        local count = api.redis.call("ZCARD", p .. "index")
        n = math.max(1, (count + size - 1) // size)
      end
      if not n then return fail(data, 404, INVALID_PAGE) end
      local first = (n - 1) * size
      local reply = eval(api, PAGE, { p .. "index" }, { p .. "obj:", first, first + size - 1 })
      local count = reply[1]
      local pages = math.max(1, (count + size - 1) // size)
      if n > pages then return fail(data, 404, INVALID_PAGE) end
      local base = (data.route or ""):match("^[^?]*")
      local null = api.json.null
      data.response = {
        count = count,
        next = n < pages and (base .. "?page=" .. (n + 1)) or null,
        previous = n > 1 and (base .. "?page=" .. (n - 1)) or null,
        results = objects(reply),
      }
    end,
  }
end

-- generics[name](handler, name) -> an action definition, or nil and a load error.
M.generics = setmetatable({}, {
  __index = function(_, name)
    local make = IMPL[name]
    if not make then return nil end
    return function(handler)
      local ok, res = pcall(compile, handler)
      if not ok then return nil, res end
      local def = make(res)
      def.name = name
      def.description = "generic " .. name .. " of resource " .. res.name
      if def.inputs == "fields" then
        -- Declared so the processor keeps them (it scrubs undeclared params) but checked
        -- by the generic itself: required and defaults differ between create and
        -- partial_update. `payload` is where a non-object JSON body lands over HTTP.
        def.inputs = { payload = {} }
        for _, k in ipairs(res.keys) do def.inputs[k] = {} end
      end
      return def
    end
  end,
})

return M
