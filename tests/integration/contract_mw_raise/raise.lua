-- A global postProcessor with a bug: it raises after every action.
return {
  name = "raisePost",
  global = true,
  postProcessor = function(data)
    error("postProcessor secret boom")
  end,
}
