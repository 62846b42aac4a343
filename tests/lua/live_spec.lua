-- Specs for live resources (issue 17): the instance routes built from handler patterns
-- (gateway.registry.handlers routeTemplate / buildRoute) and the local index of
-- gateway.services.live (who a write reaches, once per connection; unsubscribe, close,
-- general.maxSubscriptions; object permissions checked per push). The pushes across
-- transports and processes are covered by tests/integration/test_live.py.

package.path = "tests/lua/?.lua;" .. package.path
local state = require("support.state")
state.new()

local handlers = require("gateway.registry.handlers")
local live = require("gateway.services.live")
local connections = require("gateway.services.connections")
local clusterModule = require("gateway.services.cluster")
local json = require("gateway.json")

describe("routeTemplate", function()
  local function route(pattern, values)
    local t = handlers.routeTemplate(pattern)
    if not t then return nil end
    return handlers.buildRoute(t, function(name) return values[name] end)
  end

  it("builds the instance route of a plain pattern", function()
    assert.equal("items/5/", route([[^items/(?P<pk>\d+)/$]], { pk = 5 }))
    assert.equal("items/5/", route([[^items/(?<pk>\d+)/$]], { pk = "5" }))
    assert.equal("items/5/", route([[^items/(?'pk'\d+)/$]], { pk = "5" }))
    assert.equal("a.b/x-1/", route([[^a\.b/(?P<slug>[-\w]+)/$]], { slug = "x-1" }))
    assert.equal("p/1/c/2/", route([[^p/(?P<post>\d+)/c/(?P<pk>\d+)/$]], { post = 1, pk = 2 }))
    assert.equal("items/5/", route([[items/(?P<pk>(\d)+)/]], { pk = 5 }))
    assert.equal("items/7/", route([[^items/(?P<pk>[)(]+)/$]], { pk = 7 }))
  end)

  it("writes integral numbers without a fraction", function()
    assert.equal("items/5/", route([[^items/(?P<pk>\d+)/$]], { pk = 5.0 }))
  end)

  it("has no template for patterns that are not one text", function()
    for _, p in ipairs({ [[^items/\d+/$]], [[^(items|things)/$]], [[^items/?$]], [[^item.s/$]],
                         [[^items/(\d+)/$]], [[^items/(?P<pk>\d+)?/$]], [[^items/[a-z]/$]],
                         [[^items/(?P<pk>\d+/$]] }) do
      assert.is_nil(handlers.routeTemplate(p), p)
    end
  end)

  it("builds nothing when a group has no value", function()
    assert.is_nil(route([[^items/(?P<pk>\d+)/$]], {}))
    assert.is_nil(route([[^items/(?P<pk>\d+)/$]], { pk = "" }))
    assert.is_nil(route([[^items/(?P<pk>\d+)/$]], { pk = {} }))
  end)

  it("knows its groups", function()
    local t = handlers.routeTemplate([[^p/(?P<post>\d+)/c/(?P<pk>\d+)/$]])
    assert.is_true(handlers.templateHas(t, "pk"))
    assert.is_true(handlers.templateHas(t, "post"))
    assert.is_false(handlers.templateHas(t, "slug"))
  end)
end)

describe("the local index", function()
  local cluster, resources, rt
  local boxes, opened

  -- A persistent connection whose pushes land in boxes[id].
  local function conn(id)
    local c = connections.make("websocket", { id = id })
    opened[#opened + 1] = c
    boxes[id] = {}
    connections.open(rt, c, function(text)
      boxes[id][#boxes[id] + 1] = json.decode(text)
      return true
    end)
    return c
  end

  local function sub(resource, id, extra)
    local s = { resource = resource, id = id, key = id and ("i" .. id) or "c",
      routeOf = function(_, oid) return "items/" .. oid .. "/" end }
    for k, v in pairs(extra or {}) do s[k] = v end
    return s
  end

  before_each(function()
    cluster = clusterModule.new(json)
    resources = live.api(json, cluster, { general = { maxSubscriptions = 3 } })
    rt = { api = { connections = { connections = {} } }, reg = { connectionMiddlewareList = {} } }
    boxes, opened = {}, {}
  end)

  after_each(function()
    for _, c in ipairs(opened) do connections.destroy(rt, c) end
  end)

  it("delivers a write to the instance's and the collection's subscribers, once each", function()
    local a, b, c = conn("a"), conn("b"), conn("c")
    assert.is_true(resources._subscribe(a, sub("thing", "5")))
    assert.is_true(resources._subscribe(a, sub("thing")))
    assert.is_true(resources._subscribe(b, sub("thing")))
    assert.is_true(resources._subscribe(c, sub("thing", "6")))
    assert.equal(2, live.deliver(json, { resource = "thing", id = "5", action = "update",
      object = { id = 5, title = "x" } }))
    assert.same({ { errors = {}, data = { id = 5, title = "x" }, action = "update",
      route = "items/5/", status = 200 } }, boxes.a)
    assert.equal(1, #boxes.b)
    assert.equal(0, #boxes.c)
    -- remove: null data, 204; numbers as ids
    assert.equal(2, live.deliver(json, { resource = "thing", id = 5, action = "remove" }))
    assert.equal(json.null, boxes.b[2].data)
    assert.equal(204, boxes.b[2].status)
    -- another resource reaches nobody; nonsense is ignored
    assert.equal(0, live.deliver(json, { resource = "other", id = "5", action = "update", object = {} }))
    assert.equal(0, live.deliver(json, { resource = "thing", id = "5", action = "explode" }))
    assert.equal(0, live.deliver(json, "junk"))
  end)

  it("forgets a connection's subscriptions when it closes", function()
    local a = conn("a")
    local before = live.count()
    resources._subscribe(a, sub("thing", "5"))
    resources._subscribe(a, sub("thing"))
    assert.equal(before + 2, live.count())
    connections.destroy(rt, a)
    assert.equal(before, live.count())
    assert.equal(0, live.deliver(json, { resource = "thing", id = "5", action = "update", object = {} }))
  end)

  it("unsubscribes, and says whether there was a subscription", function()
    local a = conn("a")
    resources._subscribe(a, sub("thing", "5"))
    assert.is_true(resources._unsubscribe(a, "thing", "i5"))
    assert.is_false(resources._unsubscribe(a, "thing", "i5"))
    assert.is_false(resources._unsubscribe(a, "thing", "c"))
    assert.equal(0, live.deliver(json, { resource = "thing", id = "5", action = "update", object = {} }))
  end)

  it("caps the subscriptions of one connection", function()
    local a = conn("a")
    for i = 1, 3 do assert.is_true(resources._subscribe(a, sub("thing", tostring(i)))) end
    local ok, message, status = resources._subscribe(a, sub("thing", "4"))
    assert.is_nil(ok)
    assert.equal(429, status)
    assert.equal("too many subscriptions on this connection (general.maxSubscriptions is 3)", message)
    -- the same subscription again replaces itself
    assert.is_true(resources._subscribe(a, sub("thing", "1")))
    connections.destroy(rt, a)
  end)

  it("refuses a connection the gateway cannot push to", function()
    local web = connections.make("web", {})
    local ok, message, status = resources._subscribe(web, sub("thing", "1"))
    assert.is_nil(ok)
    assert.equal(400, status)
    assert.matches("WebSocket or TCP", message)
  end)

  it("checks object permissions for every push", function()
    local a, b = conn("a"), conn("b")
    resources._subscribe(a, sub("thing", nil, { allowed = function(o) return o.owner == "a" end }))
    resources._subscribe(b, sub("thing", nil, { allowed = function() error("boom") end }))
    assert.equal(1, live.deliver(json, { resource = "thing", id = "1", action = "create",
      object = { id = 1, owner = "a" } }))
    assert.equal(0, live.deliver(json, { resource = "thing", id = "2", action = "create",
      object = { id = 2, owner = "z" } }))
    assert.equal(1, #boxes.a)
    assert.equal(0, #boxes.b)
  end)

  it("announces through the cluster to the workers watching the resource", function()
    local a = conn("a")
    resources._subscribe(a, sub("watched", "9"))
    assert.is_true(resources.notify("watched", 9, "partial_update", { id = 9 }))
    assert.equal(1, #boxes.a)
    assert.equal("partial_update", boxes.a[1].action)
    assert.is_true(resources.notify("watched", "9", "destroy"))
    assert.equal("remove", boxes.a[2].action)
    assert.has_error(function() resources.notify("watched", 9, "explode", {}) end,
      "api.resources.notify: action must be create, update, partial_update or remove")
    assert.has_error(function() resources.notify("watched", {}, "update", {}) end,
      "api.resources.notify: id must be an integer or a string")
    assert.has_error(function() resources.notify(nil, 1, "update", {}) end,
      "api.resources.notify: resource must be a resource name")
  end)
end)
