-- Loads action and middleware files (SPEC §3, §4) into a fresh registry, checking
-- everything a broken definition could get wrong at load time, so a bad file stops
-- startup (or is refused on reload) with one line naming the file and the reason.

local core = require("gateway.core")
local inputs = require("gateway.pipeline.inputs")
local router = require("gateway.registry.router")
local handlers = require("gateway.registry.handlers")
local consumers = require("gateway.registry.consumers")
local permissions = require("gateway.pipeline.permissions")

local M = {}

local RESERVED = { action = true, apiVersion = true, callback = true, file = true }
local CONNECTION_TYPES = { web = true, websocket = true, socket = true }
local LEVELS = { debug = true, info = true, notice = true, warning = true, error = true, crit = true }

-- Every *.lua file under 'dir', depth first, in name order.
local function luaFiles(dir, out)
  local entries = core.readdir(dir)
  if not entries then return out end
  for _, e in ipairs(entries) do
    local path = dir .. "/" .. e.name
    if e.dir then luaFiles(path, out)
    elseif e.name:match("%.lua$") then out[#out + 1] = path end
  end
  return out
end
M.luaFiles = luaFiles

local function loadFile(path, env)
  local chunk, err = loadfile(path, "t", env or _G)
  if not chunk then error(err, 0) end
  local okSlice, loop = pcall(require, "gateway.loop")
  if okSlice then loop.reset_slice() end
  local ok, result = xpcall(chunk, function(e)
    return type(e) == "string" and e or tostring(e)
  end)
  if not ok then error(result, 0) end
  return result
end
M.loadFile = loadFile

local function fileError(path, msg)
  error(path .. ": " .. msg, 0)
end

-- The line where `name = "<name>"` appears, to point the reader at the action.
local function lineOf(path, name)
  local f = io.open(path, "r")
  if not f or not name then return nil end
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:find('name%s*=%s*["\']' .. name:gsub("%p", "%%%0") .. '["\']') then
      f:close()
      return n
    end
  end
  f:close()
  return nil
end

local function isAction(t)
  return type(t) == "table" and (t.run ~= nil or t.name ~= nil or t.description ~= nil)
end

local function validateAction(a, path, api)
  if type(a.name) ~= "string" or a.name == "" then
    fileError(path, "an action is missing 'action.name'")
  end
  local where = path
  local line = lineOf(path, a.name)
  if line then where = path .. ":" .. line end
  local function bad(msg) error(where .. ": " .. msg, 0) end
  if type(a.description) ~= "string" or a.description == "" then
    bad("Action " .. a.name .. " is missing 'action.description'")
  end
  if type(a.run) ~= "function" then bad("Action " .. a.name .. " has no run method") end
  if a.version == nil then a.version = 1 end
  if type(a.version) ~= "number" then bad("Action " .. a.name .. ": 'version' must be a number") end
  if a.inputs ~= nil and type(a.inputs) ~= "table" then
    bad("Action " .. a.name .. ": 'inputs' must be a table")
  end
  for key in pairs(a.inputs or {}) do
    if RESERVED[key] then
      bad("Action " .. a.name .. ': input "' .. tostring(key) .. '" is a reserved param name')
    end
  end
  a.inputs = a.inputs or {}
  for _, t in ipairs(a.blockedConnectionTypes or {}) do
    if not CONNECTION_TYPES[t] then
      bad("Action " .. a.name .. ': unknown connection type "' .. tostring(t) .. '" in blockedConnectionTypes')
    end
  end
  if a.logLevel ~= nil and not LEVELS[a.logLevel] then
    bad("Action " .. a.name .. ': unknown logLevel "' .. tostring(a.logLevel) .. '"')
  end
  if a.middleware ~= nil and type(a.middleware) ~= "table" then
    bad("Action " .. a.name .. ": 'middleware' must be a list of names")
  end
  a.middleware = a.middleware or {}
  if a.toDocument == nil then a.toDocument = true end
  if a.permissions ~= nil and type(a.permissions) ~= "table" then
    bad("Action " .. a.name .. ": 'permissions' must be a list of names")
  end
  a.permissions = a.permissions or {}
  local ok, err = pcall(inputs.compile, a, api)
  if not ok then bad(tostring(err)) end
  a._file = path
end

local function addAction(reg, a, path)
  reg.actions[a.name] = reg.actions[a.name] or {}
  local existing = reg.actions[a.name][a.version]
  if existing then
    fileError(path, string.format("Action %s version %s is defined twice (also in %s)",
      a.name, tostring(a.version), existing._file))
  end
  reg.actions[a.name][a.version] = a
end

-- Sort every action's versions numerically: 1, 2, 10.
local function sortVersions(reg)
  for name, byVersion in pairs(reg.actions) do
    local list = {}
    for v in pairs(byVersion) do list[#list + 1] = v end
    table.sort(list)
    reg.versions[name] = list
  end
end

local function validateMiddleware(m, path, reg, defaultPriority)
  if type(m.name) ~= "string" or m.name == "" then fileError(path, "a middleware is missing 'name'") end
  if m.priority == nil then m.priority = defaultPriority end
  if type(m.priority) ~= "number" then fileError(path, "middleware " .. m.name .. ": 'priority' must be a number") end
  local isConnection = m.create ~= nil or m.destroy ~= nil
  -- Room middleware (docs/realtime.md): join, leave and say hooks.
  local isRoom = m.join ~= nil or m.leave ~= nil or m.say ~= nil
  for _, f in ipairs({ "preProcessor", "postProcessor", "create", "destroy", "join", "leave", "say" }) do
    if m[f] ~= nil and type(m[f]) ~= "function" then
      fileError(path, "middleware " .. m.name .. ": '" .. f .. "' must be a function")
    end
  end
  if isRoom and (isConnection or m.preProcessor ~= nil or m.postProcessor ~= nil) then
    fileError(path, "middleware " .. m.name .. ": room hooks (join, leave, say) go in a middleware of their own")
  end
  local bucket = isConnection and reg.connectionMiddleware or reg.middleware
  if isRoom then bucket = reg.roomMiddleware end
  if bucket[m.name] then
    fileError(path, "middleware " .. m.name .. " is defined twice (also in " .. bucket[m.name]._file .. ")")
  end
  m._file = path
  m._order = reg.middlewareCount
  reg.middlewareCount = reg.middlewareCount + 1
  bucket[m.name] = m
end

local function byPriority(list)
  table.sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority < b.priority end
    return a._order < b._order
  end)
  return list
end

-- Load everything into a new registry; raises "file[:line]: reason" on the first problem.
-- The files register permissions into a fresh api.permissions, which stays only if the
-- whole load succeeds (a failed reload keeps the old set, permissions included).
function M.load(config, api, env, modules)
  local previous = api.permissions
  api.permissions = permissions.new()
  local ok, reg = pcall(M.loadInto, config, api, env, modules)
  if not ok then
    api.permissions = previous
    error(reg, 0)
  end
  reg.permissions = api.permissions.permissions
  return reg
end

-- A C function completes when it returns (it takes no next): a Lua wrapper with one
-- parameter tells callWithNext so.
local function cMiddlewareFn(fn)
  if fn == nil then return nil end
  return function(data) return fn(data) end
end

function M.loadInto(config, api, env, modules)
  local reg = {
    actions = {}, versions = {}, handlers = {}, consumerFiles = {},
    middleware = {}, connectionMiddleware = {}, middlewareCount = 0,
    globalMiddleware = {}, connectionMiddlewareList = {},
    roomMiddleware = {}, roomMiddlewareList = {},
  }
  local defaultPriority = config.general.defaultMiddlewarePriority

  for _, dir in ipairs(config.paths.middleware) do
    for _, path in ipairs(luaFiles(dir, {})) do
      local result = loadFile(path, env)
      if type(result) ~= "table" then fileError(path, "a middleware file must return a table") end
      local list = result.name and { result } or result
      local names = {}
      for k in pairs(list) do names[#names + 1] = k end
      table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
      for _, k in ipairs(names) do
        if type(list[k]) == "table" then validateMiddleware(list[k], path, reg, defaultPriority) end
      end
    end
  end
  -- Middleware registered by C modules (gateway_register_middleware, and
  -- gateway_register_connection_hooks: create/destroy take the connection as they are).
  for _, mod in ipairs(modules or {}) do
    for _, spec in ipairs(mod.middleware or {}) do
      validateMiddleware({
        name = spec.name, priority = spec.priority, global = spec.global,
        preProcessor = cMiddlewareFn(spec.preProcessor),
        postProcessor = cMiddlewareFn(spec.postProcessor),
        create = spec.create, destroy = spec.destroy,
      }, "module " .. mod.name, reg, defaultPriority)
    end
  end
  for _, m in pairs(reg.middleware) do
    if m.global then reg.globalMiddleware[#reg.globalMiddleware + 1] = m end
  end
  byPriority(reg.globalMiddleware)
  for _, m in pairs(reg.connectionMiddleware) do
    reg.connectionMiddlewareList[#reg.connectionMiddlewareList + 1] = m
  end
  byPriority(reg.connectionMiddlewareList)
  for _, m in pairs(reg.roomMiddleware) do
    reg.roomMiddlewareList[#reg.roomMiddlewareList + 1] = m
  end
  byPriority(reg.roomMiddlewareList)

  for _, dir in ipairs(config.paths.actions) do
    for _, path in ipairs(luaFiles(dir, {})) do
      local result = loadFile(path, env)
      if type(result) ~= "table" then
        fileError(path, "an action file must return a table, got " .. type(result))
      end
      if result.consumer ~= nil and result.run == nil then
        reg.consumerFiles[#reg.consumerFiles + 1] = { file = path, consumer = result }
      elseif result.routes ~= nil and result.run == nil then
        reg.handlers[#reg.handlers + 1] = { file = path, handler = result }
      elseif isAction(result) then
        validateAction(result, path, api)
        addAction(reg, result, path)
      else
        local keys = {}
        for k, v in pairs(result) do if isAction(v) then keys[#keys + 1] = k end end
        table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        if #keys == 0 then fileError(path, "the file returns no action (a table with name, description and run)") end
        for _, k in ipairs(keys) do
          validateAction(result[k], path, api)
          addAction(reg, result[k], path)
        end
      end
    end
  end

  -- Handler actions are validated like actions (they get the same pipeline).
  local function makeHandlerAction(def, name, file)
    validateAction(def, file, api)
    def.version = nil
    return def
  end
  reg.handlerIndex = handlers.compile(reg.handlers, makeHandlerAction, M.generics)
  reg.consumers = consumers.compile(reg.consumerFiles, reg.handlerIndex, makeHandlerAction, M.generics)
  M.checkObjectPermissions(reg.handlers, api.permissions.objects)
  M.checkObjectPermissions(reg.consumerFiles, api.permissions.objects)

  -- Middleware and permissions named by actions and handler actions must exist.
  local function checkNames(a)
    for _, name in ipairs(a.middleware) do
      if not reg.middleware[name] then
        fileError(a._file, "Action " .. a.name .. ': unknown middleware "' .. tostring(name) .. '"')
      end
    end
    local unknown = permissions.unknown(api.permissions.permissions, a.permissions)
    if unknown then fileError(a._file, "Action " .. a.name .. ': unknown permission "' .. unknown .. '"') end
  end
  for _, byVersion in pairs(reg.actions) do
    for _, a in pairs(byVersion) do checkNames(a) end
  end
  for _, h in ipairs(reg.handlerIndex.handlers) do
    for _, a in pairs(h.actions) do checkNames(a) end
  end
  for _, c in ipairs(reg.consumers.list) do
    for _, a in pairs(c.actions) do checkNames(a) end
    local unknown = permissions.unknown(api.permissions.permissions, c.permissions)
    if unknown then fileError(c.file, 'consumer "' .. c.name .. '": unknown permission "' .. unknown .. '"') end
  end

  sortVersions(reg)
  reg.routes = M.loadRoutes(config.paths.routes, reg, env)
  -- Task files and task middleware (paths.tasks, docs/tasks.md).
  reg.tasks = require("gateway.registry.tasks").load(config, api, env, luaFiles, loadFile)
  return reg
end

-- The object permissions handlers list (`objectPermissions`, run by the generics) must be
-- registered with api.permissions.addObject; checked once every file has loaded, as files
-- register them at load time. `list` holds { file, handler } or { file, consumer }.
function M.checkObjectPermissions(list, objects)
  for _, item in ipairs(list) do
    local names = (item.handler or item.consumer).objectPermissions
    if names ~= nil and type(names) ~= "table" then
      fileError(item.file, "objectPermissions must be a list of names")
    end
    for _, name in ipairs(names or {}) do
      if not objects[name] then
        fileError(item.file, 'unknown object permission "' .. tostring(name)
          .. '" (register it with api.permissions.addObject)')
      end
    end
  end
end

-- The web routes file (SPEC §6); a missing file means no routes.
function M.loadRoutes(path, reg, env)
  local spec
  local f = path and io.open(path, "r")
  if f then
    f:close()
    if not core.is_dir(path) then spec = loadFile(path, env) end
  end
  return router.compile(spec, path or "routes", function(name) return reg.versions[name] ~= nil end)
end

-- Redis-backed generic implementations by name (SPEC §6): see gateway.resources.
M.generics = require("gateway.registry.resources").generics

return M
