-- Finishes by returning a table, merged into data.response.
return {
  name = "return_style",
  description = "I return my response",
  run = function(api, data, next)
    data.response.before = "kept"
    return { a = 1 }
  end,
}
