-- Global: fails the request in its preProcessor when the param deny=1 is present.
return {
  name = "denyParam",
  global = true,
  priority = 5,
  preProcessor = function(data, next)
    if tostring(data.params.deny) == "1" then
      next("denied by middleware")
      return
    end
    next()
  end,
}
