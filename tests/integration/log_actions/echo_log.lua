-- Logs what the client sent (issue 14, logs): a param as a message, a header as a
-- message, a param as a field key and value. The params are declared so they are kept
-- (and so logged) after scrubbing.
return {
  name = "echoLog",
  description = "I log what I am given",
  inputs = { msg = {}, key = {}, value = {}, user = {}, PASSWORD = {}, list = {}, big = {} },
  run = function(api, data)
    local p = data.params
    if type(p.msg) == "string" then api.log(p.msg) end
    local h = data.connection.rawConnection and data.connection.rawConnection.headers["x-forge"]
    if h then api.log("header " .. h) end
    if type(p.key) == "string" and type(p.value) == "string" then
      api.log("field", "info", { [p.key] = p.value })
    end
    data.response.ok = true
  end,
}
