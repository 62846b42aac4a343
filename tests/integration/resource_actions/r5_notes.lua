-- Only create and retrieve (the other generics answer 405), for the restart test.
return {
  routes = { [[^notes/$]], [[^notes/(?P<pk>\d+)/$]] },
  resource = { name = "note", fields = { body = { required = true } } },
  generics = { "create", "retrieve", "list" },
}
