-- The web transport (SPEC §5, §6 web paths, §8 web): turns a request table from C into
-- a connection and params, runs the processor, and renders status, headers and body.
-- Which action a path names is the router's (gateway.registry.router.resolve); static
-- files are served by the C core before a GET or HEAD reaches Lua.

local core = require("gateway.core")
local processor = require("gateway.pipeline.processor")
local connections = require("gateway.services.connections")
local router = require("gateway.registry.router")
local metrics = require("gateway.pipeline.metrics")

local W = {}

local CORS_METHODS = "HEAD, GET, POST, PUT, PATCH, DELETE, OPTIONS"
local JSON_TYPE = "application/json; charset=utf-8"

local function baseHeaders()
  return { ["Access-Control-Allow-Origin"] = "*" }
end

local function mediaType(headers)
  local ct = headers["content-type"] or ""
  return (ct:match("^%s*([^;%s]+)") or ""):lower(), ct
end

-- The headers of one multipart part, names lower-case; nil when a line is not a header.
-- The value ends at the line's last non-space, found by `.*()%S` in one pass: the shorter
-- `(.-)%s*$` tries `%s*$` again at every character of a run of spaces, which is quadratic
-- and cannot be stopped by the cpuTimeout hook.
local function partHeaders(head)
  local h = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, from = line:match("^([^:%s]+):%s*()")
    if not k then return nil end
    h[k:lower()] = line:sub(from, line:match(".*()%S"))
  end
  return h
end

-- `form-data; name="a"; filename="b"` -> "form-data", { name = "a", filename = "b" };
-- nil when it does not parse. Parameters are read in order, so `name=` is never found
-- inside `filename=`, nor inside a quoted value.
local function dispositionParams(v)
  local kind, pos = v:match("^([^;%s]+)%s*()")
  if not kind then return nil end
  local params = {}
  while pos <= #v do
    local k, p = v:match("^;%s*([^=;%s]+)%s*=%s*()", pos)
    if not k then return v:match("^;%s*$", pos) and kind:lower(), params end
    local val
    if v:sub(p, p) == '"' then val, pos = v:match('^"([^"]*)"%s*()', p)
    else val, pos = v:match("^([^;%s]*)%s*()", p) end
    if not val then return nil end
    params[k:lower()] = val
  end
  return kind:lower(), params
end

-- multipart/form-data (RFC 7578): fields become strings, files { filename, type, data };
-- a repeated name keeps the last part, as ActionHero's form parser does. nil when the
-- body is malformed: no boundary, a delimiter not followed by CRLF, no closing
-- delimiter, a part without `Content-Disposition: form-data; name=...`, or text that is
-- not UTF-8.
local function parseMultipart(body, contentType)
  local boundary = contentType:match('[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]="([^"]+)"')
    or contentType:match("[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]=([^;%s]+)")
  if not boundary then return nil end
  local params, delim = {}, "--" .. boundary
  local pos = body:find(delim, 1, true)
  if not pos or (pos > 1 and body:sub(pos - 2, pos - 1) ~= "\r\n") then return nil end
  pos = pos + #delim
  while true do
    if body:sub(pos, pos + 1) == "--" then break end
    pos = body:match("^[ \t]*\r\n()", pos) -- CRLF after the delimiter
    if not pos then return nil end
    local headerEnd = body:find("\r\n\r\n", pos, true)
    if not headerEnd then return nil end
    local head = body:sub(pos, headerEnd - 1)
    local headers = partHeaders(head)
    local nextDelim = body:find("\r\n" .. delim, headerEnd + 4, true)
    if not headers or not nextDelim then return nil end
    local kind, disposition = dispositionParams(headers["content-disposition"] or "")
    if kind ~= "form-data" or not disposition.name then return nil end
    local value = body:sub(headerEnd + 4, nextDelim - 1)
    -- Names, field values and file names are text; only a file's data may be any bytes.
    if not core.utf8_valid(head) or (not disposition.filename and not core.utf8_valid(value)) then
      return nil
    end
    if disposition.filename then
      params[disposition.name] = { filename = disposition.filename, type = headers["content-type"], data = value }
    else
      params[disposition.name] = value
    end
    pos = nextDelim + 2 + #delim
  end
  return params
end

-- Are the keys and values of decoded query or form params all UTF-8 (`a=%FF`), a
-- repeated key's list included?
local function allUtf8(params)
  for k, v in pairs(params) do
    if not core.utf8_valid(k) then return false end
    if type(v) == "string" then v = { v } end
    for _, x in ipairs(v) do
      if not core.utf8_valid(x) then return false end
    end
  end
  return true
end

-- A form body with a `%` not followed by two hex digits (browsers always escape `%`).
local function badEscape(body)
  return body:find("%", 1, true) ~= nil and body:gsub("%%%x%x", ""):find("%", 1, true) ~= nil
end

-- Body params by content type; nil and a message when the body is malformed. A JSON
-- object gives its keys; any other JSON value but null (array, string, number, boolean)
-- becomes params.payload; null and an empty body give nothing.
local function bodyParams(rt, ctx)
  local body = ctx.body
  if not body or body == "" then return {} end
  local mt, ct = mediaType(ctx.headers)
  local looksJson = mt == "application/json" or mt:match("%+json$")
    or (mt == "" and body:match("^%s*[%[{]"))
  if looksJson then
    local value, why = processor.decode(rt, body)
    if value == nil then return nil, why and "invalid JSON body: " .. why or "invalid JSON body" end
    if value == rt.json.null then return {} end
    if type(value) == "table" and not body:match("^%s*%[") then return value end
    return { payload = value }
  elseif mt == "application/x-www-form-urlencoded" then
    if not core.utf8_valid(body) or badEscape(body) then return nil, "invalid form body" end
    local params = core.parse_query(body)
    if not allUtf8(params) then return nil, "invalid form body" end
    return params
  elseif mt == "multipart/form-data" then
    local params = parseMultipart(body, ct)
    if not params then return nil, "invalid multipart body" end
    return params
  end
  return {}
end

local encode = processor.encode

-- The response body table: response, error/errors, metadata.
local function bodyTable(rt, data)
  local body = data.response
  if type(body) ~= "table" then body = { response = body } end
  -- A result that is not an object (data.body, see the processor) goes under `response`,
  -- beside what middleware added, as a non-table data.response does.
  if data.body ~= nil then body.response = data.body end
  if data.error then
    body.error = data.error.fields or data.error.message
    body.errors = data.errors
  end
  if rt.config.servers.web.metadata then
    local c = data.connection
    body.serverInformation = {
      serverName = rt.config.name,
      apiVersion = data.params and data.params.apiVersion or nil,
      requestDuration = math.floor((data.duration or 0) * 1000 + 0.5) / 1000,
      currentTime = math.floor(core.wall_ms()),
    }
    body.requesterInformation = {
      id = c.id, remoteIP = c.remoteIP,
      receivedParams = processor.loggableParams(rt, data.params),
    }
  end
  return body
end
W.bodyTable = bodyTable -- the spec helper's answers too (transport/test.lua)

local function jsonpName(params)
  local cb = params and params.callback
  if type(cb) == "string" and cb ~= "" and #cb <= 128 and not cb:find("[^%w_%.%$]") then return cb end
  return nil
end

-- The headers of a JSON answer when the action set none: one table for all of them,
-- which the transport only reads.
local JSON_HEADERS = { ["Access-Control-Allow-Origin"] = "*", ["Content-Type"] = JSON_TYPE }

-- status, headers, body for a finished data.
local function render(rt, data, ctx)
  local own, headers = data.headers, nil
  if own and next(own) ~= nil then
    headers = baseHeaders()
    for k, v in pairs(own) do headers[k] = tostring(v) end
  end
  if data.toRender == false then return 204, headers or baseHeaders(), "" end
  local status = data.status
  local extension = ctx.connection and ctx.connection.extension
  if not data.error and extension and data.actionTemplate and data.actionTemplate.matchExtensionMimeType then
    -- The action answers as a file of that type: data.body (or data.response) is the body.
    headers = headers or baseHeaders()
    headers["Content-Type"] = headers["Content-Type"] or core.mime_type(extension)
    local body = data.body
    if body == nil then body = data.response end
    if type(body) ~= "string" then body = encode(rt, body) or "" end
    return status, headers, body
  end
  local bodyValue
  if ctx.handlerStyle then
    -- Handler routes answer the result itself (an array for a list), or the error.
    bodyValue = data.error and { error = data.error.fields or data.error.message, errors = data.errors }
    if not bodyValue then
      bodyValue = data.body
      if bodyValue == nil then bodyValue = data.response end
    end
  else
    bodyValue = bodyTable(rt, data)
  end
  local text = encode(rt, bodyValue)
  if not text then
    status = 500
    text = encode(rt, { error = processor.INTERNAL, errors = { processor.INTERNAL } })
  end
  local cb = jsonpName(ctx.query)
  if cb then
    headers = headers or baseHeaders()
    headers["Content-Type"] = "application/javascript; charset=utf-8"
    text = cb .. "(" .. text .. ");"
  elseif not headers then
    headers = JSON_HEADERS
  elseif not headers["Content-Type"] then
    headers["Content-Type"] = JSON_TYPE
  end
  return status, headers, text
end

-- A plain JSON error without the processor (bad path, bad body).
-- The answer alone, not logged: (status, headers, body).
local function errorAnswer(rt, status, message)
  local headers = baseHeaders()
  headers["Content-Type"] = JSON_TYPE
  return status, headers, encode(rt, { error = message, errors = { message } })
end
W.errorAnswer = errorAnswer

-- Counted for /metrics under action "" (no action ran), and logged.
local PID = core.pid()
local function plainError(rt, status, message, ctx)
  metrics.observe("web", "", status)
  if core.log_enabled("info") then
    core.log("info", nil, { "type", "web", "status", status, "method", ctx.method, "path", ctx.path,
      "requestId", ctx.requestId, "remoteIP", ctx.remoteIP, "pid", PID, "error", message })
  end
  return errorAnswer(rt, status, message)
end

-- "/<urlPathForActions>" and "/<urlPathForFiles>", with and without a slash after them,
-- made once per config.
local prefixes = setmetatable({}, { __mode = "k" })
local function prefixesOf(config)
  local p = prefixes[config]
  if not p then
    local web = config.servers.web
    local api, files = "/" .. web.urlPathForActions, "/" .. web.urlPathForFiles
    p = { api = api, apiSlash = api .. "/", files = files, filesSlash = files .. "/" }
    prefixes[config] = p
  end
  return p
end

-- The path after /<urlPathForActions>, or nil when the path is elsewhere.
local function apiRest(rt, path)
  local p = prefixesOf(rt.config)
  if path == p.api or path == p.apiSlash then return "" end
  if path:find(p.apiSlash, 1, true) == 1 then return path:sub(#p.apiSlash + 1) end
  return nil
end

function W.handle(rt, ctx)
  local method = ctx.method
  if method == "OPTIONS" then
    local headers = baseHeaders()
    headers["Access-Control-Allow-Methods"] = CORS_METHODS
    headers["Access-Control-Allow-Headers"] = ctx.headers["access-control-request-headers"] or "Content-Type, Authorization"
    headers["Access-Control-Max-Age"] = "86400"
    return 204, headers, ""
  end

  local path = ctx.path
  local rest = apiRest(rt, path)
  if not rest then
    local p = prefixesOf(rt.config)
    if path == p.files or path:find(p.filesSlash, 1, true) == 1 then
      return plainError(rt, 404, "That file is not found", ctx)
    end
    return plainError(rt, 404, "unknown action or invalid apiVersion", ctx)
  end

  local query = ctx.query -- split and decoded by the HTTP layer (a repeated key is a list)
  if not allUtf8(query) then return plainError(rt, 400, "invalid query string", ctx) end
  local params = {}
  for k, v in pairs(query) do params[k] = v end
  if method ~= "GET" and method ~= "HEAD" then
    local fromBody, err = bodyParams(rt, ctx)
    if not fromBody then return plainError(rt, 400, err, ctx) end
    for k, v in pairs(fromBody) do params[k] = v end
  end

  -- Which action (SPEC §6): the router decides, and merges the params of the route or
  -- handler that chose it into params. What the processor needs to know of the choice
  -- goes on ctx (its `extra`).
  -- Plain finds first: an unanchored pattern is tried at every position of the path.
  local extension = path:find(".", 1, true) and path:match("%.([^./]+)$") or nil
  local rawPath = ctx.rawPath
  local rawRest
  if rawPath == path then rawRest = rest elseif rawPath then rawRest = apiRest(rt, rawPath) end
  local name, routeParams, matched, handlerAction =
    router.resolve(rt.reg, method, rest, rawRest, params, extension)
  if not name then return plainError(rt, matched, routeParams, ctx) end -- a handler's 405
  if handlerAction then
    ctx.handlerAction, ctx.handlerStyle = handlerAction, true
    ctx.route, ctx.matchedRoute, ctx.routeParams = rest, matched, routeParams
  else
    if matched then
      ctx.route, ctx.routeParams = rest, routeParams
      ctx.matchedRoute = { method = matched.method, path = matched.path, action = matched.action }
    end
    params.action = name
  end

  -- Sessions (SPEC §9): `Authorization: Bearer <token>` restores connection.user before
  -- middleware and permissions run; an unknown or expired token leaves the request
  -- unauthenticated; Redis failing answers its 503 (looked up before the connection exists).
  local auth = ctx.headers.authorization
  local user, token, sessionErr
  if auth then
    user, token, sessionErr = rt.api.session.fromHeader(auth)
    if sessionErr then return plainError(rt, sessionErr.status, sessionErr.message, ctx) end
  end

  -- The connection, built whole. Create middleware, when there is some, sees it as it is
  -- before the request's params are on it, as for any new connection.
  local watched = #rt.reg.connectionMiddlewareList > 0
  local connection = {
    id = core.random_id(), type = "web", params = watched and {} or params, pendingActions = 0,
    totalActions = 0, messageCount = watched and 0 or 1, connectedAt = math.floor(core.wall_ms()),
    remoteIP = ctx.remoteIP, remotePort = ctx.remotePort, extension = extension, secure = ctx.secure == true,
    requestId = ctx.requestId, rawConnection = { method = method, path = path, headers = ctx.headers, query = query, body = ctx.body },
  }
  connections.open(rt, connection)
  if watched then
    connection.params = params
    connection.messageCount = 1
  end
  if user ~= nil then connection.user, connection.session = user, token end -- see Sessions above
  ctx.connection = connection

  local data = processor.run(rt, connection, name, params, ctx)
  return W.complete(rt, ctx, data)
end

-- Render, log (with the body's length) and release the connection; also the path of
-- runtime.fail.
function W.complete(rt, ctx, data)
  local status, headers, body = render(rt, data, ctx)
  processor.log(rt, data, "web", ctx, #body)
  connections.destroy(rt, ctx.connection)
  return status, headers, body
end

function W.fail(rt, ctx, status, message)
  local data = ctx.data
  if not data then
    if ctx.connection then connections.destroy(rt, ctx.connection) end
    if not status then return end
    return plainError(rt, status, message, ctx)
  end
  if data._finished and not status then
    connections.destroy(rt, ctx.connection)
    return
  end
  processor.abort(data, status or 499, message)
  local s, h, b = W.complete(rt, ctx, data)
  if status then return s, h, b end
end

return W
