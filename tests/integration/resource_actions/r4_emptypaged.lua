return {
  routes = { [[^emptypages/$]] },
  resource = { name = "emptypaged", fields = { x = {} }, pageSize = 5 },
  generics = { "list" },
}
