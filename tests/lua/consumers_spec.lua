-- Specs for lua/gateway/registry/consumers.lua: which consumer an upgrade path reaches
-- (the default path first, then patterns in load order, Django-style patterns without the
-- leading slash) and the load errors of a consumer file.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local handlers = require("gateway.registry.handlers")
local consumers = require("gateway.registry.consumers")

local function make(def) return def end

local function index(list)
  return handlers.compile(list or {
    { file = "items.lua", handler = { name = "items", routes = { [[^items/(?P<pk>\d+)/$]] },
      actions = { show = function() return {}, 200 end } } },
    { file = "anon.lua", handler = { routes = { [[^anon/$]] }, actions = { a = function() end } } },
  }, make)
end

local function compile(list, idx)
  return consumers.compile(list, idx or index(), make)
end

describe("consumers.match", function()
  local cs = compile({
    { file = "a.lua", consumer = { consumer = [[^/ws/items/(?P<pk>\d+)/$]], handlers = { "items" } } },
    { file = "b.lua", consumer = { consumer = [[^ws/rooms/(?P<room>[-\w]+)/$]] } },
    { file = "c.lua", consumer = { consumer = [[^/ws/.*$]] } },
  })

  it("takes the default path first, by exact match", function()
    local c, kwargs = consumers.match(cs, "/ws", "/ws")
    assert.equal(consumers.DEFAULT, c)
    assert.same({}, kwargs)
  end)

  it("gives the named groups as kwargs, the first pattern in load order winning", function()
    local c, kwargs = consumers.match(cs, "/ws", "/ws/items/12/")
    assert.equal("a.lua", c.file)
    assert.same({ pk = "12" }, kwargs)
    assert.equal("c.lua", consumers.match(cs, "/ws", "/ws/items/x/").file)
  end)

  it("matches a pattern without a leading slash against the path without it", function()
    local c, kwargs = consumers.match(cs, "/ws", "/ws/rooms/lobby/")
    assert.equal("b.lua", c.file)
    assert.same({ room = "lobby" }, kwargs)
  end)

  it("answers nil when nothing takes the path", function()
    assert.is_nil(consumers.match(cs, "/ws", "/other"))
  end)

  it("routes a consumer's messages only through its child handlers", function()
    local c = consumers.match(cs, "/ws", "/ws/items/1/")
    local action, params = handlers.resolve(c.children, "items/5/", "show")
    assert.truthy(action)
    assert.same({ pk = "5" }, params)
    local none, message, status = handlers.resolve(c.children, "anon/", "a")
    assert.is_nil(none)
    assert.equal(404, status)
    assert.equal('route "anon/" not found', message)
  end)

  it("finds a connection's consumer again by its pattern, false once it is gone", function()
    local c = consumers.match(cs, "/ws", "/ws/items/1/")
    local connection = {}
    consumers.bind(connection, c)
    assert.equal(c, consumers.of(cs, connection))
    assert.is_false(consumers.of(compile({}), connection))
    local plain = {}
    consumers.bind(plain, consumers.DEFAULT)
    assert.is_nil(consumers.of(cs, plain))
  end)
end)

describe("consumer load errors", function()
  local function loadError(def, idx)
    local ok, err = pcall(compile, { { file = "x.lua", consumer = def } }, idx)
    assert.is_false(ok)
    return err
  end

  it("names the file and the reason", function()
    assert.matches("x.lua: 'consumer' must be", loadError({ consumer = 5 }))
    assert.matches('x.lua: unknown handler "nope"', loadError({ consumer = "^/a$", handlers = { "nope" } }))
    assert.matches("x.lua: 'connect' must be a function", loadError({ consumer = "^/a$", connect = true }))
    assert.matches("not 'routes'", loadError({ consumer = "^/a$", routes = { "^x/$" } }))
    assert.matches('unknown consumer key "handler"', loadError({ consumer = "^/a$", handler = {} }))
    assert.matches("'group' must be", loadError({ consumer = "^/a$", group = { 1 } }))
    assert.matches("x.lua: ", loadError({ consumer = "^/(a$" }))
  end)

  it("refuses the same pattern twice", function()
    local ok, err = pcall(compile, {
      { file = "x.lua", consumer = { consumer = "^/a$" } },
      { file = "y.lua", consumer = { consumer = "^/a$" } },
    })
    assert.is_false(ok)
    assert.matches('y.lua: consumer "%^/a%$" is defined twice %(also in x.lua%)', err)
  end)

  it("refuses two handlers with one name", function()
    local ok, err = pcall(index, {
      { file = "h1.lua", handler = { name = "h", routes = { "^a/$" } } },
      { file = "h2.lua", handler = { name = "h", routes = { "^b/$" } } },
    })
    assert.is_false(ok)
    assert.matches('h2.lua: handler name "h" is taken %(also in h1.lua%)', err)
  end)
end)
