-- The WebSocket transport (SPEC §8): the upgrade request decides which consumer the
-- connection belongs to (gateway.registry.consumers); then every text frame is one
-- message of the envelope protocol; params are not sticky between messages.

local core = require("gateway.core")
local messages = require("gateway.transport.messages")
local web = require("gateway.transport.web")
local consumers = require("gateway.registry.consumers")
local permissions = require("gateway.pipeline.permissions")
local groups = require("gateway.services.consumers")
local connections = require("gateway.services.connections")

local W = {}

function W.handle(rt, ctx)
  return messages.handle(rt, ctx, "websocket")
end

function W.fail(rt, ctx, status, message)
  return messages.fail(rt, ctx, status, message)
end

local function logUpgrade(ctx, status, consumer, connection, err)
  local fields = { "type", "websocket", "path", ctx.path, "status", tostring(status) }
  if consumer then
    fields[#fields + 1] = "consumer"
    fields[#fields + 1] = consumer.name
  end
  if connection then
    fields[#fields + 1] = "connection"
    fields[#fields + 1] = connection.id
  end
  if err then
    fields[#fields + 1] = "error"
    fields[#fields + 1] = err
  end
  core.log("info", "websocket upgrade", fields)
end

local function refuse(rt, ctx, status, message, consumer)
  logUpgrade(ctx, status, consumer, nil, message)
  return web.errorAnswer(rt, status, message)
end

-- The upgrade request (net/http.c asks): which consumer takes ctx.path, with its URL
-- kwargs; the `Authorization: Bearer` session restored; the consumer's `connect`. Returns
-- 101, nil, nil and the connection object prepared for the WebSocket; nothing when no
-- consumer takes the path (the request is then served as plain HTTP, usually a 404); or
-- an HTTP answer (status, headers, body) refusing it.
local function upgrade(rt, ctx)
  local consumer, kwargs = consumers.match(rt.reg.consumers, rt.config.servers.websocket.path, ctx.path)
  if not consumer then return end
  if rt.shuttingDown then return refuse(rt, ctx, 503, "the server is shutting down", consumer) end
  if ctx.badHandshake then return refuse(rt, ctx, 400, "invalid WebSocket handshake: " .. ctx.badHandshake, consumer) end
  local connection = connections.make("websocket", {
    remoteIP = ctx.remoteIP, remotePort = ctx.remotePort, kwargs = kwargs, requestId = ctx.requestId,
    secure = ctx.secure == true, -- wss:// (servers.web.tls)
    rawConnection = { path = ctx.path, headers = ctx.headers, query = ctx.query },
  })
  -- An unknown or expired token leaves the connection unauthenticated, as on the web.
  local user, token, err = rt.api.session.fromHeader(ctx.headers.authorization)
  if err then return refuse(rt, ctx, err.status, err.message, consumer) end
  if user ~= nil then connection.user, connection.session = user, token end
  if consumer.connect then
    local ok, allowed, reason = xpcall(consumer.connect, debug.traceback, connection, kwargs)
    if not ok then
      core.log("error", "consumer connect failed", { "consumer", consumer.name, "error", tostring(allowed) })
      return refuse(rt, ctx, 500, "The server experienced an internal error", consumer)
    end
    if allowed == false then
      local message, status = permissions.reason(reason)
      return refuse(rt, ctx, status, message, consumer)
    end
  end
  consumers.bind(connection, consumer)
  if not consumer.default then groups.prepare(connection, consumer, ctx.path) end
  logUpgrade(ctx, 101, consumer, connection)
  return 101, nil, nil, connection
end

-- The upgrade's call timed out (actionTimeout) or failed: an HTTP answer, or nothing
-- when the client has gone.
local function upgradeFail(rt, ctx, status, message)
  if not status then return end
  return refuse(rt, ctx, status, message)
end

-- runtime.handle("upgrade", ctx) / runtime.fail("upgrade", ...)
W.upgrade = { handle = upgrade, fail = upgradeFail }

return W
