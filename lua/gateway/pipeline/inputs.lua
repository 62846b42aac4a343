-- The inputs pipeline of SPEC §3.3: default -> formatter -> validator -> required for each
-- declared input. compile() resolves formatter and validator names once at load time;
-- process() runs on every request. Scrubbing undeclared params, turning failures into
-- responses and turning raised errors into a 500 are left to the action processor.

local builtinValidators = require("gateway.pipeline.validators")
local builtinFormatters = require("gateway.pipeline.formatters")

local inputs = {}

-- Compile --------------------------------------------------------------------------------

local function actionName(action)
  return tostring(action.name or "?")
end

local function fail(action, key, message)
  error(string.format('Action %s input "%s": %s', actionName(action), key, message), 0)
end

-- The kinds of step an input can declare, with the table each one's names are looked up in.
local KINDS = {
  validator = { field = "validator", private = "_validators", api = "validators",
                builtin = builtinValidators },
  formatter = { field = "formatter", private = "_formatters", api = "formatters",
                builtin = builtinFormatters },
}

-- The factories (minLength, ...) of a validators table, by name and by function, so that
-- neither "api.validators.minLength" nor api.validators.minLength itself slips through.
local function factoriesOf(library)
  local names = library._factories or builtinValidators._factories
  local byFunction = {}
  for name in pairs(names) do
    if type(library[name]) == "function" then byFunction[library[name]] = name end
    if type(builtinValidators[name]) == "function" then byFunction[builtinValidators[name]] = name end
  end
  return names, byFunction
end

-- "api.validators.email", "validators.email" and "email" all name the same entry.
local function shortName(kind, name)
  return name:match("^api%." .. kind.api .. "%.(.+)$")
      or name:match("^" .. kind.api .. "%.(.+)$")
      or name
end

local function isCallable(value)
  if type(value) == "function" then return true end
  local mt = getmetatable(value)
  return type(mt) == "table" and mt.__call ~= nil
end
inputs.isCallable = isCallable

local function resolve(action, key, kind, library, factories, entry)
  local names, byFunction = factories.names, factories.byFunction
  if isCallable(entry) then
    if byFunction[entry] then
      fail(action, key, string.format("%s api.%s.%s is a factory; call it with arguments, e.g. api.%s.%s(10)",
        kind.field, kind.api, byFunction[entry], kind.api, byFunction[entry]))
    end
    return entry
  elseif type(entry) == "string" then
    local name = shortName(kind, entry)
    if names[name] then
      fail(action, key, string.format('%s "%s" is a factory; call it with arguments, e.g. api.%s.%s(10)',
        kind.field, entry, kind.api, name))
    end
    local fn = library[name]
    if type(fn) ~= "function" then
      fail(action, key, string.format('unknown %s "%s"', kind.field, entry))
    end
    return fn
  end
  fail(action, key, string.format("%s must be a function or the name of one, got %s",
    kind.field, type(entry)))
end

-- A formatter or validator may be one function, one name, or a list of them.
local function compileSteps(action, key, input, kind, api)
  local library = (api and api[kind.api]) or kind.builtin
  local factories = { names = {}, byFunction = {} }
  if kind.field == "validator" then
    factories.names, factories.byFunction = factoriesOf(library)
  end
  local declared = input[kind.field]
  local list = {}
  if declared == nil then
    return list
  elseif type(declared) == "table" and not isCallable(declared) then
    local count = 0
    for _ in pairs(declared) do count = count + 1 end
    if count ~= #declared then
      fail(action, key, kind.field .. " must be a function, a name or a list of them")
    end
    for i, entry in ipairs(declared) do
      list[i] = resolve(action, key, kind, library, factories, entry)
    end
  else
    list[1] = resolve(action, key, kind, library, factories, declared)
  end
  return list
end

-- Resolves every input's formatter and validator into the private lists _formatters and
-- _validators, and stores the sorted input names as action._inputKeys. Raises a message
-- naming the action and input on any mistake. Calling it again recomputes the same result.
function inputs.compile(action, api)
  local declared = action.inputs
  if declared == nil then declared = {} end
  if type(declared) ~= "table" then
    error(string.format("Action %s: 'inputs' must be a table, got %s",
      actionName(action), type(declared)), 0)
  end
  local keys = {}
  for key, input in pairs(declared) do
    if type(key) ~= "string" then
      error(string.format("Action %s: input names must be strings, got %s %s",
        actionName(action), type(key), tostring(key)), 0)
    end
    if type(input) ~= "table" then
      fail(action, key, "must be a table, got " .. type(input))
    end
    if input.required ~= nil and type(input.required) ~= "boolean" then
      fail(action, key, "'required' must be a boolean, got " .. type(input.required))
    end
    for _, kind in ipairs({ KINDS.formatter, KINDS.validator }) do
      input[kind.private] = compileSteps(action, key, input, kind, api)
    end
    keys[#keys + 1] = key
  end
  table.sort(keys)
  action._inputKeys = keys
end

-- Process --------------------------------------------------------------------------------

local DEFAULT_MISSING = { ["nil"] = true, ["null"] = true, [""] = true }

local function isMissing(value, missing, null)
  if value == nil then return missing["nil"] == true end
  if null ~= nil and value == null then return missing["null"] == true end
  if value == "" then return missing[""] == true end
  return false
end

-- Table defaults are copied so that an action changing its params cannot change the
-- default seen by later requests.
local function copy(value, seen)
  if type(value) ~= "table" then return value end
  seen = seen or {}
  if seen[value] then return seen[value] end
  local result = {}
  seen[value] = result
  for k, v in pairs(value) do result[copy(k, seen)] = copy(v, seen) end
  return setmetatable(result, getmetatable(value))
end

-- A raised string loses its "chunkname:line: " prefix; a raised table gives its message.
local function errorMessage(err)
  if type(err) == "table" and err.message ~= nil then
    return tostring(err.message)
  elseif type(err) == "string" then
    local message = err:gsub('^%[string ".-"%]:%d+: ', "", 1)
    if message == err then message = err:gsub("^[^:\n]+:%d+: ", "", 1) end
    return message
  elseif err == nil then
    return nil
  end
  return tostring(err)
end

local function genericMessage(key)
  return string.format('Input for parameter "%s" failed validation!', key)
end

-- What pcall returns when Lua runs out of memory (its message has no position).
local MEMORY_ERROR = "not enough memory"

-- Runs the validators in order and returns the first failure's message, or nil.
local function validate(input, key, value, connection, action)
  local validators = input._validators
  for i = 1, #validators do
    local ok, result = pcall(validators[i], value, connection, action, key)
    if not ok then
      -- Running out of memory is the server's trouble, not the input's: raise it on,
      -- so the processor answers 500 instead of a 422 blaming the value.
      if result == MEMORY_ERROR then error(result, 0) end
      local message = errorMessage(result)
      if message == nil or message == "" then message = genericMessage(key) end
      return message
    elseif type(result) == "string" then
      if result == "" then return genericMessage(key) end
      return result
    elseif result ~= true and result ~= nil then
      return genericMessage(key)
    end
  end
  return nil
end
-- Also run by the resource generics (gateway.registry.resources), whose fields order
-- their own checks before an input's validators.
inputs.validate = validate

-- Applies the action's inputs to 'params' in place. opts.missing is the set of enabled
-- missing checks ("nil", "null", ""), opts.null the JSON null value. Returns nil when
-- every input passed, or an array of { key, message, required } in key order. Errors
-- raised by defaults and formatters are not caught.
function inputs.process(action, params, connection, opts)
  local keys = action._inputKeys
  if keys == nil then
    error(string.format("Action %s: inputs.compile was not called", actionName(action)), 2)
  end
  local missing, null = DEFAULT_MISSING, nil
  if opts then missing, null = opts.missing or DEFAULT_MISSING, opts.null end
  -- isMissing's answers, read once per call instead of once per check.
  local missNil, missNull, missEmpty = missing["nil"] == true, missing["null"] == true, missing[""] == true
  local all = action.inputs
  local failures

  for i = 1, #keys do
    local key = keys[i]
    local input = all[key]
    local value = params[key]
    local absent
    if value == nil then absent = missNil
    elseif value == "" then absent = missEmpty
    else absent = null ~= nil and value == null and missNull end

    if absent and input.default ~= nil then
      local default = input.default
      if type(default) == "function" then
        value = default(value, connection, action, key)
      else
        value = copy(default)
      end
      params[key] = value
      absent = isMissing(value, missing, null)
    end

    if not absent then
      local formatters = input._formatters
      local n = #formatters
      if n > 0 then
        for j = 1, n do
          value = formatters[j](value, connection, action, key)
          params[key] = value
        end
        -- A formatter may have made the value missing (trim of "  "), so check again.
        absent = isMissing(value, missing, null)
      end
    end

    if not absent then
      local message = validate(input, key, value, connection, action)
      if message then
        failures = failures or {}
        failures[#failures + 1] = { key = key, message = message }
      end
    elseif input.required == true then
      failures = failures or {}
      failures[#failures + 1] = {
        key = key,
        message = key .. " is a required parameter for this action",
        required = true,
      }
    end
  end

  return failures
end

-- The envelope protocol's wording of a missing field (rest_framework's).
inputs.REQUIRED_TEXT = "This field is required."

-- Failures as the envelope protocol lists them: { key = { message, ... } }, a missing
-- field worded as REQUIRED_TEXT.
function inputs.messagesByField(failures)
  local byKey = {}
  for _, f in ipairs(failures) do
    local list = byKey[f.key]
    if not list then
      list = {}
      byKey[f.key] = list
    end
    list[#list + 1] = f.required and inputs.REQUIRED_TEXT or f.message
  end
  return byKey
end

return inputs
