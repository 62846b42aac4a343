-- The WebSocket transport (SPEC §8): every text frame is one message of the envelope
-- protocol; params are not sticky between messages.

local messages = require("gateway.transport.messages")

local W = {}

function W.handle(rt, ctx)
  return messages.handle(rt, ctx, "websocket")
end

function W.fail(rt, ctx, status, message)
  return messages.fail(rt, ctx, status, message)
end

return W
