-- The runtime C talks to: init, reload, reconfigure, summary, openapi, handle, fail, open, close and
-- shutdown. It owns the loaded registry and the `api` global, and routes each
-- request to its transport module. The modules it puts together sit in one folder per
-- layer, each requiring only its own layer and those below (tests/lua/layers_spec.lua):
--   transport/  web, websocket, socket, and messages (the envelope protocol WebSocket and
--               TCP share): a transport's input made into a processor call, the answer rendered
--   registry/   loader, router, handlers, resources, docs, openapi: what is loaded, and which
--               action a request names (router.resolve)
--   services/   api and what actions use through it: cache, session, connections
--   pipeline/   processor, inputs, validators, formatters, permissions: what runs for one
--               action; it requires nothing of the layers above
-- registry/ and services/ both stand on pipeline/ and do not require each other.

local core = require("gateway.core")
local apiModule = require("gateway.services.api")
local loader = require("gateway.registry.loader")
local processor = require("gateway.pipeline.processor")
local docs = require("gateway.registry.docs")
local connections = require("gateway.services.connections")
local groups = require("gateway.services.consumers")
local router = require("gateway.registry.router")
local handlers = require("gateway.registry.handlers")
local consumers = require("gateway.registry.consumers")
local openapi = require("gateway.registry.openapi")

local R = {}

local rt = { shuttingDown = false }
local transports = {
  web = require("gateway.transport.web"),
  websocket = require("gateway.transport.websocket"),
  upgrade = require("gateway.transport.websocket").upgrade,
  socket = require("gateway.transport.socket"),
  test = require("gateway.transport.test"), -- the spec helper's (core/testhost.c)
  metrics = require("gateway.transport.metrics"),
}

local function publish(reg)
  docs.addBuiltins(reg, rt.api)
  openapi.addBuiltin(reg, rt.api, rt.config, rt.json)
  processor.buildPlans(reg)
  rt.reg = reg
  rt.api.actions.actions = reg.actions
  rt.api.actions.versions = reg.versions
  rt.api.documentation.documentation = docs.build(reg)
end

-- C modules (core/modules/loader.c): each { name, path, functions } the config lists becomes
-- api.<name>; the built-in ones come first and api.new places them.
local function splitModules(modules)
  local builtins, listed = {}, {}
  for _, m in ipairs(modules or {}) do
    if m.builtin then builtins[m.name] = m.functions else listed[#listed + 1] = m end
  end
  return builtins, listed
end

local function addModules(api, modules)
  for _, m in ipairs(modules) do
    if api[m.name] ~= nil then
      error(string.format('module "%s": api.%s is already taken', m.name, m.name), 0)
    end
    api[m.name] = m.functions
  end
end

-- What the runtime keeps computed from the config: again after a reload changed it.
local function derive(config)
  rt.inputOpts = { missing = processor.missingChecks(config), null = rt.json.null }
  rt.jsonMaxDepth = config.general.jsonMaxDepth
  rt.jsonMaxElements = config.general.jsonMaxElements
  rt.filtered = {}
  -- Names compared without case (processor.loggableParams): `password` filters PASSWORD.
  for _, name in ipairs(config.logging.filteredParams) do rt.filtered[tostring(name):lower()] = true end
end

function R.init(config, modules)
  -- Forked workers would otherwise share Lua's time-based seed.
  local id = core.random_id()
  math.randomseed(tonumber(id:sub(1, 12), 16), tonumber(id:sub(13, 24), 16))
  rt.config = config
  local builtins, listed = splitModules(modules)
  rt.api = apiModule.new(config, builtins)
  -- The gateway's own reference: users replacing api.json.encode change only theirs.
  rt.json = {}
  for k, v in pairs(rt.api.json) do rt.json[k] = v end
  derive(config)
  rt.modules = listed
  addModules(rt.api, rt.modules)
  _G.api = rt.api
  publish(loader.load(config, rt.api, nil, rt.modules))
end

-- Load into a new registry; only when that works does it replace the old one, so
-- requests in flight keep the actions they started with.
function R.reload()
  publish(loader.load(rt.config, rt.api, nil, rt.modules))
end

-- After a SIGHUP changed live keys of the config table in place (core/vm/config.c
-- gw_config_reload): api.config is a view of that same table and shows them already.
function R.reconfigure()
  derive(rt.config)
end

function R.summary()
  local lines, names = {}, {}
  for name in pairs(rt.reg.versions) do names[#names + 1] = name end
  table.sort(names)
  lines[#lines + 1] = string.format("actions: %d", #names)
  for _, name in ipairs(names) do
    local vs = {}
    for i, v in ipairs(rt.reg.versions[name]) do vs[i] = tostring(v) end
    local a = rt.reg.actions[name][rt.reg.versions[name][#vs]]
    lines[#lines + 1] = string.format("  %s (versions %s)%s", name, table.concat(vs, ", "),
      a._file and ("  " .. a._file) or "")
  end
  local mw = {}
  for name, m in pairs(rt.reg.middleware) do mw[#mw + 1] = name .. (m.global and " (global)" or "") end
  for name in pairs(rt.reg.connectionMiddleware) do mw[#mw + 1] = name .. " (connection)" end
  table.sort(mw)
  lines[#lines + 1] = string.format("middleware: %d", #mw)
  for _, m in ipairs(mw) do lines[#lines + 1] = "  " .. m end
  lines[#lines + 1] = string.format("modules: %d", #rt.modules)
  for _, m in ipairs(rt.modules) do lines[#lines + 1] = string.format("  %s  %s", m.name, m.path) end
  lines[#lines + 1] = string.format("routes: %d", router.count(rt.reg.routes))
  lines[#lines + 1] = string.format("handlers: %d (%d routes)", #rt.reg.handlers, handlers.count(rt.reg.handlerIndex))
  if consumers.count(rt.reg.consumers) > 0 then
    lines[#lines + 1] = string.format("consumers: %d", consumers.count(rt.reg.consumers))
    for _, c in ipairs(rt.reg.consumers.list) do
      lines[#lines + 1] = string.format("  %s  %s", c.pattern, c.file)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

-- `gateway openapi`: the OpenAPI document of what is loaded, pretty-printed.
function R.openapi()
  return openapi.encode(openapi.build(rt.reg, rt.config, nil, rt.json), "  ", rt.json)
end

function R.handle(transport, ctx)
  return transports[transport].handle(rt, ctx)
end

function R.fail(transport, ctx, status, message)
  return transports[transport].fail(rt, ctx, status, message)
end

-- A persistent connection opens: its connection object, with create middleware run.
-- `handle` is what gateway.conn needs to push to it. A WebSocket's object was prepared
-- on its upgrade request (transport/websocket.lua) and comes back as `fields`.
function R.open(type_, fields, handle)
  if fields.id then
    connections.open(rt, fields, handle)
    groups.opened(fields)
    return fields
  end
  return connections.new(rt, type_, fields, handle)
end

-- It closed: destroy middleware, and it is forgotten.
function R.close(_, connection)
  groups.closed(connection)
  connections.destroy(rt, connection)
end

function R.shutdown()
  rt.shuttingDown = true
  rt.api.cluster.stop()
end

R.rt = rt
return R
