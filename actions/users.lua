-- Two actions in one file sharing their inputs, with built-in and custom validators.
-- (Storage comes with Redis; these only check and echo what they were given.)
local commonInputs = {
  email = {
    required = true,
    formatter = { "api.formatters.trim", "api.formatters.lower" },
    validator = "api.validators.email",
  },
  password = {
    required = true,
    validator = {
      api.validators.minLength(8),
      function(param)
        if not param:find("%d") then return "password must contain a digit" end
        return true
      end,
    },
  },
}

return {
  userAdd = {
    name = "userAdd",
    description = "I add a user",
    inputs = commonInputs,
    outputExample = { user = { email = "jane@example.com" } },
    run = function(api, data, next)
      data.response.user = { email = data.params.email }
      next()
    end,
  },
  userDelete = {
    name = "userDelete",
    description = "I delete a user",
    inputs = commonInputs,
    outputExample = { deleted = "jane@example.com" },
    run = function(api, data, next)
      data.response.deleted = data.params.email
      next()
    end,
  },
}
