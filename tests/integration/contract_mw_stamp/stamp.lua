-- A global postProcessor written the ActionHero way: it adds a field to data.response.
return {
  name = "stamp",
  global = true,
  postProcessor = function(data)
    data.response.note = "x"
    data.headers["X-Stamped"] = "yes"
  end,
}
