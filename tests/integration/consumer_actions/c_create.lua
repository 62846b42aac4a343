-- CreateAPIConsumer: {"action": "create", "data": {...}} without a route.
return {
  consumer = [[^/ws/create/$]],
  resource = { name = "citem", fields = { title = { required = true, maxLength = 50 }, room = {} } },
  generics = { "create" },
}
