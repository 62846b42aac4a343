-- The TCP socket transport (SPEC §8): a line starting with `{` is a message of the
-- envelope protocol; otherwise the first word is a verb, or an action name run with the
-- connection's sticky params. Verbs answer {"status","data","context"} in that order.

local core = require("gateway.core")
local messages = require("gateway.transport.messages")
local processor = require("gateway.pipeline.processor")

local S = {}

-- Verb data is the connection's own plain values: "null" only if a param holds something
-- JSON cannot carry.
local function encode(rt, value)
  return processor.encode(rt, value) or "null"
end

local function verbOk(rt, data)
  return '{"status":"OK","data":' .. (data == nil and "null" or encode(rt, data)) .. ',"context":"response"}'
end

local function verbError(rt, message)
  return '{"status":"error","error":' .. encode(rt, message) .. ',"context":"response"}'
end

local function details(c)
  return {
    id = c.id, type = c.type, remoteIP = c.remoteIP, remotePort = c.remotePort,
    connectedAt = c.connectedAt, params = c.params, pendingActions = c.pendingActions,
    totalActions = c.totalActions, messageCount = c.messageCount,
  }
end

-- What a sticky param counts against servers.socket.maxParamBytes: the bytes of a string
-- (actions may store other values on connection.params; those count 8).
local function sizeOf(value)
  return type(value) == "string" and #value or 8
end

-- paramAdd within the connection's limits: at most maxParams params and maxParamBytes
-- bytes of keys and values, counted as they would be after the add (replacing a key
-- frees its old value). nil when it fits, else the error text.
local function overLimits(rt, params, k, v)
  local limits = rt.config.servers.socket
  local count, bytes = 1, #k + #v
  for key, value in pairs(params) do
    if key ~= k then
      count, bytes = count + 1, bytes + sizeOf(key) + sizeOf(value)
    end
  end
  if count > limits.maxParams then
    return "too many sticky params (maxParams is " .. limits.maxParams .. ")"
  end
  if bytes > limits.maxParamBytes then
    return "sticky params too large (maxParamBytes is " .. limits.maxParamBytes .. ")"
  end
  return nil
end

-- Each verb: function(rt, connection, argument) -> answer text[, close].
local VERBS = {
  paramAdd = function(rt, c, arg)
    local k, v = arg:match("^([^=%s]+)=(.*)$")
    if not k then return verbError(rt, "paramAdd needs key=value") end
    local err = overLimits(rt, c.params, k, v)
    if err then return verbError(rt, err) end
    c.params[k] = v
    return verbOk(rt, nil)
  end,
  paramDelete = function(rt, c, arg)
    if arg == "" then return verbError(rt, "paramDelete needs a key") end
    c.params[arg] = nil
    return verbOk(rt, nil)
  end,
  paramView = function(rt, c, arg)
    if arg == "" then return verbError(rt, "paramView needs a key") end
    return verbOk(rt, c.params[arg])
  end,
  paramsView = function(rt, c)
    return verbOk(rt, c.params)
  end,
  paramsDelete = function(rt, c)
    c.params = {}
    return verbOk(rt, nil)
  end,
  detailsView = function(rt, c)
    return verbOk(rt, details(c))
  end,
  documentation = function(rt)
    return verbOk(rt, rt.api.documentation.documentation)
  end,
  quit = function(rt)
    return verbOk(rt, "Bye!"), true
  end,
}
VERBS.exit = VERBS.quit

local find, sub, match = string.find, string.sub, string.match

-- A verb line's first word and the rest, both without surrounding white space (nil for a
-- blank line): what `^%s*(%S+)%s*(.-)%s*$` captures, in time linear in the line. That
-- pattern tries `%s*$` again at every character of a run of spaces (seconds for a line
-- of 60000 spaces), and the cpuTimeout hook cannot stop a string.match. Here each search
-- passes over the line once: `.*()%S` finds the last non-space from the end.
local function splitWord(text)
  local first = find(text, "%S")
  if not first then return nil end
  local wordEnd = find(text, "%s", first)
  if not wordEnd then return sub(text, first), "" end
  local word = sub(text, first, wordEnd - 1)
  local argStart = find(text, "%S", wordEnd)
  if not argStart then return word, "" end
  return word, sub(text, argStart, match(text, ".*()%S"))
end
S.splitWord = splitWord

function S.handle(rt, ctx)
  local text = ctx.text
  if ctx.reject or not text or text:match("^%s*{") then return messages.handle(rt, ctx, "socket") end
  local c = ctx.connection
  c.messageCount = c.messageCount + 1
  if not core.utf8_valid(text) then return messages.reject(rt, ctx, "socket", 400, "invalid UTF-8") end
  local word, arg = splitWord(text)
  if not word then return nil end
  local verb = VERBS[word]
  if verb then return verb(rt, c, arg) end
  local params = {}
  for k, v in pairs(c.params) do params[k] = v end
  return messages.run(rt, ctx, "socket", { action = word, route = "", params = params,
    reply = { action = word, route = "" } })
end

function S.fail(rt, ctx, status, message)
  return messages.fail(rt, ctx, status, message)
end

return S
