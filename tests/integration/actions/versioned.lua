-- One action in three versions; versions sort numerically, so 10 is the newest.
local function version(v)
  return {
    name = "versioned",
    description = "I am version " .. v,
    version = v,
    run = function(api, data, next)
      data.response.version = v
      data.response.apiVersion = data.params.apiVersion
      next()
    end,
  }
end

return { one = version(1), two = version(2), ten = version(10) }
