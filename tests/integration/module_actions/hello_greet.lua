-- Calls the example C module (examples/modules/hello): api.hello.greet(name).
return {
  name = "helloGreet",
  description = "I greet through the hello C module",
  inputs = { name = { required = true } },
  run = function(api, data, next)
    data.response.greeting = api.hello.greet(data.params.name)
    local ok, err = pcall(api.hello.greet)
    data.response.misuse = not ok and tostring(err) or "no error"
    next()
  end,
}
