-- A consumer's own generics with subscribe: the URL names the item.
return {
  consumer = [[^/ws/item/(?P<pk>\d+)/$]],
  resource = { name = "live_item", fields = {
    title = { required = true, maxLength = 100 },
    note = { default = "" },
  } },
  generics = { "retrieve", "subscribe" },
}
