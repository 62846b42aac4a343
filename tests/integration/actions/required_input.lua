-- One required input with no formatter: shows what counts as missing.
return {
  name = "required_input",
  description = "I need a name",
  inputs = { name = { required = true } },
  run = function(api, data, next)
    data.response.name = data.params.name
    data.response.nameType = type(data.params.name)
    next()
  end,
}
