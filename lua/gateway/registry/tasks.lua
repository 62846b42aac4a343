-- Loads task files and task middleware from paths.tasks (docs/tasks.md) into the
-- registry, checking at load time what a broken definition could get wrong, so a bad file
-- stops startup (or is refused on reload, or fails `gateway --check`) with one line naming
-- the file. Running and queueing the tasks is gateway.services.tasks's part.

local inputs = require("gateway.pipeline.inputs")

local M = {}

M.DEFAULT_QUEUE = "default"
M.DEFAULT_RETRIES = 0
M.DEFAULT_BACKOFF = { 1000, 5000, 30000 }
M.HOOKS = { "preProcessor", "postProcessor", "preEnqueue", "postEnqueue" }

local function isTask(t)
  return type(t) == "table" and (t.run ~= nil or t.frequency ~= nil or t.queue ~= nil)
end

local function isMiddleware(t)
  if type(t) ~= "table" or t.run ~= nil then return false end
  for _, h in ipairs(M.HOOKS) do if t[h] ~= nil then return true end end
  return false
end

local function validateTask(t, path, api)
  local function bad(msg) error(path .. ": " .. msg, 0) end
  if type(t.name) ~= "string" or t.name == "" then bad("a task is missing 'name'") end
  local name = t.name
  if type(t.description) ~= "string" or t.description == "" then
    bad("task " .. name .. " is missing 'description'")
  end
  if type(t.run) ~= "function" then bad("task " .. name .. " has no run function") end
  if t.queue == nil then t.queue = M.DEFAULT_QUEUE end
  if type(t.queue) ~= "string" or t.queue == "" or t.queue == "*" then
    bad("task " .. name .. ": 'queue' must be a non-empty string other than \"*\"")
  end
  if t.frequency == nil then t.frequency = 0 end
  if math.type(t.frequency) ~= "integer" and not (type(t.frequency) == "number" and t.frequency == math.floor(t.frequency)) then
    bad("task " .. name .. ": 'frequency' must be a whole number of milliseconds")
  end
  if t.frequency < 0 then bad("task " .. name .. ": 'frequency' must be 0 or more") end
  t.frequency = math.tointeger(t.frequency)
  if t.retries == nil then t.retries = M.DEFAULT_RETRIES end
  if math.type(t.retries) ~= "integer" or t.retries < 0 then
    bad("task " .. name .. ": 'retries' must be a whole number, 0 or more")
  end
  if t.backoff == nil then t.backoff = M.DEFAULT_BACKOFF end
  if type(t.backoff) == "number" then t.backoff = { t.backoff } end
  if type(t.backoff) ~= "table" or #t.backoff == 0 then
    bad("task " .. name .. ": 'backoff' must be a number of ms or a list of them")
  end
  for _, ms in ipairs(t.backoff) do
    if type(ms) ~= "number" or ms < 0 then
      bad("task " .. name .. ": 'backoff' must hold numbers of ms, 0 or more")
    end
  end
  if t.middleware ~= nil and type(t.middleware) ~= "table" then
    bad("task " .. name .. ": 'middleware' must be a list of names")
  end
  t.middleware = t.middleware or {}
  if t.inputs ~= nil and type(t.inputs) ~= "table" then
    bad("task " .. name .. ": 'inputs' must be a table")
  end
  t.inputs = t.inputs or {}
  local ok, err = pcall(inputs.compile, t, api)
  if not ok then bad((tostring(err):gsub("^Action ", "task ", 1))) end
  t._file = path
end

local function validateMiddleware(m, path, defaultPriority)
  local function bad(msg) error(path .. ": " .. msg, 0) end
  if type(m.name) ~= "string" or m.name == "" then bad("a task middleware is missing 'name'") end
  if m.priority == nil then m.priority = defaultPriority end
  if type(m.priority) ~= "number" then bad("task middleware " .. m.name .. ": 'priority' must be a number") end
  for _, h in ipairs(M.HOOKS) do
    if m[h] ~= nil and type(m[h]) ~= "function" then
      bad("task middleware " .. m.name .. ": '" .. h .. "' must be a function")
    end
  end
  m._file = path
end

-- Loads every file under config.paths.tasks into { tasks = { name = task },
-- middleware = { name = m }, plans = { name = { m, ... } } (each task's middleware, global
-- ones first, by priority) }. luaFiles and loadFile are the action loader's.
function M.load(config, api, env, luaFiles, loadFile)
  local out = { tasks = {}, middleware = {}, plans = {} }
  local order = 0
  local defaultPriority = config.general.defaultMiddlewarePriority
  for _, dir in ipairs((config.paths and config.paths.tasks) or {}) do
    for _, path in ipairs(luaFiles(dir, {})) do
      local result = loadFile(path, env)
      if type(result) ~= "table" then
        error(path .. ": a task file must return a table, got " .. type(result), 0)
      end
      local list
      if isTask(result) or isMiddleware(result) or result.name ~= nil then
        list = { result }
      else
        list = {}
        local keys = {}
        for k in pairs(result) do keys[#keys + 1] = k end
        table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        for _, k in ipairs(keys) do list[#list + 1] = result[k] end
      end
      local found = 0
      for _, def in ipairs(list) do
        if isMiddleware(def) then
          validateMiddleware(def, path, defaultPriority)
          if out.middleware[def.name] then
            error(path .. ": task middleware " .. def.name .. " is defined twice (also in "
              .. out.middleware[def.name]._file .. ")", 0)
          end
          order = order + 1
          def._order = order
          out.middleware[def.name] = def
          found = found + 1
        elseif type(def) == "table" then
          validateTask(def, path, api)
          if out.tasks[def.name] then
            error(path .. ": task " .. def.name .. " is defined twice (also in "
              .. out.tasks[def.name]._file .. ")", 0)
          end
          out.tasks[def.name] = def
          found = found + 1
        end
      end
      if found == 0 then
        error(path .. ": the file returns no task (a table with name, description and run)", 0)
      end
    end
  end
  local globals = {}
  for _, m in pairs(out.middleware) do if m.global then globals[#globals + 1] = m end end
  local function byPriority(a, b)
    if a.priority ~= b.priority then return a.priority < b.priority end
    return a._order < b._order
  end
  for name, t in pairs(out.tasks) do
    local plan, seen = {}, {}
    for _, m in ipairs(globals) do plan[#plan + 1] = m; seen[m] = true end
    for _, mname in ipairs(t.middleware) do
      local m = out.middleware[mname]
      if not m then error(t._file .. ": task " .. name .. ': unknown task middleware "' .. tostring(mname) .. '"', 0) end
      if not seen[m] then plan[#plan + 1] = m; seen[m] = true end
    end
    table.sort(plan, byPriority)
    out.plans[name] = plan
  end
  return out
end

-- What showDocumentation lists of each task: name -> { description, queue, frequency,
-- retries, inputs }.
function M.document(reg)
  local doc = {}
  for name, t in pairs(reg.tasks or {}) do
    local ins = {}
    for key, input in pairs(t.inputs) do
      local d = { required = input.required == true }
      if input.default ~= nil and type(input.default) ~= "function" then d.default = input.default end
      if type(input.description) == "string" then d.description = input.description end
      ins[key] = d
    end
    doc[name] = {
      name = name, description = t.description, queue = t.queue, frequency = t.frequency,
      retries = t.retries, inputs = ins,
    }
  end
  return doc
end

return M
