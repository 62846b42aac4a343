-- A generic resource for bench/redis.sh: GET /api/bench_items/1/ is a generic retrieve.
return {
  routes = { [[^bench_items/$]], [[^bench_items/(?P<pk>\d+)/$]] },
  resource = { name = "bench_item", fields = { title = { required = true, maxLength = 255 } } },
  generics = { "create", "retrieve" },
}
