-- Sends nothing: a web request is completed with 204.
return {
  name = "no_render",
  description = "I render nothing",
  run = function(api, data, next)
    data.response.hidden = true
    data.toRender = false
    next()
  end,
}
