-- Not available over WebSocket.
return {
  name = "blocked_websocket",
  description = "I refuse websocket connections",
  blockedConnectionTypes = { "websocket" },
  run = function(api, data, next)
    data.response.ran = true
    next()
  end,
}
