-- Returns nothing and never calls next: fails after general.actionTimeout.
return {
  name = "never_next",
  description = "I never finish",
  run = function(api, data, next)
  end,
}
