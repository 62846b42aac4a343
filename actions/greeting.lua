-- One action, several versions: a request without apiVersion gets the highest (2).
local function greeting(version, run)
  return {
    name = "greeting",
    description = "I greet you (version " .. version .. ")",
    version = version,
    inputs = { name = { required = false, default = "world" } },
    run = run,
  }
end

return {
  v1 = greeting(1, function(api, data) return { greeting = "hello " .. data.params.name } end),
  v2 = greeting(2, function(api, data)
    return { greeting = "Hello, " .. data.params.name .. "!", version = 2 }
  end),
}
