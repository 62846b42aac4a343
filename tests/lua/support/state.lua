-- A gateway state for specs, built by the same code as production:
--   * the config table the C loader (core/vm/config.c) would give: the defaults as
--     gateway.lua.example documents them (tests/unit/test_config.c checks that file
--     against the C schema, key by key), merged with the spec's overrides, relative
--     paths made absolute against the repository root;
--   * gateway.runtime.init(config), which builds `api` with apiModule.new and loads
--     actions, middleware and routes with loader.load, as gw_lua_new does.
-- By default that loads the repository's own actions/ and middleware/, the example
-- files users start from. What needs the event loop (api.sleep, api.redis, timers) is
-- not there outside the gateway: it raises "... is only available inside the gateway".
--
-- runtime.rt is one per Lua state, so each state.new() replaces the previous state.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local core = require("gateway.core") -- build/lua/gateway/core.so (make test-lua builds it)
local runtime = require("gateway.runtime")

local S = {}

local function cwd()
  local p = assert(io.popen("pwd"))
  local dir = p:read("l")
  p:close()
  return dir
end

S.ROOT = cwd()
assert(core.is_dir(S.ROOT .. "/actions") and core.is_dir(S.ROOT .. "/lua/gateway"),
  "run the specs from the repository root (busted tests/lua)")

-- The documented defaults: a fresh table each call.
function S.defaults()
  local chunk = assert(loadfile(S.ROOT .. "/gateway.lua.example", "t", {}))
  return chunk()
end

-- A section is a table of named keys (servers, general...); lists (paths.actions,
-- missingParamChecks, modules) are replaced whole, as a config file would.
local function isSection(t)
  return type(t) == "table" and next(t) ~= nil and t[1] == nil
end

local function merge(into, over, prefix)
  for k, v in pairs(over) do
    local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if into[k] == nil then error("config: unknown key " .. key, 0) end
    if isSection(into[k]) and type(v) == "table" then
      merge(into[k], v, key)
    else
      into[k] = v
    end
  end
end

local function absolute(dir, path)
  if path:sub(1, 1) == "/" then return path end
  return dir .. "/" .. path
end

-- The completed config: defaults < overrides; paths relative to 'dir' (the root).
function S.config(overrides, dir)
  dir = dir or S.ROOT
  local config = S.defaults()
  merge(config, overrides or {})
  for _, key in ipairs({ "actions", "middleware" }) do
    local list = config.paths[key]
    if type(list) == "string" then list = { list } end
    for i, p in ipairs(list) do list[i] = absolute(dir, p) end
    config.paths[key] = list
  end
  config.paths.routes = absolute(dir, config.paths.routes)
  config.paths.public = absolute(dir, config.paths.public)
  return config
end

-- Build the state: runtime.init(config) as the gateway does at startup. Raises the
-- loader's "file[:line]: reason" when a file does not load.
function S.new(overrides, dir)
  local config = S.config(overrides, dir)
  runtime.init(config, {})
  local st = { config = config, runtime = runtime, rt = runtime.rt, api = runtime.rt.api }

  -- A connection opened as a transport opens it (gw_conn_push_peer's fields).
  function st.connection(type_, fields)
    local f = { remoteIP = "127.0.0.1", remotePort = 40000 }
    for k, v in pairs(fields or {}) do f[k] = v end
    return runtime.open(type_ or "socket", f, nil)
  end

  -- One message on a persistent connection, as gw_conn_message hands it to the
  -- runtime: returns the answer text (nil when none) and whether to close.
  function st.message(connection, text, binary)
    return runtime.handle(connection.type, { connection = connection, text = text, binary = binary == true })
  end

  -- The same, with the JSON envelope decoded.
  function st.call(connection, message)
    local text = st.message(connection, type(message) == "string" and message or st.rt.json.encode(message))
    return st.rt.json.decode(text), text
  end

  -- One HTTP request as gw_http.c hands it to the runtime ('query' the decoded query
  -- string as a table, 'headers' lower-case names): returns status, headers, body.
  function st.web(method, path, query, headers, body)
    return runtime.handle("web", { method = method, path = path, rawPath = path, query = query or {},
      headers = headers or {}, body = body, remoteIP = "127.0.0.1", remotePort = 40001 })
  end

  -- The inputs pipeline of a loaded action, with the config's missing checks.
  function st.inputs(actionName, params, connection, version)
    local versions = assert(st.rt.reg.versions[actionName], "no action " .. actionName)
    local action = st.rt.reg.actions[actionName][version or versions[#versions]]
    local inputs = require("gateway.pipeline.inputs")
    return inputs.process(action, params, connection or {}, st.rt.inputOpts), params
  end

  return st
end

return S
