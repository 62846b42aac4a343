-- Actions that use the per-action middleware of tests/integration/middleware.
local function record(name)
  return function(api, data, next)
    data.response.order = data.response.order or {}
    table.insert(data.response.order, "run")
    data.response.ran = true
    next()
  end
end

return {
  order = {
    name = "mw_order",
    description = "My middleware is listed in the opposite order of its priorities",
    middleware = { "perActionB", "perActionA" },
    run = record("mw_order"),
  },
  skip = {
    name = "mw_skip",
    description = "My middleware skips my run",
    middleware = { "skipProcess" },
    run = record("mw_skip"),
  },
  noRender = {
    name = "mw_no_render",
    description = "My middleware turns rendering off",
    middleware = { "noRender" },
    run = record("mw_no_render"),
  },
  returnErr = {
    name = "mw_return_err",
    description = "My middleware returns nil, err",
    middleware = { "returnErr" },
    run = record("mw_return_err"),
  },
  raise = {
    name = "mw_raise",
    description = "My middleware raises",
    middleware = { "raiseMw" },
    run = record("mw_raise"),
  },
  postErr = {
    name = "mw_post_err",
    description = "My postProcessor fails",
    middleware = { "postErr" },
    run = record("mw_post_err"),
  },
}
