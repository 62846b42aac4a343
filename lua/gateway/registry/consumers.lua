-- Consumers (rest_framework_channels, Django Channels): a file in paths.actions that
-- returns a table with `consumer` (a pcre2 pattern of the WebSocket URL) is a consumer.
-- The upgrade request goes to the first consumer whose pattern matches its path; the
-- pattern's named groups are the connection's URL kwargs. A consumer is itself a handler
-- (its generics and `actions` answer messages without a route) and lists, in `handlers`,
-- the named handlers whose routes its messages with a route are matched against.
--
-- servers.websocket.path is the default consumer: no actions of its own, every handler's
-- routes, and a message without a route names an action. It is tried first, by exact
-- path; then the consumers in load order.

local core = require("gateway.core")
local pcre = require("gateway.regex")
local handlers = require("gateway.registry.handlers")

local M = {}

local KEYS = { consumer = true, name = true, description = true, resource = true, generics = true,
  actions = true, permissions = true, objectPermissions = true, lookupField = true,
  handlers = true, connect = true, group = true }

-- A list of strings, or a string as a list of one; nil and the reason otherwise.
local function stringList(value, what)
  if type(value) == "string" then return { value } end
  if type(value) ~= "table" then return nil, what .. " must be a string or a list of strings" end
  for _, v in ipairs(value) do
    if type(v) ~= "string" or v == "" then return nil, what .. " must be a list of strings" end
  end
  return value
end

-- Compile the consumer files ({ file, consumer } in load order) against the handler
-- index (for `handlers` by name). `make` and `generics` as for handlers.compile.
-- Returns { list = {...}, byKey = { [pattern] = consumer } }.
function M.compile(list, index, make, generics)
  local out = { list = {}, byKey = {} }
  for _, item in ipairs(list) do
    local c, file = item.consumer, item.file
    local function bad(msg) error(file .. ": " .. msg, 0) end
    if type(c.consumer) ~= "string" or c.consumer == "" then
      bad("'consumer' must be the pcre2 pattern of a WebSocket URL")
    end
    local ok, err = pcall(pcre.test, "", c.consumer)
    if not ok then bad(tostring(err)) end
    if out.byKey[c.consumer] then
      bad('consumer "' .. c.consumer .. '" is defined twice (also in ' .. out.byKey[c.consumer].file .. ")")
    end
    for k in pairs(c) do
      if not KEYS[k] then
        if k == "routes" then bad("a consumer lists its child handlers by name in 'handlers', not 'routes'") end
        bad('unknown consumer key "' .. tostring(k) .. '"')
      end
    end
    if c.name ~= nil and (type(c.name) ~= "string" or c.name == "") then bad("'name' must be a non-empty string") end
    if c.connect ~= nil and type(c.connect) ~= "function" then bad("'connect' must be a function") end
    if c.permissions ~= nil and type(c.permissions) ~= "table" then bad("'permissions' must be a list of names") end
    local group
    if c.group ~= nil then
      group, err = stringList(c.group, "'group'")
      if not group then bad(err) end
    end
    local children = handlers.newIndex()
    local names
    if c.handlers ~= nil then
      names, err = stringList(c.handlers, "'handlers'")
      if not names then bad(err) end
      for _, name in ipairs(names) do
        local h = index.byName[name]
        if not h then bad('unknown handler "' .. name .. '" (a handler file with name = "' .. name .. '")') end
        handlers.addRoutes(children, h)
      end
    end
    local compiled = {
      key = c.consumer, pattern = c.consumer, file = file, name = c.name or c.consumer,
      permissions = c.permissions or {}, connect = c.connect, group = group,
      children = children, resource = c.resource,
      -- Django's URL patterns do not start with "/": such a pattern is matched against
      -- the path without its leading slash.
      strip = c.consumer:sub(1, 2) ~= "^/" and c.consumer:sub(1, 1) ~= "/",
    }
    -- The consumer's permissions are checked before routing (messages.lua), so its own
    -- actions do not check them again.
    compiled.actions = handlers.compileActions(c, file, make, generics, false)
    out.list[#out.list + 1] = compiled
    out.byKey[compiled.key] = compiled
  end
  return out
end

-- The consumer that takes a WebSocket upgrade to `path` (decoded, no query): the
-- consumer (M.DEFAULT for servers.websocket.path) and its URL kwargs, or nil.
function M.match(consumers, defaultPath, path)
  if path == defaultPath then return M.DEFAULT, {} end
  for _, c in ipairs(consumers.list) do
    local subject = c.strip and path:gsub("^/", "") or path
    local captures = core.regex_match(subject, c.pattern)
    if captures then return c, handlers.namedGroups(captures) end
  end
  return nil
end

-- The default consumer: today's global behaviour (see the head of this file).
M.DEFAULT = { key = "", name = "default", default = true, permissions = {}, actions = {} }

-- The consumer a connection was opened for, looked up in the current registry (a reload
-- replaces consumers): the consumer, or nil when it is the default one (and for TCP);
-- false when its consumer is gone since.
local consumerKey = setmetatable({}, { __mode = "k" })

function M.bind(connection, consumer)
  if consumer and not consumer.default then consumerKey[connection] = consumer.key end
end

function M.of(consumers, connection)
  local key = consumerKey[connection]
  if not key then return nil end
  return consumers.byKey[key] or false
end

function M.count(consumers)
  return #consumers.list
end

return M
