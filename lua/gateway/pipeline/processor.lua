-- The action processor (SPEC §3.2-§3.4, §4): for one request on one connection, choose
-- the version, check limits, run middleware, scrub params, run the inputs pipeline, run
-- the action and the postProcessors, and leave the outcome on `data`. Rendering it for a
-- transport is left to the transports; waiting on next() uses gateway.loop.

local core = require("gateway.core")
local inputs = require("gateway.pipeline.inputs")
local permissions = require("gateway.pipeline.permissions")
local metrics = require("gateway.pipeline.metrics")

local P = {}

local INTERNAL = "The server experienced an internal error"
P.INTERNAL = INTERNAL
local RESERVED = { action = true, apiVersion = true, callback = true, file = true }

local okLoop, loop = pcall(require, "gateway.loop")
if not okLoop then loop = nil end

-- Keep the raised value as it is (tables carry a status) and remember where it came from.
local function captureRaise(e)
  return { raised = e, traceback = debug.traceback(type(e) == "string" and e or tostring(e), 2) }
end

-- Does fn take a `next` argument at position `pos`? A function without one completes
-- when it returns, so `preProcessor = function(data) ... end` needs no next().
local arity = setmetatable({}, { __mode = "k" })
local function takesNext(fn, pos)
  local n = arity[fn]
  if not n then
    local info = debug.getinfo(fn, "u")
    n = info.isvararg and math.huge or info.nparams
    arity[fn] = n
  end
  return n >= pos
end

-- The outcome of a function that completes when it returns: what xpcall gave.
local function settle(ok, r1, r2)
  if not ok then return "raised", r1 end
  if r1 == nil and r2 ~= nil then return "error", r2 end
  return "ok", r1
end

-- A `next` for one call: the only closure (and state table) a call makes, and only for
-- a function that takes next.
local function newNext(state)
  return function(err)
    if state.done then return end
    state.done, state.err = true, err
    if state.waiting then
      state.waiting = false
      loop.wake(state.co)
    end
  end
end

-- The outcome of a function that was given `next`: what it returned, or what it passed
-- to next(), now or (waiting on the loop) later.
local function settleNext(state, ok, r1, r2)
  if not ok then
    state.done = true
    return "raised", r1
  end
  if not state.done and (r1 ~= nil or r2 ~= nil) then
    state.done = true
    if r1 == nil and r2 ~= nil then return "error", r2 end
    return "ok", r1
  end
  if not state.done then
    if not loop then error("next() was not called and there is no event loop to wait on", 0) end
    state.waiting = true
    loop.wait()
  end
  if state.err ~= nil then return "error", state.err end
  return "ok", nil
end

-- fn(a, next) and fn(a, b, next) until they complete (see callWithNext). The state
-- is made with room for `err` (the nil field), so next(err) does not grow it.
local function callNext1(fn, a)
  if not takesNext(fn, 2) then return settle(xpcall(fn, captureRaise, a)) end
  local state = { done = false, waiting = false, co = coroutine.running(), err = nil }
  return settleNext(state, xpcall(fn, captureRaise, a, newNext(state)))
end

local function callNext2(fn, a, b)
  if not takesNext(fn, 3) then return settle(xpcall(fn, captureRaise, a, b)) end
  local state = { done = false, waiting = false, co = coroutine.running(), err = nil }
  return settleNext(state, xpcall(fn, captureRaise, a, b, newNext(state)))
end

-- Run fn(..., next) until it completes: next(err) now or later, `return value`,
-- `return nil, err`, or a raised error. Returns kind ("ok" | "error" | "raised"), and
-- the error, the raised capture, or the returned value. `next` goes at argument
-- `nextPos`, after the arguments given.
function P.callWithNext(fn, nextPos, ...)
  if nextPos == 2 then return callNext1(fn, ...) end
  if nextPos == 3 then return callNext2(fn, ...) end
  if not takesNext(fn, nextPos) then return settle(xpcall(fn, captureRaise, ...)) end
  local state = { done = false, waiting = false, co = coroutine.running(), err = nil }
  local args = table.pack(...)
  args[nextPos] = newNext(state)
  return settleNext(state, xpcall(fn, captureRaise, table.unpack(args, 1, nextPos)))
end

-- An error value as { message, status, fields }: fields are a table error's own keys,
-- kept only when it has some besides message and status (else it reads as a message).
local function normalize(err, status)
  if type(err) == "table" then
    local fields, extra = {}, false
    for k, v in pairs(err) do
      if k ~= "status" and k ~= "message" then
        fields[k] = v
        extra = true
      end
    end
    local message = err.message ~= nil and tostring(err.message) or "error"
    fields.message = message
    return { message = message, status = math.tointeger(tonumber(err.status)), fields = extra and fields or nil }
  end
  return { message = tostring(err), status = status }
end
P.normalize = normalize

local function setError(data, err, status)
  data.error = normalize(err, status)
  data.errors = { data.error.message }
end

-- A raised error: a table with a status is an error like next(t); anything else is a
-- bug, logged with its traceback and answered with 500 and nothing of the message.
local function setRaised(data, capture, where)
  local e = capture.raised
  if type(e) == "table" and e.status ~= nil then
    setError(data, e)
    return
  end
  core.log("error", "Lua error in " .. where, { "action", tostring(data.action), "error", capture.traceback })
  setError(data, INTERNAL, 500)
end

-- A postProcessor raised: the action has run (and may have written), so a bug here
-- must not tell the client it failed. It is logged and the answer goes out as it is; a
-- raised table with a status is a deliberate error, as next(thatTable) is.
local function postRaised(data, capture, name)
  local e = capture.raised
  if type(e) == "table" and e.status ~= nil then
    if not data.error then setError(data, e) end
    return
  end
  core.log("error", "Lua error in the postProcessor of middleware " .. name
    .. " (the action's answer is sent as it is)",
    { "action", tostring(data.action), "error", capture.traceback })
end

-- The middleware a request runs through: global ones by priority, then the action's
-- own, in the order listed (a global one listed again runs once).
local function middlewareFor(reg, action)
  local list, seen = {}, {}
  for _, m in ipairs(reg.globalMiddleware) do
    list[#list + 1] = m
    seen[m.name] = true
  end
  for _, name in ipairs(action.middleware or {}) do
    local m = reg.middleware[name]
    if m and not seen[name] then
      list[#list + 1] = m
      seen[name] = true
    end
  end
  return list
end

-- An action's plan: what does not change from one request to the next, worked out once
-- per registry (at load and at each reload) instead of per request. `pre` and `post`
-- are the middleware with a preProcessor / postProcessor, in running order; `blocked`
-- the set of blockedConnectionTypes (nil when none).
local function newPlan(reg, action)
  local pre, post = {}, {}
  for _, m in ipairs(middlewareFor(reg, action)) do
    if m.preProcessor then pre[#pre + 1] = m end
    if m.postProcessor then post[#post + 1] = m end
  end
  local blocked
  for _, t in ipairs(action.blockedConnectionTypes or {}) do
    blocked = blocked or {}
    blocked[t] = true
  end
  return { pre = pre, post = post, blocked = blocked }
end

-- The plan of `action` in registry `reg`, made on first use if the registry has none.
function P.plan(reg, action)
  local plans = reg.plans
  if not plans then
    plans = {}
    reg.plans = plans
  end
  local plan = plans[action]
  if not plan then
    plan = newPlan(reg, action)
    plans[action] = plan
  end
  return plan
end

-- Plans for every action of a registry, including handler actions: a new registry (a
-- load or reload) gets new plans, so they always match its middleware.
function P.buildPlans(reg)
  reg.plans = {}
  for _, byVersion in pairs(reg.actions) do
    for _, a in pairs(byVersion) do P.plan(reg, a) end
  end
  for _, h in ipairs(reg.handlerIndex and reg.handlerIndex.handlers or {}) do
    for _, a in pairs(h.actions) do P.plan(reg, a) end
  end
end

local function scrub(action, params, keep)
  for k in pairs(params) do
    if action.inputs[k] == nil and not RESERVED[k] and not (keep and keep[k] ~= nil) then
      params[k] = nil
    end
  end
end

-- Choose the action and version: nil and the data error when there is none.
local function chooseAction(reg, data)
  local name, params = data.action, data.params
  local versions = type(name) == "string" and reg.versions[name]
  if not versions then return nil end
  local requested = params.apiVersion
  local version
  if requested == nil or requested == "" then
    version = versions[#versions]
  else
    version = tonumber(requested)
    version = version and (math.tointeger(version) or version)
  end
  local action = version and reg.actions[name][version]
  if not action then return nil end
  params.apiVersion = version
  return action
end

function P.missingChecks(config)
  local set = {}
  for _, c in ipairs(config.general.missingParamChecks) do set[c] = true end
  return set
end

-- The connection each request's coroutine serves, for modules that act per connection
-- (api.cache's lock names); cleared when the request ends, as its coroutine may serve
-- another request or a timer next. Weak: a coroutine that failed is collected.
local serving = setmetatable({}, { __mode = "k" })
function P.connectionOf(co)
  return serving[co]
end

local wall_ms, now_ms, running = core.wall_ms, core.now_ms, coroutine.running

local function pipeline(rt, connection, actionName, params, extra)
  connection.totalActions = connection.totalActions + 1
  connection.pendingActions = connection.pendingActions + 1
  local data = {
    connection = connection, action = actionName, params = params, response = {},
    toProcess = true, toRender = true, messageCount = connection.messageCount,
    actionStartTime = wall_ms(), headers = {}, route = extra and extra.route,
    matchedRoute = extra and extra.matchedRoute, _started = now_ms(),
  }
  if extra then extra.data = data end
  local reg, config = rt.reg, rt.config

  if rt.shuttingDown then
    setError(data, "the server is shutting down", 503)
    return P.finish(data)
  end
  if connection.pendingActions > config.general.simultaneousActions then
    setError(data, "you have too many pending requests", 429)
    return P.finish(data)
  end
  local action = extra and extra.handlerAction or chooseAction(reg, data)
  if not action then
    setError(data, "unknown action or invalid apiVersion", 404)
    return P.finish(data)
  end
  data.actionTemplate = action
  local plan = reg.plans and reg.plans[action] or P.plan(reg, action)
  if plan.blocked and plan.blocked[connection.type] then
    setError(data, "this action does not support the " .. connection.type .. " connection type", 400)
    return P.finish(data)
  end

  local pre = plan.pre
  for i = 1, #pre do
    local m = pre[i]
    local kind, e = callNext1(m.preProcessor, data)
    if kind == "raised" then setRaised(data, e, "middleware " .. m.name) end
    if kind == "error" then setError(data, e) end
    if data.error then return P.finish(data) end
  end

  local perms = action.permissions
  if perms and #perms > 0 then
    local okCheck, message, status = xpcall(permissions.check, captureRaise, reg.permissions, perms, data)
    if not okCheck then setRaised(data, message, "a permission of " .. action.name) end
    if okCheck and message then setError(data, message, status) end
    if data.error then return P.finish(data) end
  end

  if not config.general.disableParamScrubbing then scrub(action, params, extra and extra.routeParams) end

  -- An action without inputs has nothing to process (an action inputs.compile never saw
  -- goes through, to fail there).
  local keys = action._inputKeys
  if keys == nil or #keys > 0 then
    local ok, failures = xpcall(inputs.process, captureRaise, action, params, connection, rt.inputOpts)
    if not ok then
      setRaised(data, failures, "the inputs of " .. action.name)
      return P.finish(data)
    end
    if failures then
      data.error = { message = failures[1].message, status = 422, inputs = failures }
      data.errors = {}
      for i, f in ipairs(failures) do data.errors[i] = f.message end
      return P.finish(data)
    end
  end

  if data.toProcess then
    local kind, e = callNext2(action.run, rt.api, data)
    if kind == "raised" then setRaised(data, e, "action " .. action.name) end
    if kind == "error" then setError(data, e) end
    if kind == "ok" and type(e) == "table" and type(data.response) == "table" then
      for k, v in pairs(e) do data.response[k] = v end
    end
    if data.error then return P.finish(data) end
  end

  local post = plan.post
  if #post > 0 then
    -- The contract (README "Middleware"): postProcessors always see data.response as an
    -- object. A result that is not one (a list, a string, nothing) moves to data.body,
    -- which the transports send as it is.
    local r = data.response
    if type(r) ~= "table" or rawget(r, 1) ~= nil then
      if data.body == nil then data.body = r == nil and rt.json.null or r end
      data.response = {}
    end
  end
  for i = 1, #post do
    local m = post[i]
    data._post = m.name -- for P.abort: the action has run
    local kind, e = callNext1(m.postProcessor, data)
    if kind == "raised" then postRaised(data, e, m.name) end
    if kind == "error" and not data.error then setError(data, e) end
  end
  return P.finish(data)
end

-- Runs the whole pipeline; the outcome is on the returned data (`error`, `errors`,
-- `status`, `response`). `rt` holds config, api, reg, shuttingDown and inputOpts.
-- `extra` (optional) holds what the transport knows: `route`, `matchedRoute`,
-- `routeParams`, and `handlerAction`, the action itself when a handler chose it (no
-- name lookup); `extra.data` is set to the request's data as soon as it exists. The
-- action's plan comes from the registry (see P.plan).
function P.run(rt, connection, actionName, params, extra)
  local co = running()
  serving[co] = connection
  local data = pipeline(rt, connection, actionName, params, extra)
  serving[co] = nil
  return data
end

-- Settle the status and release the connection's pending slot, exactly once.
function P.finish(data)
  if data._finished then return data end
  data._finished = true
  local c = data.connection
  c.pendingActions = c.pendingActions - 1
  if data.error then
    data.status = data.error.status or math.tointeger(tonumber(data.status)) or 400
  else
    local status = data.status
    data.status = status ~= nil and math.tointeger(tonumber(status)) or 200
  end
  data.duration = now_ms() - data._started
  return data
end

-- End a request that will not complete by itself (timeout, CPU stop, client gone), or
-- that completed but whose answer could not be rendered (an error raised while logging
-- or encoding it): either way the answer is now this error, not the response.
function P.abort(data, status, message)
  if data._post and not data._finished and status and status ~= 499 then
    -- A postProcessor did not complete (actionTimeout, cpuTimeout): the action has run
    -- (and may have written), so its answer goes out as it is, as when one raises.
    core.log("error", "the postProcessor of middleware " .. data._post .. " did not complete ("
      .. tostring(message) .. "); the action's answer is sent as it is",
      { "action", tostring(data.action) })
    return P.finish(data)
  end
  data.response, data.body = {}, nil
  setError(data, message, status or 500)
  if data._finished then
    -- Its pending slot was released when it completed: only the outcome changes.
    data.status = data.error.status
    return data
  end
  data.status = nil
  return P.finish(data)
end

-- Does a decoded JSON value hold a number JSON cannot carry (inf from `1e999`, or from an
-- integer of 309+ digits)? Such a number would be sent back as null.
local function hasNonFinite(v)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) == "table" then
    for _, x in pairs(v) do
      if hasNonFinite(x) then return true end
    end
  end
  return false
end

-- A request's JSON text (a web body, a WebSocket or TCP message) decoded, or nil when it
-- is not UTF-8, not JSON, or holds a number out of a double's range; the transports
-- answer 400 for nil. Past general.jsonMaxDepth or jsonMaxElements, nil and the reason,
-- which names the limit, before any table is built. Only a text with an exponent or a
-- long run of digits is walked.
local jsonDecode = core.json_decode
function P.decode(rt, text)
  local value, walk = jsonDecode(rt.json.decode, text, rt.jsonMaxDepth, rt.jsonMaxElements)
  if value == nil then return nil, walk end
  if walk and hasNonFinite(value) then return nil end
  return value
end

-- The JSON text of an answer, or nil (and a log line saying why) when it cannot be
-- encoded; the transports render with it.
function P.encode(rt, value)
  local ok, text = pcall(rt.json.encode, value)
  if ok then return text end
  core.log("error", "cannot encode an answer as JSON: " .. tostring(text))
  return nil
end

-- Is `k` a filtered param name (logging.filteredParams, without case)? rt.filtered holds
-- the names in lower case.
local lower = string.lower
local function isFiltered(filtered, k)
  if type(k) ~= "string" then return false end
  return filtered[k] or filtered[lower(k)] or false
end

local MAX_DEPTH = 32 -- deeper tables (or a cycle an action made) log as "[...]"

-- A copy of a table of params with filtered keys replaced at any depth, and values JSON
-- cannot carry left out.
local function filteredCopy(filtered, t, depth)
  if depth > MAX_DEPTH then return "[...]" end
  local out = {}
  for k, v in pairs(t) do
    if isFiltered(filtered, k) then
      out[k] = "[FILTERED]"
    else
      local tv = type(v)
      if tv == "table" then out[k] = filteredCopy(filtered, v, depth + 1)
      elseif tv ~= "function" and tv ~= "userdata" and tv ~= "thread" then out[k] = v end
    end
  end
  return out
end

-- Params as they appear in logs and receivedParams: filtered names replaced (nested keys
-- too, any case), an uploaded file (web multipart) shown without its bytes, which may
-- be binary.
function P.loggableParams(rt, params)
  local out, filtered = {}, rt.filtered
  for k, v in pairs(params or {}) do
    if isFiltered(filtered, k) then out[k] = "[FILTERED]"
    elseif type(v) == "table" and type(v.filename) == "string" and type(v.data) == "string" then
      out[k] = { filename = v.filename, type = v.type, size = #v.data }
    elseif type(v) == "table" then out[k] = filteredCopy(filtered, v, 2)
    elseif type(v) ~= "function" and type(v) ~= "userdata" and type(v) ~= "thread" then out[k] = v end
  end
  return out
end

-- One line per action at the action's logLevel (SPEC §10).

-- Does a nested table need a copy to be logged (a filtered key, something JSON cannot
-- carry, or too deep)?
local function nestedNeedsCopy(filtered, t, depth)
  if depth > MAX_DEPTH then return true end
  for k, v in pairs(t) do
    if isFiltered(filtered, k) then return true end
    local tv = type(v)
    if tv == "table" then
      if nestedNeedsCopy(filtered, v, depth + 1) then return true end
    elseif tv == "function" or tv == "userdata" or tv == "thread" then
      return true
    end
  end
  return false
end

-- Are params loggable as they are (nothing filtered, no file, nothing JSON cannot
-- carry)? Then the log encodes them without a copy.
local function loggableAsIs(rt, params)
  local filtered = rt.filtered
  for k, v in pairs(params) do
    if isFiltered(filtered, k) then return false end
    local t = type(v)
    if t == "table" then
      if type(v.filename) == "string" and type(v.data) == "string" then return false end
      if nestedNeedsCopy(filtered, v, 2) then return false end
    elseif t == "function" or t == "userdata" or t == "thread" then
      return false
    end
  end
  return true
end

-- A status as text: a whole number's digits (made once per status), anything else
-- `fallback`, or tostring's text when there is none.
local STATUS_TEXT = {}
function P.statusText(status, fallback)
  local text = STATUS_TEXT[status]
  if text then return text end
  local n = math.tointeger(status)
  if not n then return fallback or tostring(status) end
  text = tostring(n)
  if n >= 100 and n <= 999 then STATUS_TEXT[n] = text end
  return text
end
local statusText = P.statusText

local observe = metrics.observe
local PID = core.pid()

-- The access log line, and the request counted for /metrics (pipeline/metrics.lua,
-- before the level check: metrics count whatever is logged). Numbers are numbers, so a
-- JSON line carries them as JSON numbers. `ctx` is the transport's (method, path,
-- requestId on the web) and `bytes` the length of the answer's body, when known.
function P.log(rt, data, transport, ctx, bytes)
  local template = data.actionTemplate
  local status = data.status
  observe(transport, template and data.action or "", status, data.duration)
  local level = template and template.logLevel or "info"
  if status and status >= 500 and level ~= "crit" then level = "error" end
  if not core.log_enabled(level) then return end
  local params = data.params
  if not (params and loggableAsIs(rt, params)) then params = P.loggableParams(rt, params) end
  local okJson, paramsText = pcall(rt.json.encode, params)
  local c = data.connection
  local fields = {
    "action", tostring(data.action), "type", transport,
    "status", math.tointeger(status) or statusText(status),
    "duration_ms", math.floor((data.duration or 0) * 10 + 0.5) / 10,
  }
  local n = #fields
  if ctx and ctx.method then
    fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = "method", ctx.method, "path", ctx.path
    n = n + 4
  end
  if bytes then
    fields[n + 1], fields[n + 2] = "bytes", bytes
    n = n + 2
  end
  local requestId = c.requestId
  if requestId then
    fields[n + 1], fields[n + 2] = "requestId", requestId
    n = n + 2
  end
  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = "remoteIP", tostring(c.remoteIP), "pid", PID
  fields[n + 5], fields[n + 6], fields[n + 7], fields[n + 8] =
    "connection", tostring(c.id), "params", okJson and paramsText or "?"
  if data.error then
    fields[n + 9] = "error"
    fields[n + 10] = data.error.message
  end
  core.log(level, nil, fields)
end

return P
