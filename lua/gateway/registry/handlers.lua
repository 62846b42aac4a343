-- Message routes and handlers (SPEC §6, rest_framework_channels): files returning
-- `routes` (pcre2 patterns) and no `run`. A route is matched against every handler's
-- patterns in load order (search semantics, first match wins); named groups become
-- params; then the message's action is looked up in that handler: one of its `actions`
-- (a full action definition, or a function returning body, status) or a generic it
-- enables. Anchored patterns are indexed by their literal first segment so a route
-- tries only the patterns that can match it.

local core = require("gateway.core")
local pcre = require("gateway.regex")

local M = {}

M.GENERICS = { retrieve = true, list = true, create = true, update = true,
  partial_update = true, remove = true, destroy = true, subscribe = true }

-- HTTP method -> handler action name (GET depends on whether the route names a `pk`, or
-- the handler's lookupField).
M.HTTP_ACTIONS = { POST = "create", PUT = "update", PATCH = "partial_update", DELETE = "remove" }

local METACHARS = "^([^\\%.%^%$|%?%*%+%(%)%[%]{}]*)"

-- The literal text a pattern starts with (after ^ if anchored), shortened by one when a
-- quantifier follows it; "" when there is none or the pattern has an alternation.
local function literalPrefix(pattern)
  if pattern:find("|", 1, true) then return "" end
  local body = pattern:sub(1, 1) == "^" and pattern:sub(2) or pattern
  local literal = body:match(METACHARS)
  if body:sub(#literal + 1, #literal + 1):match("[%?%*%+{]") then literal = literal:sub(1, -2) end
  return literal
end
M.literalPrefix = literalPrefix

-- "items" for "^items/(?P<pk>\d+)/$": the first segment of an anchored pattern's literal
-- prefix; nil when the pattern cannot be indexed (unanchored, an alternation, or no
-- literal "segment/" at its start).
local function literalFirstSegment(pattern)
  if pattern:sub(1, 1) ~= "^" then return nil end
  return literalPrefix(pattern):match("^([^/]+)/")
end
M.literalFirstSegment = literalFirstSegment

-- The action a handler's `actions[name]` entry becomes. `make(def, name)` validates a full
-- definition as an action (the loader's rules) and returns it. `inherited` are the
-- handler's permissions, checked before the action's own.
local function handlerAction(entry, name, inherited, make)
  local def = entry
  if type(entry) == "function" then
    def = {
      name = name, description = "handler action " .. name,
      run = function(api, data)
        local body, status = entry(api, data)
        data.response = body
        if status ~= nil then data.status = status end
      end,
    }
  elseif type(entry) ~= "table" then
    return nil, "actions." .. name .. " must be an action table or a function"
  end
  def.name = def.name or name
  def.description = def.description or ("handler action " .. name)
  local perms = {}
  for _, p in ipairs(inherited) do perms[#perms + 1] = p end
  for _, p in ipairs(def.permissions or {}) do perms[#perms + 1] = p end
  def.permissions = perms
  def._handler = true
  return make(def, name)
end

-- A generic the handler enables; the Redis-backed implementations (gateway.registry.resources)
-- plug in here: `generics[name](handler, name)` -> an action definition, or nil and a
-- load error (a bad `resource`).
local function genericAction(name, handler, inherited, make, generics)
  local impl = generics and generics[name]
  local def, err
  if impl then
    def, err = impl(handler, name)
    if not def and err then return nil, err end
  end
  def = def or {
    name = name, description = "generic " .. name,
    run = function(_, data)
      data.status = 501
      return nil, 'generic "' .. name .. '" needs Redis (not available yet)'
    end,
  }
  def.permissions = def.permissions or inherited
  def._handler = true
  def._generic = name -- which generic it is (gateway.registry.openapi documents it)
  return make(def, name)
end

-- The actions of one handler table (a handler file, or a consumer: see
-- gateway.registry.consumers): its `actions` and the generics it enables, by name.
-- `inherit` false leaves the table's own `permissions` out of its actions (a consumer
-- checks them before routing). Raises "file: reason".
function M.compileActions(h, file, make, generics, inherit)
  local inherited = inherit == false and {} or (h.permissions or {})
  local actions = {}
  local function mk(def, n) return make(def, n, file) end
  if h.actions ~= nil and type(h.actions) ~= "table" then error(file .. ": 'actions' must be a table", 0) end
  for name, entry in pairs(h.actions or {}) do
    local a, err = handlerAction(entry, name, inherited, mk)
    if not a then error(file .. ": " .. err, 0) end
    actions[name] = a
  end
  if h.generics ~= nil and type(h.generics) ~= "table" then error(file .. ": 'generics' must be a list", 0) end
  for _, g in ipairs(h.generics or {}) do
    if not M.GENERICS[g] then error(file .. ': unknown generic "' .. tostring(g) .. '"', 0) end
    if not actions[g] then
      local a, err = genericAction(g, h, inherited, mk, generics)
      if not a then error(file .. ": " .. err, 0) end
      actions[g] = a
      if g == "remove" and not actions.destroy then actions.destroy = actions[g] end
      if g == "destroy" and not actions.remove then actions.remove = actions[g] end
      -- Live resources: "subscribe" enables its pair.
      if g == "subscribe" and not actions.unsubscribe then
        a, err = genericAction("unsubscribe", h, inherited, mk, generics)
        if not a then error(file .. ": " .. err, 0) end
        actions.unsubscribe = a
      end
    end
  end
  return actions
end

function M.newIndex()
  return { entries = {}, byFirst = {}, any = {}, handlers = {}, byName = {} }
end

-- Add a compiled handler's route patterns to `index`, after those already there.
function M.addRoutes(index, compiled)
  index.handlers[#index.handlers + 1] = compiled
  for _, pattern in ipairs(compiled.routes) do
    local entry = { order = #index.entries + 1, pattern = pattern, handler = compiled }
    index.entries[#index.entries + 1] = entry
    local seg = literalFirstSegment(pattern)
    -- An unanchored pattern can only match a route that contains its literal prefix:
    -- a plain substring test skips the regex for every other route.
    if not seg and pattern:sub(1, 1) ~= "^" then
      local lit = literalPrefix(pattern)
      if #lit >= 2 then entry.needs = lit end
    end
    if seg then
      index.byFirst[seg] = index.byFirst[seg] or {}
      table.insert(index.byFirst[seg], entry)
    else
      index.any[#index.any + 1] = entry
    end
  end
end

-- Compile the loaded handler files ({ file, handler } in load order) into an index.
-- `make(def, name, file)` turns a definition into a validated action. Handlers with a
-- `name` are also listed in index.byName (consumers name their child handlers).
function M.compile(list, make, generics)
  local index = M.newIndex()
  for _, item in ipairs(list) do
    local h, file = item.handler, item.file
    if type(h.routes) ~= "table" or #h.routes == 0 then
      error(file .. ": a handler's 'routes' must be a non-empty list of patterns", 0)
    end
    if h.name ~= nil and (type(h.name) ~= "string" or h.name == "") then
      error(file .. ": a handler's 'name' must be a non-empty string", 0)
    end
    if h.name and index.byName[h.name] then
      error(file .. ': handler name "' .. h.name .. '" is taken (also in ' .. index.byName[h.name].file .. ")", 0)
    end
    for _, pattern in ipairs(h.routes) do
      if type(pattern) ~= "string" then error(file .. ": routes must be strings", 0) end
      local ok, err = pcall(pcre.test, "", pattern)
      if not ok then error(file .. ": " .. tostring(err), 0) end
    end
    local compiled = { file = file, name = h.name, routes = h.routes, permissions = h.permissions or {},
      resource = h.resource, lookupField = type(h.lookupField) == "string" and h.lookupField or nil }
    compiled.actions = M.compileActions(h, file, make, generics)
    if h.name then index.byName[h.name] = compiled end
    M.addRoutes(index, compiled)
  end
  return index
end

-- Named groups of a match as string params (also a consumer's URL kwargs).
local function namedGroups(captures)
  local params = {}
  for k, v in pairs(captures) do
    if type(k) == "string" and type(v) == "string" then params[k] = v end
  end
  return params
end

-- The first handler whose pattern matches `route` (no query string): handler, params
-- from named groups, and the pattern; nil when none does.
function M.match(index, route)
  local first = route:match("^([^/]*)/")
  local bucket = first and index.byFirst[first] or nil
  local any = index.any
  local i, j = 1, 1
  while true do
    local a, b = bucket and bucket[i], any[j]
    local entry
    if a and (not b or a.order < b.order) then
      entry, i = a, i + 1
    elseif b then
      entry, j = b, j + 1
    else
      return nil
    end
    if not entry.needs or route:find(entry.needs, 1, true) then
      -- A route the pattern cannot decide within pcre2's match limit is no match.
      local captures = core.regex_match(route, entry.pattern)
      if captures then return entry.handler, namedGroups(captures), entry.pattern end
    end
  end
end

-- Resolve a message: (action, params from the route, pattern) or (nil, message, status).
-- `route` may carry a query string; `name` is the message's action (or an HTTP method's
-- generic name when `method` is given).
function M.resolve(index, route, name, method)
  local path, query = route:match("^([^?]*)%??(.*)$")
  local handler, params, pattern = M.match(index, path)
  if not handler then return nil, 'route "' .. route .. '" not found', 404 end
  if method then
    name = M.HTTP_ACTIONS[method] or ((method == "GET" or method == "HEAD") and ((params.pk or handler.lookupField and params[handler.lookupField]) and "retrieve" or "list"))
  end
  local action = name and handler.actions[name]
  if not action then return nil, 'Action "' .. tostring(name) .. '" not allowed.', 405 end
  local all = query ~= "" and core.parse_query(query) or {}
  for k, v in pairs(params) do all[k] = v end
  return action, all, pattern, params
end

M.namedGroups = namedGroups

-- The route a pattern names for given group values (live resources push an object's
-- instance route: gateway.registry.resources). A template is the pattern read as
-- literal text and named groups: { "items/", { group = "pk" }, "/" } for
-- ^items/(?P<pk>\d+)/$. Only patterns made of literal characters (escaped
-- punctuation included), named groups and the anchors ^ and $ have one; nil otherwise
-- (a class, an alternation or a quantifier outside a group: no single route to build).
function M.routeTemplate(pattern)
  if type(pattern) ~= "string" then return nil end
  local s = pattern
  if s:sub(1, 1) == "^" then s = s:sub(2) end
  if s:sub(-1) == "$" and s:sub(-2, -2) ~= "\\" then s = s:sub(1, -2) end
  local out, lit = {}, {}
  local function flush()
    if #lit > 0 then
      out[#out + 1] = table.concat(lit)
      lit = {}
    end
  end
  local i, n = 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "\\" then
      local e = s:sub(i + 1, i + 1)
      if e == "" or e:match("[%w]") then return nil end -- \d, \w, \b...: not one text
      lit[#lit + 1] = e
      i = i + 2
    elseif c == "(" then
      local name, body = s:match("^%(%?P?<([%a_][%w_]*)>()", i)
      if not name then name, body = s:match("^%(%?'([%a_][%w_]*)'()", i) end
      if not name then return nil end
      -- Skip to the group's closing parenthesis (escapes and classes included).
      local depth, j, class = 1, body, false
      while j <= n and depth > 0 do
        local d = s:sub(j, j)
        if d == "\\" then
          j = j + 1
        elseif class then
          if d == "]" then class = false end
        elseif d == "[" then
          class = true
          if s:sub(j + 1, j + 1) == "]" then j = j + 1 end
        elseif d == "(" then
          depth = depth + 1
        elseif d == ")" then
          depth = depth - 1
        end
        j = j + 1
      end
      if depth > 0 then return nil end
      if s:sub(j, j):match("[%?%*%+{]") then return nil end -- an optional or repeated group
      flush()
      out[#out + 1] = { group = name }
      i = j
    elseif c:match("[%.%[%]%(%)|%?%*%+{}%^%$]") then
      return nil
    else
      if s:sub(i + 1, i + 1):match("[%?%*%+{]") then return nil end -- "s?" is two routes
      lit[#lit + 1] = c
      i = i + 1
    end
  end
  flush()
  return out
end

-- Does a template have a group of this name?
function M.templateHas(template, name)
  for _, part in ipairs(template) do
    if type(part) == "table" and part.group == name then return true end
  end
  return false
end

-- The route of a template, each group's value from valueOf(name) (a string or a
-- number), or nil when one has none.
function M.buildRoute(template, valueOf)
  local parts = {}
  for i, part in ipairs(template) do
    if type(part) == "string" then
      parts[i] = part
    else
      local v = valueOf(part.group)
      if type(v) == "number" then v = tostring(math.tointeger(v) or v) end
      if type(v) ~= "string" or v == "" then return nil end
      parts[i] = v
    end
  end
  return table.concat(parts)
end

function M.count(index)
  return #index.entries
end

return M
