-- CreateAPIConsumer for the notes of c_notes.lua: the author is whoever is logged in.
return {
  consumer = [[^/ws/notes/$]],
  resource = {
    name = "cnote",
    fields = {
      slug = { required = true, blank = false },
      body = { type = "string", blank = false },
      votes = { type = "integer", default = 0 },
      author = { readOnly = true, default = function(_, connection) return connection.user and connection.user.name end },
    },
  },
  generics = { "create" },
}
