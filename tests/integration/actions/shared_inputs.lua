-- Two actions in one file sharing one inputs table.
local inputs = {
  code = {
    required = true,
    validator = function(param)
      if #tostring(param) ~= 3 then return "code must be 3 characters" end
      return true
    end,
  },
}

local function action(name, which)
  return {
    name = name,
    description = "I share my inputs (" .. which .. ")",
    inputs = inputs,
    run = function(api, data, next)
      data.response.which = which
      data.response.code = data.params.code
      next()
    end,
  }
end

return { a = action("shared_a", "a"), b = action("shared_b", "b") }
