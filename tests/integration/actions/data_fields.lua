-- Reports some of the fields of data and data.connection (SPEC 3.1).
return {
  name = "data_fields",
  description = "I describe my data",
  run = function(api, data, next)
    local c = data.connection
    data.response.action = data.action
    data.response.connType = c.type
    data.response.remoteIP = c.remoteIP
    data.response.method = c.rawConnection and c.rawConnection.method
    data.response.startIsNumber = type(data.actionStartTime) == "number"
    data.response.toProcess = data.toProcess
    data.response.toRender = data.toRender
    data.response.templateName = data.actionTemplate and data.actionTemplate.name
    next()
  end,
}
