-- Raises a table with a status: treated as next(thatTable).
return {
  name = "raise_table",
  description = "I raise an error table with a status",
  run = function(api, data, next)
    error({ message = "i am a teapot", status = 418 })
  end,
}
