-- A resource nobody writes: its list is empty ([] and a page of []).
return {
  routes = { [[^empty/$]], [[^emptypaged/$]] },
  resource = { name = "empty", fields = { x = {} } },
  generics = { "list" },
}
