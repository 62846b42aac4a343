-- Health and load of this gateway process.
local startedAt = os.time()

return {
  name = "status",
  description = "I report the health of this gateway process",
  outputExample = { status = "ok", uptime = 12, connections = 3 },
  run = function(api, data)
    return {
      status = "ok",
      name = api.config.name,
      uptime = os.time() - startedAt,
      connections = api.connections.count(),
      memoryKB = math.floor(collectgarbage("count")),
    }
  end,
}
