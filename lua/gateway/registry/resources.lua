-- The Redis-backed generic handlers of SPEC §6 (rest_framework_channels generics):
-- retrieve, list, create, update, partial_update, remove/destroy on a handler's
-- `resource = { name, fields, pageSize }`. The loader hands `M.generics` to
-- handlers.compile, which asks `generics[name](handler, name)` for an action definition.
--
-- Keys (SPEC §9), P = redis.prefix .. "resource:<name>:":
--   P.."id"        string  the id counter (INCR)
--   P.."index"     zset    member = id, score = id: the ordered index
--   P.."obj:"..id  hash    "id" -> the id, and one entry per field holding its value
--                          JSON-encoded (a field without a value has no entry)
-- Every write is one EVAL (below), so an object is never half-written or missing from
-- the index, even if the gateway dies mid-write. Reads of a list are one EVAL too (a
-- consistent snapshot of count and page).
--
-- A write whose EVAL got no reply within redis.commandTimeout may still run (Redis may be
-- slow, not gone): it answers 504 WRITE_TIMEOUT so the client knows to look before it
-- repeats a create (update, partial_update and remove are safe to repeat). A read that
-- times out stays 503 "redis timeout". A list without pageSize answers at most
-- redis.maxListSize objects, the first in id order.

local inputs = require("gateway.pipeline.inputs")

local M = {}

-- KEYS: id counter, index. ARGV: object key prefix, then field, JSON value pairs.
local CREATE = [[
local id = redis.call('INCR', KEYS[1])
local key = ARGV[1] .. id
redis.call('HSET', key, 'id', id, unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], id, id)
return redis.call('HGETALL', key)
]]

-- KEYS: object, index. ARGV: id, then field, JSON value pairs; ARGV[2] == '1' clears the
-- fields first (a full update whose omitted optional fields become absent). An empty
-- reply: no such object.
local UPDATE = [[
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'id', ARGV[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
]]

-- KEYS: object, index. ARGV: id. 1 when it existed.
local DELETE = [[
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
]]

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
local RESERVED_FIELDS = { id = true, pk = true, page = true, payload = true }

-- utf8 length, or the byte length of an invalid string.
local function length(s)
  return utf8.len(s) or #s
end

-- The check run before a field's own validators when it has maxLength or minLength: a
-- string (a number is taken as its text, like DRF's CharField) of a fitting length.
local function lengthCheck(field)
  local maxLength, minLength = field.maxLength, field.minLength
  return function(value, connection, action, key)
    if type(value) == "number" then
      value = tostring(math.tointeger(value) or value)
    elseif type(value) ~= "string" then
      return "Not a valid string."
    end
    local n = length(value)
    if maxLength and n > maxLength then
      return string.format("Ensure this field has no more than %d characters.", maxLength)
    end
    if minLength and n < minLength then
      return string.format("Ensure this field has at least %d characters.", minLength)
    end
    return true
  end
end


-- The inputs-pipeline definition of a resource's fields: each field's rules plus the
-- length check first; `partial` drops defaults (only the given fields are processed, so
-- `required` only refuses a given field that is empty).
local function fieldAction(res, partial, api)
  local def = { name = "resource " .. res.name, inputs = {} }
  for key, field in pairs(res.fields) do
    local input = {}
    for k, v in pairs(field) do input[k] = v end
    local steps = {}
    if field.maxLength or field.minLength then steps[1] = lengthCheck(field) end
    local v = field.validator
    if type(v) == "table" and not inputs.isCallable(v) then
      for _, s in ipairs(v) do steps[#steps + 1] = s end
    elseif v ~= nil then
      steps[#steps + 1] = v
    end
    input.validator = steps
    input.maxLength, input.minLength = nil, nil
    if partial then input.default = nil end
    def.inputs[key] = input
  end
  inputs.compile(def, api)
  return def
end

local function checkLength(name, key, value)
  if value ~= nil and (math.type(value) ~= "integer" or value < 0) then
    error(string.format('resource "%s" field "%s": %s must be a non-negative integer', name, key, "'" .. value .. "'"), 0)
  end
end

-- The compiled resource of a handler (once per handler table), or raises a load error.
local compiled = setmetatable({}, { __mode = "k" })
local function compile(handler)
  if compiled[handler] then return compiled[handler] end
  local r = handler.resource
  if type(r) ~= "table" then error("a handler with generics needs a 'resource' table", 0) end
  if type(r.name) ~= "string" or not r.name:match("^[%w_%-%.]+$") then
    error("resource.name must be a non-empty string of letters, digits, _ - and .", 0)
  end
  if type(r.fields) ~= "table" then error('resource "' .. r.name .. '": fields must be a table', 0) end
  local keys = {}
  for key, field in pairs(r.fields) do
    if type(key) ~= "string" then error('resource "' .. r.name .. '": field names must be strings', 0) end
    if RESERVED_FIELDS[key] then
      error('resource "' .. r.name .. '": field name "' .. key .. '" is reserved', 0)
    end
    if type(field) ~= "table" then
      error('resource "' .. r.name .. '" field "' .. key .. '" must be a table', 0)
    end
    if field.maxLength ~= nil and math.type(field.maxLength) ~= "integer" then
      error('resource "' .. r.name .. '" field "' .. key .. '": maxLength must be a non-negative integer', 0)
    end
    if field.minLength ~= nil and math.type(field.minLength) ~= "integer" then
      error('resource "' .. r.name .. '" field "' .. key .. '": minLength must be a non-negative integer', 0)
    end
    checkLength(r.name, key, field.maxLength)
    checkLength(r.name, key, field.minLength)
    keys[#keys + 1] = key
  end
  table.sort(keys)
  if r.pageSize ~= nil and (math.type(r.pageSize) ~= "integer" or r.pageSize < 1) then
    error('resource "' .. r.name .. '": pageSize must be a positive integer', 0)
  end
  local api = rawget(_G, "api")
  local ok, full = pcall(fieldAction, r, false, api)
  if not ok then error('resource "' .. r.name .. '": ' .. tostring(full), 0) end
  local partial = fieldAction(r, true, api)
  local res = { name = r.name, keys = keys, full = full, partial = partial, pageSize = r.pageSize }
  compiled[handler] = res
  return res
end

-- Key prefix of a resource, from the config of the running gateway.
local function prefix(api, res)
  return tostring(api.config.redis.prefix or "") .. "resource:" .. res.name .. ":"
end

-- A hash reply (flat field, value list) as the object: id a number, fields decoded, every
-- declared field present (null when it has no value).
local function toObject(api, res, flat)
  local obj = {}
  for i = 1, #flat, 2 do
    local k, v = flat[i], flat[i + 1]
    if k == "id" then
      obj.id = math.tointeger(tonumber(v)) or v
    elseif res.full.inputs[k] then
      local ok, value = pcall(api.json.decode, v)
      obj[k] = ok and value or v
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

-- The pk of the request as an integer id, or nil (answered 404).
local function pkOf(data)
  local pk = data.params.pk
  if type(pk) == "number" then pk = tostring(math.tointeger(pk) or pk) end
  if type(pk) ~= "string" or not pk:match("^%d+$") or #pk > 18 then return nil end
  return pk
end

-- Run the fields pipeline on the request's params; (values) or nil with data.error set
-- (422, the input-failure shape). `partial` limits it to the given fields, without
-- defaults.
local function validate(api, opts, res, data, partial)
  local params = data.params
  if params.payload ~= nil then
    fail(data, 400, NOT_OBJECT)
    return nil
  end
  local values = {}
  for _, k in ipairs(res.keys) do values[k] = params[k] end
  local def = res.full
  if partial then
    local given = {}
    for _, k in ipairs(res.keys) do
      if params[k] ~= nil then given[#given + 1] = k end
    end
    def = { name = res.partial.name, inputs = res.partial.inputs, _inputKeys = given }
  end
  local failures = inputs.process(def, values, data.connection, opts)
  if failures then
    -- The envelope renders `inputs` as [{"field": [...]}]; over HTTP the body's `errors`
    -- is data.errors, given the same shape here.
    data.error = { message = failures[1].message, status = 422, inputs = failures }
    data.errors = { inputs.messagesByField(failures) }
    return nil
  end
  return values
end

-- The options for inputs.process: the gateway's missing checks and JSON null.
local function inputOpts(api)
  local checks = {}
  for _, c in ipairs(api.config.general.missingParamChecks) do checks[c] = true end
  return { missing = checks, null = api.json.null }
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

local function eval(api, script, keys, args)
  local argv = { script, #keys }
  for _, k in ipairs(keys) do argv[#argv + 1] = k end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return api.redis.call("EVAL", table.unpack(argv))
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

-- Resources whose unpaged list was cut to redis.maxListSize (logged once each).
local truncatedLogged = {}

local IMPL = {}

function IMPL.create(res)
  return {
    inputs = "fields",
    run = function(api, data)
      local values = validate(api, inputOpts(api), res, data, false)
      if not values then return end
      local p = prefix(api, res)
      local args = { p .. "obj:" }
      for _, v in ipairs(pairsToStore(api, values, res.keys)) do args[#args + 1] = v end
      local flat = write(api, CREATE, { p .. "id", p .. "index" }, args)
      data.response = toObject(api, res, flat)
      data.status = 201
    end,
  }
end

function IMPL.retrieve(res)
  return {
    run = function(api, data)
      local pk = pkOf(data)
      local flat = pk and api.redis.call("HGETALL", prefix(api, res) .. "obj:" .. pk)
      if not flat or #flat == 0 then return fail(data, 404, NOT_FOUND) end
      data.response = toObject(api, res, flat)
    end,
  }
end

local function updater(partial)
  return function(res)
    return {
      inputs = "fields",
      run = function(api, data)
        local pk = pkOf(data)
        if not pk then return fail(data, 404, NOT_FOUND) end
        local p = prefix(api, res)
        -- A missing object is 404 before its fields are validated (DRF's order).
        if api.redis.call("EXISTS", p .. "obj:" .. pk) == 0 then return fail(data, 404, NOT_FOUND) end
        local values = validate(api, inputOpts(api), res, data, partial)
        if not values then return end
        local args = { pk, partial and "0" or "1" }
        for _, v in ipairs(pairsToStore(api, values, res.keys)) do args[#args + 1] = v end
        local flat = write(api, UPDATE, { p .. "obj:" .. pk, p .. "index" }, args)
        if #flat == 0 then return fail(data, 404, NOT_FOUND) end
        data.response = toObject(api, res, flat)
      end,
    }
  end
end
IMPL.update = updater(false)
IMPL.partial_update = updater(true)

function IMPL.remove(res)
  return {
    run = function(api, data)
      local pk = pkOf(data)
      if not pk then return fail(data, 404, NOT_FOUND) end
      local p = prefix(api, res)
      local n = write(api, DELETE, { p .. "obj:" .. pk, p .. "index" }, { pk })
      if n == 0 then return fail(data, 404, NOT_FOUND) end
      data.body = api.json.null -- no body; data.response stays an object (see processor)
      data.status = 204
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
