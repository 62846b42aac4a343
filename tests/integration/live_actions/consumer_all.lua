-- A consumer whose own subscribe is the whole collection, with the items handler as child.
return {
  consumer = [[^/ws/allitems/$]],
  resource = { name = "live_item", fields = {
    title = { required = true, maxLength = 100 },
    note = { default = "" },
  } },
  generics = { "subscribe" },
  handlers = { "live_items" },
}
