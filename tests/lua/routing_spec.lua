-- Specs for lua/gateway/registry/router.lua (web routes, and the precedence of SPEC §6 in
-- router.resolve), the matching half of lua/gateway/registry/handlers.lua (message routes)
-- and lua/gateway/pipeline/permissions.lua.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local router = require("gateway.registry.router")
local handlers = require("gateway.registry.handlers")
local permissions = require("gateway.pipeline.permissions")

local function exists() return true end

describe("router", function()
  local routes = router.compile({
    get = {
      { path = "/users/:id", action = "show" },
      { path = "/users/me", action = "never" },
      { path = "/login/:userID(^(\\d{3}|admin)$)", action = "login" },
      { path = "/files/:path", action = "file", matchTrailingPathParts = true },
      { path = "/:anything/x", action = "wild" },
    },
    all = { { path = "/Things/:x", action = "thing", apiVersion = 2 }, { path = "/users/:id", action = "allShow" } },
    head = { { path = "/users/:id", action = "headShow" } },
  }, "routes.lua", exists)

  local function match(method, path)
    local r, params = router.match(routes, method, path)
    return r and r.action, params
  end

  it("captures variables and matches static segments case-insensitively", function()
    local name, params = match("get", "USERS/42")
    assert.equal("show", name)
    assert.same({ id = "42" }, params)
    assert.equal("show", (match("get", "/users/42/")))
  end)

  it("takes the first match in file order, the method's list before all", function()
    assert.equal("show", (match("get", "users/me")))
    assert.equal("allShow", (match("post", "users/1")))
    assert.equal("headShow", (match("head", "users/1")))
    assert.equal("thing", (match("delete", "things/1")))
  end)

  it("HEAD falls back to the get list, then all", function()
    assert.equal("login", (match("head", "login/123")))
  end)

  it("applies regex constraints to one segment", function()
    assert.equal("login", (match("get", "login/123")))
    assert.equal("login", (match("get", "login/admin")))
    assert.is_nil(match("get", "login/1234"))
  end)

  it("lets the last variable take the rest with matchTrailingPathParts", function()
    local name, params = match("get", "files/a/b/c.txt")
    assert.equal("file", name)
    assert.equal("a/b/c.txt", params.path)
    assert.is_nil(match("get", "files"))
  end)

  it("tries routes that start with a variable next to the indexed ones", function()
    assert.equal("wild", (match("get", "zzz/x")))
    assert.is_nil(match("get", "zzz/y"))
  end)

  it("refuses unknown actions, methods and bad regexes at load", function()
    local function compileError(spec, known)
      local ok, err = pcall(router.compile, spec, "r.lua", function(n) return n == known end)
      assert.is_false(ok)
      return err
    end
    assert.truthy(compileError({ get = { { path = "/a", action = "nope" } } }):find('unknown action "nope"', 1, true))
    assert.truthy(compileError({ fetch = {} }):find('unknown method "fetch"', 1, true))
    assert.truthy(compileError({ get = { { path = "/a/:x((", action = "a" } } }, "a"):find("r.lua", 1, true))
  end)
end)

describe("handlers", function()
  it("indexes anchored patterns by their literal first segment only", function()
    local seg = handlers.literalFirstSegment
    assert.equal("items", seg([[^items/(?P<pk>[-\w]+)/$]]))
    assert.equal("items", seg([[^items/$]]))
    assert.is_nil(seg([[kw/(?P<child_id>[-\w]+)/$]])) -- unanchored: searched anywhere
    assert.is_nil(seg([[^a/|^b/]]))                    -- alternation
    assert.is_nil(seg([[^items?/x]]))                  -- the s is optional
    assert.is_nil(seg([[^(?i)items/]]))
    assert.is_nil(seg([[^abc]]))                       -- no whole segment
  end)

  local function make(def) return def end
  local index = handlers.compile({
    { file = "a.lua", handler = { routes = { [[^items/(?P<pk>\d+)/$]], [[^items/$]] },
      actions = { show = function() end, list = function() end, retrieve = function() end } } },
    { file = "b.lua", handler = { routes = { [[kw/(?P<child_id>[-\w]+)/$]] }, actions = { show = function() end } } },
    { file = "c.lua", handler = { routes = { [[^items/]] }, actions = { other = function() end } } },
  }, make)

  it("matches in load order with search semantics and named groups as params", function()
    local action, params, pattern = handlers.resolve(index, "x/kw/2/?q=1&r=2", "show")
    assert.equal("show", action.name)
    assert.same({ child_id = "2", q = "1", r = "2" }, params)
    assert.equal([[kw/(?P<child_id>[-\w]+)/$]], pattern)
    -- items/5/ matches a.lua before c.lua.
    assert.equal("show", handlers.resolve(index, "items/5/", "show").name)
  end)

  it("answers 404 without a handler and 405 without the action", function()
    local a, message, status = handlers.resolve(index, "nothing/", "show")
    assert.is_nil(a)
    assert.equal('route "nothing/" not found', message)
    assert.equal(404, status)
    a, message, status = handlers.resolve(index, "items/5/", "other")
    assert.equal('Action "other" not allowed.', message)
    assert.equal(405, status)
  end)

  it("maps HTTP methods to actions, GET by whether the route names a pk", function()
    assert.equal("retrieve", handlers.resolve(index, "items/5/", nil, "GET").name)
    assert.equal("list", handlers.resolve(index, "items/", nil, "GET").name)
    local _, _, status = handlers.resolve(index, "items/", nil, "POST")
    assert.equal(405, status)
  end)
end)

describe("router.resolve", function()
  -- A registry as the loader makes it: `echo`, `show`, `status` and `files` are actions;
  -- `echo` is also a web route's path, and `items/` a handler's.
  local function make(def) return def end
  local reg = {
    versions = { echo = { 1 }, show = { 1 }, status = { 1 }, files = { 1 } },
    routes = router.compile({
      get = {
        { path = "/users/:id", action = "show" },
        { path = "/echo", action = "status" },
        { path = "/v/:id", action = "show", apiVersion = 2 },
        { path = "/files/:name", action = "files" },
      },
    }, "routes.lua", exists),
    handlerIndex = handlers.compile({
      { file = "items.lua", handler = { routes = { [[^items/(?P<pk>\d+)/$]], [[^items/$]], [[^echo]] },
        actions = { retrieve = function() end, list = function() end, create = function() end } } },
    }, make),
  }

  -- resolve with fresh params; returns its values and the params as they are after it.
  local function resolve(method, rest, params, extension, rawRest)
    params = params or {}
    return { router.resolve(reg, method, rest, rawRest, params, extension) }, params
  end

  it("1. ?action= naming a loaded action wins over a web route", function()
    local r, params = resolve("GET", "users/5", { action = "status" })
    assert.same({ "status" }, r)
    assert.is_nil(params.id)
  end)

  it("... but not when it names no action: the web route chooses", function()
    local r, params = resolve("GET", "users/5", { action = "nope" })
    assert.equal("show", r[1])
    assert.same({ id = "5" }, r[2])
    assert.equal("/users/:id", r[3].path)
    assert.is_nil(r[4])
    assert.same({ action = "nope", id = "5" }, params) -- params.action is the transport's
  end)

  it("2. a web route wins over a segment naming an action, for its own method", function()
    assert.equal("status", resolve("GET", "echo")[1])
    assert.equal("status", resolve("HEAD", "echo")[1]) -- HEAD tries get
    assert.same({ "echo" }, (resolve("POST", "echo")))
  end)

  it("2. merges route params over query and body, and the route's apiVersion when none", function()
    local r, params = resolve("GET", "v/7", { id = "from query" })
    assert.equal("show", r[1])
    assert.same({ id = "7", apiVersion = 2 }, params)
    r, params = resolve("GET", "v/7", { apiVersion = "1" })
    assert.same({ id = "7", apiVersion = "1" }, params)
    _, params = resolve("GET", "v/7", { apiVersion = "" })
    assert.equal(2, params.apiVersion)
  end)

  it("2. splits the raw path before decoding it", function()
    local r = resolve("GET", "files/a/b", nil, nil, "files/a%2Fb")
    assert.equal("files", r[1])
    assert.same({ name = "a/b" }, r[2])
  end)

  it("3. a segment naming an action, its extension stripped, wins over a handler route", function()
    assert.same({ "echo" }, (resolve("POST", "echo"))) -- ^echo would take POST (create)
    assert.same({ "echo" }, (resolve("POST", "echo.json", nil, "json")))
    assert.same({ "show" }, (resolve("GET", "show.gz", nil, "gz")))
    assert.same({ "show.tar" }, (resolve("GET", "show.tar.gz", nil, "gz"))) -- the last one only
  end)

  it("4. a handler route chooses by method, its params merged", function()
    local r, params = resolve("GET", "items/5/", { q = "1" })
    assert.equal("retrieve", r[1])
    assert.same({ pk = "5" }, r[2])
    assert.equal([[^items/(?P<pk>\d+)/$]], r[3])
    assert.equal("retrieve", r[4].name)
    assert.same({ q = "1", pk = "5" }, params)
    assert.equal("list", resolve("GET", "items/")[1])
    assert.equal("create", resolve("POST", "echo/more")[1]) -- two segments: not an action name
  end)

  it("4. a handler that matches without the method's action is 405", function()
    assert.same({ nil, 'Action "remove" not allowed.', 405 }, (resolve("DELETE", "items/5/")))
  end)

  it("5. else the name as given: the segment, the whole path, or ?action=", function()
    assert.same({ "nope" }, (resolve("GET", "nope")))
    assert.same({ "nope" }, (resolve("GET", "nope.json", nil, "json")))
    assert.same({ "a/b" }, (resolve("GET", "a/b")))
    assert.same({ "missing" }, (resolve("GET", "", { action = "missing" })))
    assert.same({ "" }, (resolve("GET", "")))
  end)
end)

describe("permissions", function()
  local api = permissions.new()
  api.add("isAdmin", function(data) return data.connection.user == "admin", "admins only" end)
  api.add("never", function() return false end)
  local function data(user) return { connection = { user = user } } end

  it("passes when every check passes", function()
    assert.is_nil(permissions.check(api.permissions, { "isAuthenticated", "isAdmin", "allowAny" }, data("admin")))
  end)

  it("denies with 401 for isAuthenticated, 403 otherwise", function()
    assert.same({ permissions.UNAUTHENTICATED, 401 },
      { permissions.check(api.permissions, { "isAuthenticated", "isAdmin" }, data(nil)) })
    assert.same({ "admins only", 403 }, { permissions.check(api.permissions, { "isAdmin" }, data("bob")) })
    assert.same({ permissions.DENIED, 403 }, { permissions.check(api.permissions, { "never" }, data("x")) })
  end)

  it("names the first unknown permission", function()
    assert.equal("nope", permissions.unknown(api.permissions, { "allowAny", "nope" }))
    assert.is_nil(permissions.unknown(api.permissions, { "allowAny", "isAdmin" }))
  end)
end)
