-- How the request came: connection.secure (https or wss) and its type, with the body's size.
return {
  name = "scheme",
  description = "I say whether my connection is TLS",
  inputs = { pad = {}, size = {} },
  run = function(api, data, next)
    local c = data.connection
    data.response.secure = c.secure
    data.response.type = c.type
    data.response.padLength = data.params.pad and #data.params.pad or 0
    local n = tonumber(data.params.size)
    if n then data.response.big = string.rep("x", n) end
    next()
  end,
}
