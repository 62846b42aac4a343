return {
  name = "liveLogin", description = "sets connection.user for the live resource tests",
  inputs = { name = { required = true } },
  run = function(api, data)
    data.connection.user = { name = data.params.name }
    data.response.user = data.connection.user
  end,
}
