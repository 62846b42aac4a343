-- A formatter feeding a validator, with `required`:
--   4 -> 4 | "4" -> 4 | "-4" -> "must be > 0" | "" and null -> required | "hello" -> "must be a number"
return {
  name = "moneyInCents",
  description = "I echo an amount of money in cents",
  inputs = {
    moneyInCents = {
      required = true,
      -- Keep what cannot be converted, so the validator can say what is wrong with it.
      formatter = function(param) return tonumber(param) or param end,
      validator = function(param)
        if type(param) ~= "number" then return "must be a number" end
        if param < 0 then return "must be > 0" end
        return true
      end,
    },
  },
  outputExample = { moneyInCents = 400 },
  run = function(api, data)
    return { moneyInCents = data.params.moneyInCents }
  end,
}
