-- Reports the fields of data.connection (SPEC 3.1), for the persistent transports.
return {
  name = "connection_info",
  description = "I describe my connection",
  run = function(api, data, next)
    local c = data.connection
    local raw = c.rawConnection or {}
    local headers = {}
    for k, v in pairs(raw.headers or {}) do headers[tostring(k)] = tostring(v) end
    local params = {}
    for k, v in pairs(c.params or {}) do params[tostring(k)] = v end
    data.response.id = c.id
    data.response.type = c.type
    data.response.remoteIP = c.remoteIP
    data.response.remotePort = c.remotePort
    data.response.connectedAt = c.connectedAt
    data.response.messageCount = c.messageCount
    data.response.pendingActions = c.pendingActions
    data.response.totalActions = c.totalActions
    data.response.sticky = params
    data.response.user = c.user
    data.response.requestId = c.requestId
    data.response.note = c.note
    data.response.path = raw.path
    data.response.headers = headers
    data.response.hasRawConnection = type(c.rawConnection) == "table"
    next()
  end,
}
