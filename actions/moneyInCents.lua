-- ActionHero's documented example of the inputs pipeline (default -> formatter ->
-- validator -> required), with its table of answers:
--   4 -> 4 | "4" -> 4 | "-4" -> "money cannot be negative" | "" and null -> the default 0
--   | "hello" -> "not a number"
-- "" and null are missing (general.missingParamChecks), so `default` fills them in; a
-- value that is present goes through the formatter, then the validator.
return {
  name = "moneyInCents",
  description = "I echo an amount of money in cents",
  inputs = {
    moneyInCents = {
      required = true,
      default = 0,
      -- As JavaScript's parseInt: the whole number of "4" or "4.7"; what is not a finite
      -- number is kept as it is, so the validator can say what is wrong with it.
      formatter = function(param)
        local n = tonumber(param)
        if not n or n ~= n or n == math.huge or n == -math.huge then return param end
        return math.tointeger(n < 0 and math.ceil(n) or math.floor(n)) or param
      end,
      validator = function(param)
        if type(param) ~= "number" then return "not a number" end
        if param < 0 then return "money cannot be negative" end
        return true
      end,
    },
  },
  outputExample = { moneyInCents = 400 },
  run = function(api, data)
    return { moneyInCents = data.params.moneyInCents }
  end,
}
