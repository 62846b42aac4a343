-- The project the runtime fuzz targets load (fuzz/message.c, socket.c, router.c): a few
-- actions with inputs, web routes of every kind and message handlers, so fuzzed input
-- reaches the router, the handlers and the input pipeline. No Redis: calls that need it
-- answer "redis unavailable".
return {
  servers = { socket = { maxLineLength = 1024 }, websocket = { maxMessageSize = 65536 } },
  general = { cpuTimeout = 1000, actionTimeout = 1000 },
  logging = { level = "crit" },
}
