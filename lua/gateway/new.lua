-- `gateway new DIR`: a project outside the gateway's tree (docs/install.md), with
-- gateway.lua (paths relative to it), routes.lua, actions/ (one example action),
-- middleware/ (one example, not global), public/, tests/ (a busted spec) and a README.
-- Run by core/runtime/cli.c with `fs` (mkdir, entries); it never overwrites: DIR must be
-- missing or an empty folder.

local M = {}

local function files(name)
  local q = string.format("%q", name)
  return {
    { "gateway.lua", [[
-- The config of ]] .. name .. [[ (every key and its default: gateway.lua.example, in
-- share/gateway of an installed gateway). Paths are relative to this file's folder, so
--   gateway --config ]] .. name .. [[/gateway.lua
-- serves this project from any directory. `kill -HUP <pid>` reloads the actions and the
-- keys that can change live (log level, limits, timeouts).
return {
  name = ]] .. q .. [[,
  paths = {
    actions = { "actions" },
    middleware = { "middleware" },
    routes = "routes.lua",
    public = "public",
  },
  servers = {
    web = { host = "127.0.0.1", port = 8080 },
  },
  redis = { url = "redis://127.0.0.1:6379/0", prefix = ]] .. string.format("%q", name .. ":") .. [[ },
  logging = { level = "info" },
}
]] },
    { "routes.lua", [[
-- Web routes (paths under /api): GET /api/hello/Ada runs the hello action with name=Ada.
return {
  get = {
    { path = "/hello/:name", action = "hello" },
  },
}
]] },
    { "actions/hello.lua", [[
-- GET /api/hello?name=Ada -> {"greeting":"hello, Ada", ...}
return {
  name = "hello",
  description = "I greet someone",
  inputs = {
    name = { required = true, formatter = "api.formatters.trim" },
    shout = { default = false, formatter = "api.formatters.toBoolean" },
  },
  outputExample = { greeting = "hello, Ada" },
  run = function(api, data, next)
    local greeting = "hello, " .. data.params.name
    if data.params.shout then greeting = greeting:upper() end
    data.response.greeting = greeting
    next()
  end,
}
]] },
    { "middleware/requireUser.lua", [[
-- Action middleware, not global: an action runs it by listing it,
--   middleware = { "requireUser" },
-- and answers 401 unless a session set connection.user (api.session).
return {
  name = "requireUser",
  global = false,
  preProcessor = function(data, next)
    if data.connection.user == nil then
      return next({ message = "log in first", status = 401 })
    end
    next()
  end,
}
]] },
    { "public/index.html", [[
<!doctype html>
<meta charset="utf-8">
<title>]] .. name:gsub("[<>&\"]", "") .. [[</title>
<h1>]] .. name:gsub("[<>&\"]", "") .. [[</h1>
<p>Served from <code>public/</code> at <code>/public/</code>. Try
<a href="/api/hello?name=Ada">/api/hello?name=Ada</a>.</p>
]] },
    { "tests/hello_spec.lua", [[
-- A busted spec for actions/hello.lua, run from the project's folder: `busted tests`.
-- It calls run() directly with a small data table.
describe("hello", function()
  local action = dofile("actions/hello.lua")

  it("greets by name", function()
    local data = { params = { name = "Ada", shout = false }, response = {} }
    local done = false
    action.run(nil, data, function(err) assert.is_nil(err); done = true end)
    assert.is_true(done)
    assert.are.equal("hello, Ada", data.response.greeting)
  end)
end)
]] },
    { "README.md", [[
# ]] .. name .. "\n" .. [[

A project for the gateway (`man gateway`).

    gateway --config gateway.lua --check     # load everything, list what was found
    gateway --config gateway.lua             # serve on http://127.0.0.1:8080 (needs Redis)
    curl 'http://127.0.0.1:8080/api/hello?name=Ada'
    curl 'http://127.0.0.1:8080/api/hello/Ada'
    busted tests                             # the specs (Debian: lua-busted)

- `gateway.lua`: the config; paths in it are relative to its folder.
- `actions/`: one action per file (any depth); `hello.lua` is the example.
- `middleware/`: action and connection middleware; `requireUser.lua` is not global.
- `routes.lua`: web routes to actions.
- `public/`: static files, under `/public/`.
- `tests/`: busted specs.

`kill -HUP <pid>` reloads actions, middleware, routes and the live keys of `gateway.lua`.
]] },
  }
end

local function fail(msg)
  io.stderr:write("gateway new: ", msg, "\n")
  return 1
end

function M.main(args, fs)
  local dir = args[1]
  if not dir or dir == "" or args[2] or dir:sub(1, 1) == "-" then
    io.stderr:write("usage: gateway new DIR\n")
    return 2
  end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local name = dir:match("([^/]+)$") or "gateway"
  local n, why = fs.entries(dir)
  if n and n > 0 then
    return fail(dir .. " exists and is not empty: nothing was written")
  elseif not n and why ~= "missing" then
    return fail(dir .. ": " .. why)
  end
  if not n then
    local ok, err = fs.mkdir(dir)
    if not ok then return fail(err) end
  end
  for _, sub in ipairs({ "actions", "middleware", "public", "tests" }) do
    local ok, err = fs.mkdir(dir .. "/" .. sub)
    if not ok then return fail(err) end
  end
  for _, f in ipairs(files(name)) do
    local path = dir .. "/" .. f[1]
    local out, err = io.open(path, "w")
    if not out then return fail(err) end
    local ok, werr = out:write(f[2])
    out:close()
    if not ok then return fail(path .. ": " .. tostring(werr)) end
    print("created " .. path)
  end
  print(string.format("\nnext:\n  gateway --config %s/gateway.lua --check\n  gateway --config %s/gateway.lua", dir, dir))
  return 0
end

return M
