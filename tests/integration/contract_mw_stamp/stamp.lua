-- A global postProcessor written the ActionHero way: it adds a field to data.response.
-- After bumpCounter with a key holding "hang" it never calls next (a postProcessor that
-- does not complete after a write).
return {
  name = "stamp",
  global = true,
  postProcessor = function(data, next)
    data.response.note = "x"
    data.headers["X-Stamped"] = "yes"
    local key = data.params.key
    if data.action == "bumpCounter" and type(key) == "string" and key:find("hang", 1, true) then
      return
    end
    next()
  end,
}
