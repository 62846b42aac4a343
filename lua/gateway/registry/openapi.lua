-- The OpenAPI 3.0.3 document of what is loaded (docs/openapi.md): actions, web routes and
-- handler routes with their generics, in router.resolve's precedence (what an earlier rule
-- always takes goes to x-unmapped-routes), the shared errors, Bearer sessions, and the
-- WebSocket side under x-websocket. Written with sorted keys through the gateway's JSON
-- encoder, so the same files give the same text. Serving it is the built-in `openapi`.

local core = require("gateway.core")
-- The gateway's JSON table (api.json's own copy), given by the caller of each entry point:
-- requiring gateway.json here would make a cjson instance of its own.
local json
local router = require("gateway.registry.router")
local handlers = require("gateway.registry.handlers")
local inputs = require("gateway.pipeline.inputs")
local validators = require("gateway.pipeline.validators")
local formatters = require("gateway.pipeline.formatters")

local O = {}

O.VERSION = "3.0.3"
O.ACTION = "openapi"

-- Tables made with A() are JSON arrays, even when empty; every other table the document
-- builds is an object.
local ARRAY = {}
local function A(t) return setmetatable(t or {}, ARRAY) end
O.array = A

-- Encoding ---------------------------------------------------------------------------------

local function sortedKeys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- A user's table (an outputExample, a default) is an array when its keys are 1..n.
local function looksArray(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local MAX_DEPTH = 100

local function encodeInto(out, v, indent, depth, lib)
  if depth > MAX_DEPTH then error("the OpenAPI document nests too deeply (a cycle in an outputExample?)", 0) end
  local t = type(v)
  if v == lib.null or v == nil then
    out[#out + 1] = "null"
  elseif v == lib.empty_array then
    out[#out + 1] = "[]"
  elseif t == "string" then
    -- cjson writes "/" as "\/": every "\/" in its output is such an escape.
    out[#out + 1] = (lib.encode(v):gsub("\\/", "/"))
  elseif t == "number" or t == "boolean" then
    out[#out + 1] = lib.encode(v)
  elseif t == "table" then
    local isArray = getmetatable(v) == ARRAY or looksArray(v)
    local nl, pad, inner = "", "", ""
    if indent then
      nl = "\n"
      pad = string.rep(indent, depth)
      inner = pad .. indent
    end
    if isArray then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "[" .. nl
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," .. nl end
        out[#out + 1] = inner
        encodeInto(out, v[i], indent, depth + 1, lib)
      end
      out[#out + 1] = nl .. pad .. "]"
    else
      local keys = sortedKeys(v)
      if #keys == 0 then out[#out + 1] = "{}" return end
      out[#out + 1] = "{" .. nl
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," .. nl end
        out[#out + 1] = inner .. (lib.encode(tostring(k)):gsub("\\/", "/")) .. (indent and ": " or ":")
        encodeInto(out, v[k], indent, depth + 1, lib)
      end
      out[#out + 1] = nl .. pad .. "}"
    end
  else
    out[#out + 1] = "null" -- functions and userdata have no JSON form
  end
end

-- The JSON text of `value`, object keys sorted; `indent` (a string) pretty-prints. `lib`
-- is the gateway's JSON table (api.json's own copy: its empty_array is the one users put in
-- an outputExample); gateway.json by default.
function O.encode(value, indent, lib)
  json = lib
  local out = {}
  encodeInto(out, value, indent, 0, lib)
  if indent then out[#out + 1] = "\n" end
  return table.concat(out)
end

-- The document for the gateway's own encoder (a message's data): empty arrays become
-- json.empty_array, which cjson alone would write as {}.
function O.plain(v, lib, depth)
  depth = depth or 0
  if type(v) ~= "table" then return v end
  if depth > MAX_DEPTH then error("the OpenAPI document nests too deeply", 0) end
  if getmetatable(v) == ARRAY and #v == 0 then return lib.empty_array end
  local out = {}
  for k, x in pairs(v) do out[k] = O.plain(x, lib, depth + 1) end
  return out
end

-- Small helpers ------------------------------------------------------------------------------

local function ref(kind, name) return { ["$ref"] = "#/components/" .. kind .. "/" .. name } end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return setmetatable(c, getmetatable(t))
end

local function jsonType(v)
  local t = type(v)
  if t == "string" then return "string" end
  if t == "boolean" then return "boolean" end
  if t == "number" then return math.type(v) == "integer" and "integer" or "number" end
  if t == "table" then return looksArray(v) and "array" or "object" end
  return nil
end

-- What a built-in formatter or validator (by name or as the function itself) says about
-- an input's type.
local STEP_HINTS = {
  formatter = { toNumber = { type = "number" }, toInteger = { type = "integer" },
    toBoolean = { type = "boolean" }, toString = { type = "string" } },
  validator = { email = { type = "string", format = "email" }, url = { type = "string", format = "uri" },
    uuid = { type = "string", format = "uuid" }, integer = { type = "integer" }, number = { type = "number" } },
}
local LIBRARIES = { formatter = formatters, validator = validators }

local function stepHints(schema, kind, steps)
  if steps == nil then return end
  if type(steps) ~= "table" or inputs.isCallable(steps) then steps = { steps } end
  for _, step in ipairs(steps) do
    local name
    if type(step) == "string" then
      name = step:match("([%w_]+)$")
    elseif type(step) == "function" then
      for n, fn in pairs(LIBRARIES[kind]) do
        if fn == step then name = n end
      end
    end
    local hint = name and STEP_HINTS[kind][name]
    if hint then
      for k, v in pairs(hint) do schema[k] = v end
    end
  end
end

-- The schema of one declared input (or resource field): default, type hints, description.
local function inputSchema(input)
  local s = {}
  if type(input) ~= "table" then return s end
  stepHints(s, "formatter", input.formatter)
  stepHints(s, "validator", input.validator)
  local default = input.default
  if default ~= nil and type(default) ~= "function" and default ~= json.null then
    s.default = default
    s.type = s.type or jsonType(default)
  end
  if type(input.description) == "string" then s.description = input.description end
  return s
end

-- Required as OpenAPI means it: a default fills a missing input, so that one is optional.
local function isRequired(input)
  return type(input) == "table" and input.required == true
    and (input.default == nil or input.default == json.null)
end

local function hasInputs(a)
  return next(a.inputs or {}) ~= nil
end

local function permissionSet(a)
  local set = {}
  for _, p in ipairs(a.permissions or {}) do set[p] = true end
  return set
end

local function needsAuth(a)
  return permissionSet(a).isAuthenticated == true
end

-- The error answers an operation may give.
local function errorResponses(responses, a, opts)
  responses["400"] = ref("responses", "BadRequest")
  local perms = permissionSet(a)
  if perms.isAuthenticated then responses["401"] = ref("responses", "Unauthorized") end
  for p in pairs(perms) do
    if p ~= "isAuthenticated" and p ~= "allowAny" then responses["403"] = ref("responses", "Forbidden") end
  end
  if opts.notFound then responses["404"] = ref("responses", "NotFound") end
  if opts.inputs then responses["422"] = ref("responses", "UnprocessableEntity") end
  responses["429"] = ref("responses", "TooManyRequests")
  responses["500"] = ref("responses", "InternalError")
  responses["503"] = ref("responses", "ServiceUnavailable")
  responses["504"] = ref("responses", "GatewayTimeout")
  return responses
end

local function security(op, a)
  if needsAuth(a) then op.security = A({ { bearerAuth = A() } }) end
end

-- The document ------------------------------------------------------------------------------

local BODY_METHODS = { post = true, put = true, patch = true }
local FIVE = { "get", "post", "put", "patch", "delete" }

local function newState(reg, config)
  local web = config.servers.web
  return {
    reg = reg, config = config,
    base = "/" .. web.urlPathForActions,
    items = {},       -- templateKey -> { path, names (of its path parameters), ops by method }
    opIds = {},       -- operationIds given
    unmapped = A(),   -- x-unmapped-routes
    schemas = {},     -- components.schemas
    schemaOf = {},    -- resource table -> its schema names
  }
end

-- "/api/users/{id}" -> "/api/users/{}" (templates that differ only in names are the same path).
local function templateKey(path)
  return (path:gsub("{[^}]*}", "{}"))
end

local function operationId(st, method, path)
  local base = method .. "_" .. path:sub(#st.base + 2):gsub("[^%w_]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  if base == method .. "_" then base = method .. "_root" end
  local id, n = base, 1
  while st.opIds[id] do
    n = n + 1
    id = base .. "_" .. n
  end
  st.opIds[id] = true
  return id
end

-- Put `op` at `path` for `method`. A path already there with other parameter names (the
-- same template) keeps its names: the operation's path parameters are renamed in order.
local function addOperation(st, path, method, op, pathParams)
  local key = templateKey(path)
  local item = st.items[key]
  if not item then
    item = { path = path, names = pathParams, ops = {} }
    st.items[key] = item
  end
  if item.ops[method] then return false end
  if item.path ~= path then
    for _, p in ipairs(op.parameters or {}) do
      if p["in"] == "path" then
        for i, name in ipairs(pathParams) do
          if p.name == name and item.names[i] then p.name = item.names[i] end
        end
      end
    end
  end
  op.operationId = operationId(st, method, item.path)
  item.ops[method] = op
  return true
end

local function unmapped(st, entry)
  st.unmapped[#st.unmapped + 1] = entry
end

-- The apiVersion parameter of an action with several versions.
local function versionParameter(versions, default)
  local enum = A()
  for i, v in ipairs(versions) do enum[i] = v end
  return {
    name = "apiVersion", ["in"] = "query", required = false,
    description = "The action's version (default: the latest, or the route's apiVersion)",
    schema = { type = "number", enum = enum, default = default },
  }
end

-- Per-version detail of an action with several versions (`x-versions`).
local function versionsExtension(st, name)
  local versions = st.reg.versions[name]
  if not versions or #versions < 2 then return nil end
  local out = {}
  for _, v in ipairs(versions) do
    local a = st.reg.actions[name][v]
    local ins = {}
    for key, input in pairs(a.inputs or {}) do
      local d = inputSchema(input)
      d.required = isRequired(input)
      ins[key] = d
    end
    out[tostring(v)] = { description = a.description, inputs = ins, outputExample = a.outputExample }
  end
  return out
end

-- Parameters and request body for an action's inputs: path parameters first (`pathParams`,
-- from the route, with their patterns), then the rest in the query (GET, DELETE, HEAD) or
-- a JSON or form body (POST, PUT, PATCH).
local function inputsOperation(a, method, pathParams)
  local params, taken = A(), {}
  for _, p in ipairs(pathParams or {}) do
    local schema = { type = "string" }
    if p.pattern then schema.pattern = p.pattern end
    local input = a.inputs and a.inputs[p.name]
    local param = { name = p.name, ["in"] = "path", required = true, schema = schema }
    param.description = p.description or (type(input) == "table" and type(input.description) == "string" and input.description or nil)
    params[#params + 1] = param
    taken[p.name] = true
  end
  local keys = sortedKeys(a.inputs or {})
  local body
  if BODY_METHODS[method] then
    local props, required = {}, A()
    for _, key in ipairs(keys) do
      if not taken[key] then
        props[tostring(key)] = inputSchema(a.inputs[key])
        if isRequired(a.inputs[key]) then required[#required + 1] = tostring(key) end
      end
    end
    if next(props) then
      local schema = { type = "object", properties = props }
      if #required > 0 then schema.required = required end
      body = {
        required = #required > 0,
        content = {
          ["application/json"] = { schema = schema },
          ["application/x-www-form-urlencoded"] = { schema = schema },
        },
      }
    end
  else
    for _, key in ipairs(keys) do
      if not taken[key] then
        local input = a.inputs[key]
        local param = { name = tostring(key), ["in"] = "query", schema = inputSchema(input) }
        param.description, param.schema.description = param.schema.description, nil
        if isRequired(input) then param.required = true end
        params[#params + 1] = param
      end
    end
  end
  return params, body
end

local function okResponse(a)
  local content = { schema = { type = "object" } }
  if a.outputExample ~= nil then content.example = a.outputExample end
  local r = { description = "OK", content = { ["application/json"] = content } }
  if a.matchExtensionMimeType then
    r.description = "OK: with a file extension in the path, the body in that extension's MIME type"
  end
  return r
end

-- One operation running action `a` (the version a request gets by default).
local function actionOperation(st, a, method, pathParams, tag, routeVersion)
  local params, body = inputsOperation(a, method, pathParams)
  -- Handler actions have no versions (a top-level action may share their name).
  local versions = not a._handler and st.reg.versions[a.name] or nil
  local taken = {}
  for _, p in ipairs(params) do taken[p.name] = true end
  if versions and #versions > 1 and not taken.apiVersion then
    params[#params + 1] = versionParameter(versions, tonumber(routeVersion) or versions[#versions])
  end
  local op = {
    summary = a.name, description = a.description, tags = A({ tag }),
    responses = errorResponses({ ["200"] = okResponse(a) }, a, { inputs = hasInputs(a) }),
    ["x-action"] = a.name,
  }
  if #params > 0 then op.parameters = params end
  if body then op.requestBody = body end
  if not a._handler then op["x-versions"] = versionsExtension(st, a.name) end
  security(op, a)
  return op
end

local function documented(a)
  if not a or a.toDocument == false then return false end
  for _, t in ipairs(a.blockedConnectionTypes or {}) do
    if t == "web" then return false end
  end
  return true
end

-- The action a web route runs by default: its apiVersion, else the latest.
local function routeAction(st, route)
  local byVersion = st.reg.actions[route.action]
  local versions = st.reg.versions[route.action]
  if not byVersion or not versions then return nil end
  local v = route.apiVersion
  if v ~= nil then v = tonumber(v) end
  return byVersion[v] or byVersion[versions[#versions]]
end

-- Does route `a` (compiled) take every path that `segs` ({literal} or {name, regex}
-- segments) can be? Conservative: false when it cannot tell.
local function covers(a, segs, trailing)
  local n = #a.segments
  if #segs < n or (#segs > n and not a.trailing) or (trailing and not a.trailing) then return false end
  for i = 1, n do
    local as, bs = a.segments[i], segs[i]
    if as.literal then
      if not (bs.literal and bs.literal:lower() == as.literal) then return false end
    elseif as.regex then
      -- A trailing variable's regex sees the rest of the path joined: not tried here.
      if a.trailing and i == n and #segs > n then return false end
      if not (bs.literal and core.regex_test(bs.literal, as.regex)) then return false end
    end
  end
  return true
end

-- The lists a method tries, as the router does (HEAD is GET's, and its own list only).
local METHOD_LISTS = { get = { "get", "all" }, post = { "post", "all" }, put = { "put", "all" },
  patch = { "patch", "all" }, delete = { "delete", "all" }, head = { "head" } }

-- The route of reg.routes that a request for `method` to a path of `segs` always reaches
-- before `self` (a route of those lists, or nil), or nil.
local function shadowingRoute(st, method, segs, self)
  for _, list in ipairs(METHOD_LISTS[method]) do
    for _, r in ipairs(st.reg.routes[list].routes) do
      if r == self then return nil end
      if covers(r, segs, self and self.trailing) then return r end
    end
  end
  return nil
end

local function routeLabel(st, r)
  return string.upper(r.method) .. " " .. st.base .. (r.path:sub(1, 1) == "/" and "" or "/") .. r.path
end

-- Web routes (paths.routes): each method's own list, then `all` for the usual five.
local function addRoutes(st)
  local function add(method, r)
    local a = routeAction(st, r)
    local other = shadowingRoute(st, method, r.segments, r)
    if other then
      unmapped(st, { route = routeLabel(st, r), method = string.upper(method),
        reason = "always taken first by the web route " .. routeLabel(st, other) })
      return
    end
    local parts, pathParams, names = {}, {}, {}
    for _, seg in ipairs(r.segments) do
      if seg.literal and seg.literal:find("[{}]") then
        unmapped(st, { route = routeLabel(st, r), method = string.upper(method),
          reason = "a { or } in the path cannot be written in an OpenAPI path" })
        return
      end
    end
    for i, seg in ipairs(r.segments) do
      if seg.literal then
        -- The route's own spelling (static segments match in any case).
        parts[i] = router.split(r.path)[i]
      else
        parts[i] = "{" .. seg.name .. "}"
        local p = { name = seg.name, pattern = seg.regex }
        if r.trailing and i == #r.segments then p.description = "the rest of the path (may contain /)" end
        pathParams[#pathParams + 1] = p
        names[#names + 1] = seg.name
      end
    end
    local path = st.base .. "/" .. table.concat(parts, "/")
    if not documented(a) then return end
    local op = actionOperation(st, a, method, pathParams, "routes", r.apiVersion)
    op.summary = a.name .. " (route " .. r.path .. ")"
    if not addOperation(st, path, method, op, names) then
      unmapped(st, { route = routeLabel(st, r), method = string.upper(method),
        reason = "another route has the same path template" })
    end
  end
  for _, method in ipairs(FIVE) do
    for _, r in ipairs(st.reg.routes[method].routes) do add(method, r) end
    for _, r in ipairs(st.reg.routes.all.routes) do add(method, r) end
  end
  for _, r in ipairs(st.reg.routes.head.routes) do add("head", r) end
end

-- A name /api/<name> reaches (router.resolve step 3): one segment, no extension to strip.
local function pathSegmentName(name)
  return name ~= "" and not name:find("[^%w_%-~!$&'*+,;=:@\128-\255]")
end

-- Actions by name at /api/<name>: GET (inputs in the query) and POST (in the body).
local function addActions(st)
  local names = sortedKeys(st.reg.versions)
  for _, name in ipairs(names) do
    local versions = st.reg.versions[name]
    local a = st.reg.actions[name][versions[#versions]]
    if documented(a) and name ~= O.ACTION then
      if not pathSegmentName(name) then
        unmapped(st, { action = name, reason = "the name is not a path segment: call it as "
          .. st.base .. "/?action=<name>" })
      else
        for _, method in ipairs({ "get", "post" }) do
          local taken = shadowingRoute(st, method, { { literal = name } })
          if taken then
            unmapped(st, { action = name, method = string.upper(method),
              reason = "the web route " .. routeLabel(st, taken) .. " takes " .. st.base .. "/" .. name })
          else
            addOperation(st, st.base .. "/" .. name, method, actionOperation(st, a, method, nil, "actions"), {})
          end
        end
      end
    end
  end
end

-- Handler patterns -----------------------------------------------------------------------

local META = {}
for c in ("^$.|?*+()[]{}\\"):gmatch(".") do META[c] = true end
local QUANT = { ["?"] = true, ["*"] = true, ["+"] = true, ["{"] = true }
local NOT_IN_PATH = { ["{"] = true, ["}"] = true, ["?"] = true, ["#"] = true, ["%"] = true }

-- The end of the group whose body starts at `i` (the index of its closing ")"), or nil.
local function groupEnd(body, i)
  local depth = 1
  while i <= #body do
    local c = body:sub(i, i)
    if c == "\\" then
      i = i + 2
    elseif c == "[" then
      i = i + 1
      if body:sub(i, i) == "^" then i = i + 1 end
      if body:sub(i, i) == "]" then i = i + 1 end
      while i <= #body and body:sub(i, i) ~= "]" do
        if body:sub(i, i) == "\\" then i = i + 1 end
        i = i + 1
      end
      i = i + 1
    elseif c == "(" then
      depth = depth + 1
      i = i + 1
    elseif c == ")" then
      depth = depth - 1
      if depth == 0 then return i end
      i = i + 1
    else
      i = i + 1
    end
  end
  return nil
end

-- A handler pattern as a path relative to /api/: "^items/(?P<pk>\d+)/$" ->
-- "items/{pk}/", { { name = "pk", pattern = "^(?:\d+)$" } }; or nil and why not. Only
-- patterns anchored at both ends, of literal text and whole named groups, are paths.
function O.patternPath(pattern)
  if pattern:sub(1, 1) ~= "^" then return nil, "not anchored with ^ (it matches anywhere in the route)" end
  local body = pattern:sub(2)
  local backslashes = #(body:match("(\\*)%$$") or "")
  if body:sub(-1) ~= "$" or backslashes % 2 == 1 then
    return nil, "not anchored with $ (it matches routes that continue)"
  end
  body = body:sub(1, -2)
  local out, params, seen, i = {}, A(), {}, 1
  while i <= #body do
    local c = body:sub(i, i)
    local literal
    if c == "\\" then
      local n = body:sub(i + 1, i + 1)
      if n == "" or n:match("[%w]") then return nil, "the escape \\" .. n .. " outside a named group" end
      literal, i = n, i + 2
    elseif c == "(" then
      local name, after = body:match("^%(%?P?<([%a_][%w_]*)>()", i)
      if not name then name, after = body:match("^%(%?'([%a_][%w_]*)'()", i) end
      if not name then return nil, "a group that is not a named capture" end
      local close = groupEnd(body, after)
      if not close then return nil, "an unbalanced group" end
      if QUANT[body:sub(close + 1, close + 1)] then return nil, "a quantifier after the group " .. name end
      if seen[name] then return nil, "the group " .. name .. " twice" end
      seen[name] = true
      -- ECMA-262 (OpenAPI's pattern) spells a named group (?<name>...).
      local regex = body:sub(after, close - 1):gsub("%(%?P<", "(?<")
      params[#params + 1] = { name = name, pattern = "^(?:" .. regex .. ")$" }
      out[#out + 1] = "{" .. name .. "}"
      i = close + 1
    elseif META[c] then
      return nil, "the metacharacter " .. c
    else
      literal, i = c, i + 1
    end
    if literal then
      if QUANT[body:sub(i, i)] then return nil, "a quantifier after " .. literal end
      if NOT_IN_PATH[literal] or literal:match("%s") then return nil, "the character " .. literal .. " in a path" end
      out[#out + 1] = literal
    end
  end
  return table.concat(out), params
end

-- The segments of a handler path for `covers`: literal ones, and variable ones (any
-- segment holding a parameter).
local function pathSegments(text)
  local segs = {}
  for _, seg in ipairs(router.split(text)) do
    if seg:find("{", 1, true) then segs[#segs + 1] = { name = seg } else segs[#segs + 1] = { literal = seg } end
  end
  return segs
end

-- Resource schemas -------------------------------------------------------------------------

local FIELD_TYPES = {
  string = { type = "string" }, str = { type = "string" }, text = { type = "string" },
  integer = { type = "integer" }, int = { type = "integer" },
  number = { type = "number" }, float = { type = "number" }, decimal = { type = "number" },
  boolean = { type = "boolean" }, bool = { type = "boolean" },
  array = { type = "array" }, list = { type = "array" },
  object = { type = "object" }, table = { type = "object" }, dict = { type = "object" },
  email = { type = "string", format = "email" }, url = { type = "string", format = "uri" },
  uri = { type = "string", format = "uri" }, uuid = { type = "string", format = "uuid" },
  date = { type = "string", format = "date" }, datetime = { type = "string", format = "date-time" },
  ["date-time"] = { type = "string", format = "date-time" },
}

-- One resource field as a schema; the keys the fields may carry (type, choices, readOnly,
-- blank, maxLength, minLength, default, description) are each read when present.
local function fieldSchema(field)
  local s = inputSchema(field)
  if type(field) ~= "table" then return s end
  local t = type(field.type) == "string" and FIELD_TYPES[field.type:lower()]
  if t then
    for k, v in pairs(t) do s[k] = v end
  end
  if math.type(field.maxLength) == "integer" then s.maxLength = field.maxLength end
  if math.type(field.minLength) == "integer" then s.minLength = field.minLength end
  if (s.maxLength or s.minLength) and not s.type then s.type = "string" end
  if field.blank == false and not s.minLength and (s.type == nil or s.type == "string") then s.minLength = 1 end
  if type(field.choices) == "table" then
    -- A list of values, of { value, label } pairs, or a map of value -> label.
    local enum = A()
    for _, c in ipairs(field.choices) do
      if type(c) == "table" then c = c.value or c[1] end
      if c ~= nil then enum[#enum + 1] = c end
    end
    if #enum == 0 then
      for _, k in ipairs(sortedKeys(field.choices)) do enum[#enum + 1] = k end
    end
    if #enum > 0 then s.enum = enum end
  end
  if field.readOnly == true then s.readOnly = true end
  if s.items == nil and s.type == "array" then s.items = {} end
  return s
end

-- fieldSchema for the specs, with the gateway's JSON table.
function O.fieldSchema(field, lib)
  json = lib
  return fieldSchema(field)
end

local function componentName(st, wanted)
  local base = wanted:gsub("[^%w%.%-_]", "_")
  local name, n = base, 1
  while st.schemas[name] do
    n = n + 1
    name = base .. "_" .. n
  end
  return name
end

-- The schemas of a handler's resource, made once per resource table: the object answered,
-- the body of create/update, of partial_update, and the page of a paginated list.
local function resourceSchemas(st, resource)
  if st.schemaOf[resource] then return st.schemaOf[resource] end
  local fields = type(resource.fields) == "table" and resource.fields or {}
  local keys = sortedKeys(fields)
  local objProps = { id = { type = "integer", readOnly = true } }
  local objRequired = A({ "id" })
  local inProps, inRequired = {}, A()
  for _, key in ipairs(keys) do
    local field = fields[key]
    local s = fieldSchema(field)
    local out = copy(s)
    -- Every declared field is in an answer: null when it has no value, which a required
    -- field or one with a default always has.
    if not isRequired(field) and not (type(field) == "table" and field.default ~= nil) then
      out.nullable = true
      if out.enum then
        out.enum = copy(out.enum)
        out.enum[#out.enum + 1] = json.null
      end
    end
    out.default = nil
    objProps[key] = out
    objRequired[#objRequired + 1] = key
    if not (type(field) == "table" and field.readOnly == true) then
      inProps[key] = s
      if isRequired(field) then inRequired[#inRequired + 1] = key end
    end
  end
  local base = tostring(resource.name or "Resource")
  base = base:sub(1, 1):upper() .. base:sub(2)
  local names = {}
  local function put(suffix, schema)
    local name = componentName(st, base .. suffix)
    st.schemas[name] = schema
    names[suffix] = name
  end
  put("", { type = "object", properties = objProps, required = objRequired })
  local request = { type = "object", properties = inProps }
  if #inRequired > 0 then request.required = inRequired end
  put("Request", request)
  put("Patch", { type = "object", properties = copy(inProps),
    description = "partial_update: only the fields given are validated and stored" })
  if math.type(resource.pageSize) == "integer" then
    put("Page", {
      type = "object", required = A({ "count", "next", "previous", "results" }),
      properties = {
        count = { type = "integer" },
        next = { type = "string", nullable = true, description = "the route of the next page, e.g. items/?page=3" },
        previous = { type = "string", nullable = true },
        results = { type = "array", items = ref("schemas", names[""]) },
      },
    })
  end
  st.schemaOf[resource] = names
  return names
end

local function jsonContent(schema)
  return { ["application/json"] = { schema = schema } }
end

-- The operation for a handler's action on one HTTP method.
local function handlerOperation(st, h, a, generic, method, pathParams, tag)
  local op
  local resource = type(h.resource) == "table" and h.resource or nil
  if generic and resource then
    local names = resourceSchemas(st, resource)
    local obj = ref("schemas", names[""])
    local responses, params, body = {}, A(), nil
    for _, p in ipairs(pathParams) do
      params[#params + 1] = { name = p.name, ["in"] = "path", required = true,
        schema = { type = "string", pattern = p.pattern } }
    end
    local opts = {}
    if generic == "list" then
      if names.Page then
        responses["200"] = { description = "A page of objects in id order", content = jsonContent(ref("schemas", names.Page)) }
        params[#params + 1] = { name = "page", ["in"] = "query", description = "a page number, or last",
          schema = { type = "string", default = "1" } }
        opts.notFound = true
      else
        responses["200"] = { description = "The objects in id order (at most redis.maxListSize)",
          content = jsonContent({ type = "array", items = obj }) }
      end
    elseif generic == "retrieve" then
      responses["200"] = { description = "The object", content = jsonContent(obj) }
      opts.notFound = true
    elseif generic == "create" then
      responses["201"] = { description = "Created: the stored object", content = jsonContent(obj) }
      body = { required = true, content = jsonContent(ref("schemas", names.Request)) }
      opts.inputs = true
    elseif generic == "update" or generic == "partial_update" then
      responses["200"] = { description = "The stored object", content = jsonContent(obj) }
      body = { required = true, content = jsonContent(ref("schemas", names[generic == "update" and "Request" or "Patch"])) }
      opts.inputs, opts.notFound = true, true
    else -- remove / destroy
      responses["204"] = { description = "Deleted" }
      opts.notFound = true
    end
    op = { summary = generic .. " " .. tostring(resource.name), description = a.description,
      tags = A({ tag }), responses = errorResponses(responses, a, opts) }
    if #params > 0 then op.parameters = params end
    if body then op.requestBody = body end
  else
    op = actionOperation(st, a, method, pathParams, tag)
    op.summary = a.name
    op.responses["404"] = op.responses["404"] or ref("responses", "NotFound")
  end
  op["x-handler-action"] = a.name
  security(op, a)
  return op
end

local PK_GENERICS = { update = true, partial_update = true, remove = true }

-- Handler routes over HTTP: GET retrieve (the pattern names pk) or list, POST create, PUT
-- update, PATCH partial_update, DELETE remove.
local function addHandlers(st)
  local index = st.reg.handlerIndex
  local earlier = {} -- patterns of the handlers before, in order
  for _, h in ipairs(index.handlers) do
    local tag = h.name or (type(h.resource) == "table" and type(h.resource.name) == "string" and h.resource.name) or "handlers"
    for _, pattern in ipairs(h.routes) do
      local text, params = O.patternPath(pattern)
      local label = { route = pattern, handler = h.name }
      if not text then
        label.reason = params
        unmapped(st, label)
      else
        local path = st.base .. "/" .. text
        local segs = pathSegments(text)
        -- An earlier handler's pattern that takes this path, whatever the method.
        local before
        for _, e in ipairs(earlier) do
          if (#params == 0 and core.regex_test(text, e.pattern)) or (e.key and e.key == templateKey(path)) then
            before = e.pattern
            break
          end
        end
        if before then
          label.reason = "always taken first by the handler route " .. before
          unmapped(st, label)
        elseif #segs == 1 and segs[1].literal and st.reg.versions[segs[1].literal] then
          label.reason = "the action " .. segs[1].literal .. " takes " .. st.base .. "/" .. segs[1].literal
          unmapped(st, label)
        else
          local names = {}
          for i, p in ipairs(params) do names[i] = p.name end
          local hasPk = false
          for _, p in ipairs(params) do if p.name == "pk" then hasPk = true end end
          for _, method in ipairs(FIVE) do
            local an = handlers.HTTP_ACTIONS[string.upper(method)]
              or (hasPk and "retrieve" or "list")
            local a = h.actions[an]
            -- A generic that needs the pk (update, partial_update, remove) answers 404 on
            -- a pattern without one; create on a pattern with one makes a new object as
            -- the list pattern does: both are left out (DRF's list and detail routes).
            local generic = a and a._generic
            if generic == "destroy" then generic = "remove" end
            if generic and (hasPk and generic == "create" or not hasPk and PK_GENERICS[generic]) then a = nil end
            if a and a.toDocument ~= false then
              local route = shadowingRoute(st, method, segs)
              if route then
                unmapped(st, { route = pattern, handler = h.name, method = string.upper(method),
                  reason = "the web route " .. routeLabel(st, route) .. " takes it first" })
              else
                if not addOperation(st, path, method, handlerOperation(st, h, a, generic, method, params, tag), names) then
                  unmapped(st, { route = pattern, handler = h.name, method = string.upper(method),
                    reason = "a web route has the same path template" })
                end
              end
            end
          end
        end
      end
      earlier[#earlier + 1] = { pattern = pattern, key = text and templateKey(st.base .. "/" .. text) }
    end
  end
end

-- WebSocket ------------------------------------------------------------------------------

-- The names of the actions of a handler or consumer, but those with toDocument = false.
local function actionNames(actions)
  local names = A()
  for _, k in ipairs(sortedKeys(actions or {})) do
    if actions[k].toDocument ~= false then names[#names + 1] = k end
  end
  return names
end

local function websocketExtension(st)
  local ws = st.config.servers.websocket
  if not ws.enabled then return nil end
  local hs = A()
  for _, h in ipairs(st.reg.handlerIndex.handlers) do
    local routes = A()
    for i, p in ipairs(h.routes) do routes[i] = p end
    hs[#hs + 1] = { name = h.name, routes = routes, actions = actionNames(h.actions) }
  end
  local cs = A()
  for _, c in ipairs(st.reg.consumers.list) do
    local children = A()
    for _, child in ipairs(c.children.handlers) do children[#children + 1] = child.name end
    local perms = A()
    for i, p in ipairs(c.permissions) do perms[i] = p end
    cs[#cs + 1] = { url = c.pattern, name = c.name, actions = actionNames(c.actions),
      handlers = children, permissions = perms }
  end
  local only = A()
  for _, name in ipairs(sortedKeys(st.reg.versions)) do
    local versions = st.reg.versions[name]
    local a = st.reg.actions[name][versions[#versions]]
    if a.toDocument ~= false and not documented(a) then only[#only + 1] = name end
  end
  return {
    path = ws.path,
    description = "WebSocket (and TCP) messages: {\"action\", \"route\", \"data\", \"request_id\"}, answered "
      .. "{\"errors\", \"data\", \"action\", \"route\", \"status\", \"request_id\"}. Every action above is "
      .. "also a message by name; handler routes and consumers are listed here (docs/routing.md).",
    handlers = hs, consumers = cs, actionsNotOnWeb = only,
  }
end

-- Components -------------------------------------------------------------------------------

local function errorResponse(description)
  return { description = description, content = jsonContent(ref("schemas", "Error")) }
end

local function components(st)
  st.schemas.Error = {
    type = "object", required = A({ "error", "errors" }),
    description = "An error answer: error is the first message (or the error's own fields), errors every "
      .. "message; input failures of handler generics are objects mapping each field to its messages",
    properties = {
      error = { oneOf = A({ { type = "string" }, { type = "object" } }) },
      errors = { type = "array", items = { oneOf = A({ { type = "string" }, { type = "object" } }) } },
    },
  }
  return {
    schemas = st.schemas,
    responses = {
      BadRequest = errorResponse("Bad request: a malformed body, or an action or middleware error without a status"),
      Unauthorized = errorResponse("Authentication credentials were not provided."),
      Forbidden = errorResponse("You do not have permission to perform this action."),
      NotFound = errorResponse("Not found"),
      UnprocessableEntity = errorResponse("Missing or invalid inputs"),
      TooManyRequests = errorResponse("Too many pending requests"),
      InternalError = errorResponse("The server experienced an internal error"),
      ServiceUnavailable = errorResponse("Redis unavailable, or the server is shutting down"),
      GatewayTimeout = errorResponse("The action timed out"),
    },
    securitySchemes = {
      bearerAuth = { type = "http", scheme = "bearer",
        description = "A session token from api.session.create (e.g. the login action): Authorization: Bearer <token>" },
    },
  }
end

-- The servers: openapi.servers when the config lists some; else `origin`, the URL the
-- document was asked at (false: asked, at an unknown URL); else (not asked: the command)
-- the web listener of the config. "/" when none is known: OpenAPI resolves a relative URL
-- against where the document was found.
local function serverList(config, origin)
  local list = A()
  local cfg = config.openapi or {}
  for _, url in ipairs(cfg.servers or {}) do list[#list + 1] = { url = url } end
  if #list > 0 then return list end
  if origin then return A({ { url = origin } }) end
  if origin == false then return A({ { url = "/" } }) end
  local web = config.servers.web
  local scheme = type(web.tls) == "table" and web.tls.cert and "https" or "http" -- TLS on: a cert
  if web.port and web.port > 0 then
    local host = web.host
    if host == "0.0.0.0" or host == "" then host = "127.0.0.1" elseif host == "::" then host = "::1" end
    if host:find(":", 1, true) then host = "[" .. host .. "]" end
    return A({ { url = scheme .. "://" .. host .. ":" .. web.port } })
  end
  return A({ { url = "/" } })
end

-- The document for the registry `reg` under `config`, as a table (encode with O.encode);
-- `origin` as for serverList, `lib` the gateway's JSON table.
function O.build(reg, config, origin, lib)
  json = lib
  local st = newState(reg, config)
  addRoutes(st)
  addActions(st)
  addHandlers(st)
  local paths = {}
  for _, item in pairs(st.items) do
    local ops = {}
    for method, op in pairs(item.ops) do ops[method] = op end
    paths[item.path] = ops
  end
  local cfg = config.openapi or {}
  local title = cfg.title
  if type(title) ~= "string" or title == "" then title = config.name end
  local info = { title = title, version = cfg.version or "1.0.0" }
  if type(cfg.description) == "string" and cfg.description ~= "" then info.description = cfg.description end
  local doc = {
    openapi = O.VERSION,
    info = info,
    servers = serverList(config, origin),
    paths = paths,
    components = components(st),
    ["x-unmapped-routes"] = st.unmapped,
  }
  doc["x-websocket"] = websocketExtension(st)
  return doc
end

-- The origin a request reached the gateway at, from its Host header (checked: a host name,
-- IPv4 or [IPv6] address and a port), or nil.
local function originOf(config, connection)
  local raw = connection and connection.rawConnection
  local host = raw and raw.headers and raw.headers.host
  if type(host) ~= "string" or #host > 255 or not host:match("^[%w%.%-]+$")
    and not host:match("^[%w%.%-]+:%d+$") and not host:match("^%[[%x:%.]+%]:?%d*$") then
    return nil
  end
  local tls = config.servers.web.tls
  local scheme = type(tls) == "table" and tls.cert and "https" or "http"
  return scheme .. "://" .. host
end

-- The built-in `openapi` action (GET /api/openapi.json), unless the project defines its own
-- or sets openapi.enabled = false. Over HTTP it answers the bare document whatever the
-- path's extension (it sets the connection's extension to json: matchExtensionMimeType
-- then sends data.body as application/json, without the metadata an action's body gets);
-- over WebSocket and TCP the document is the message's data.
function O.addBuiltin(reg, api, config, lib)
  if reg.actions[O.ACTION] then return end
  local cfg = config.openapi or {}
  if cfg.enabled == false then return end
  -- The text for each origin asked, kept with this registry (a reload makes a new one); a
  -- few origins at most, so Host headers cannot make it grow.
  local texts, count = {}, 0
  local action = {
    name = O.ACTION, description = "Return the OpenAPI 3 document of this API", version = 1,
    inputs = {}, middleware = {}, permissions = {}, toDocument = false, _file = "(built in)",
    matchExtensionMimeType = true, outputExample = { openapi = O.VERSION },
    run = function(_, data)
      local connection = data.connection
      local origin = originOf(config, connection) or false
      if connection.type == "web" then
        connection.extension = "json"
        local key = origin or ""
        local text = texts[key]
        if not text then
          text = O.encode(O.build(reg, config, origin, lib), nil, lib)
          if count >= 8 then texts, count = {}, 0 end
          texts[key], count = text, count + 1
        end
        data.body = text
      else
        data.response = O.plain(O.build(reg, config, origin, lib), lib)
      end
    end,
  }
  inputs.compile(action, api)
  reg.actions[O.ACTION] = { [1] = action }
  reg.versions[O.ACTION] = { 1 }
end

return O
