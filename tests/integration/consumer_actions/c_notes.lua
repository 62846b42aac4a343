-- A consumer with generics on a resource looked up by a URL kwarg (lookupField), field
-- rules and an object permission: only a note's author may see, change or remove it.
-- Notes are created at /ws/notes/ (c_notes_create.lua).
api.permissions.addObject("isAuthor", function(data, note)
  return data.connection.user ~= nil and note.author == data.connection.user.name
end)

return {
  consumer = [[^/ws/notes/(?P<slug>[-\w]+)/$]],
  resource = {
    name = "cnote",
    fields = {
      slug = { required = true, blank = false },
      body = { type = "string", blank = false },
      votes = { type = "integer", default = 0 },
      author = { readOnly = true, default = function(_, connection) return connection.user and connection.user.name end },
    },
  },
  generics = { "retrieve", "partial_update", "remove" },
  lookupField = "slug",
  objectPermissions = { "isAuthor" },
}
