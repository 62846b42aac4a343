-- `gateway generate action|middleware|handler|task NAME [--dir DIR]` (README "Generating
-- files"): a commented skeleton and its spec, which uses the spec helper (gateway.test,
-- docs/testing.md). Run by core/main.c in a plain Lua state; `fs` gives what plain Lua
-- lacks: fs.mkdir(path) and fs.create(path, text), which refuses a file that exists
-- (O_EXCL), so nothing is ever overwritten.

local G = {}

local USAGE = "usage: gateway generate action|middleware|handler|task NAME [--dir DIR]"

-- NAME becomes a file name, an action or middleware name and a Lua string: a letter,
-- then letters, digits and _ (at most 64).
local function validName(name)
  return type(name) == "string" and #name <= 64 and name:match("^[A-Za-z][A-Za-z0-9_]*$") ~= nil
end

local function fill(template, vars)
  return (template:gsub("{{(%w+)}}", function(k) return assert(vars[k], k) end))
end

local ACTION = [==[
-- The action `{{name}}` (README "A tour: writing an action"; SPEC §3).
-- Test it with {{spec}}: `busted {{spec}}` from the project's folder.
return {
  name = "{{name}}",
  description = "I do what {{name}} does", -- shown by showDocumentation
  -- version = 1,                          -- several files may give several versions

  -- Each input: default -> formatter -> validator -> required. "Missing" is absent,
  -- JSON null or "" (general.missingParamChecks). Undeclared params are removed.
  inputs = {
    name = {
      required = false,
      default = "world",
      formatter = "api.formatters.trim",        -- or a function(param, connection, actionTemplate, key)
      validator = api.validators.maxLength(40), -- true/nil passes; a string is the error
    },
  },

  -- middleware = { "someMiddleware" },        -- non-global middleware, in this order
  -- blockedConnectionTypes = { "socket" },    -- web, websocket, socket
  -- permissions = { "isAuthenticated" },      -- see docs/routing.md
  outputExample = { message = "hello, world" },

  -- Finish with next() or next(err), now or later; or return a table (merged into
  -- data.response) or nil, err. api.redis, api.cache, api.sleep wait without blocking.
  run = function(api, data, next)
    data.response.message = "hello, " .. data.params.name
    next()
  end,
}
]==]

local ACTION_SPEC = [==[
-- Specs of the action `{{name}}`, with the spec helper (docs/testing.md): the gateway's
-- runtime in this process, its event loop and a private redis-server.
local helper = require("gateway.test")

describe("{{name}}", function()
  local h

  setup(function()
    h = helper.start({ config = "gateway.lua" })
  end)

  teardown(function()
    h.stop()
  end)

  it("answers with its message", function()
    local r = h.runAction("{{name}}", { name = "  Ada " })
    assert.is_nil(r.error)
    assert.equal(200, r.status)
    assert.equal("hello, Ada", r.response.message)
  end)

  it("uses the default name", function()
    assert.equal("hello, world", h.runAction("{{name}}").response.message)
  end)

  it("refuses a name longer than 40 characters", function()
    local r = h.runAction("{{name}}", { name = string.rep("a", 41) })
    assert.equal(422, r.status)
    assert.equal("must be at most 40 characters long", r.error)
  end)
end)
]==]

local MIDDLEWARE = [==[
-- The middleware `{{name}}` (README "Middleware"; SPEC §4). Not global: an action runs it
-- when it lists it (`middleware = { "{{name}}" }`); set `global = true` for every action.
-- Test it with {{spec}}.
return {
  name = "{{name}}",
  global = false,
  priority = 100, -- lower runs first (general.defaultMiddlewarePriority)

  -- Before the action (and before its inputs): next(err) or return nil, err stops it with
  -- that error; data.toProcess = false skips `run`.
  preProcessor = function(data, next)
    data.connection.{{name}}Seen = (data.connection.{{name}}Seen or 0) + 1
    next()
  end,

  -- After an action that succeeded: data.response is a table to add to, data.headers the
  -- web response headers.
  postProcessor = function(data, next)
    data.headers["X-{{name}}"] = "yes"
    next()
  end,

  -- Connection middleware is another file shape:
  --   { name = ..., create = function(connection) end, destroy = function(connection) end }
}
]==]

local MIDDLEWARE_SPEC = [==[
-- Specs of the middleware `{{name}}`, with the spec helper (docs/testing.md). It is not
-- global, so this spec runs it under a probe action that lists it: a config of its own
-- (in a temporary folder) loads that action and the project's middleware/ folder.
local helper = require("gateway.test")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("the middleware {{name}}", function()
  local h, dir

  setup(function()
    local root = assert(io.popen("pwd")):read("l")
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/actions"))
    write(dir .. "/actions/probe.lua", [[
return {
  name = "probe", description = "runs {{name}}", middleware = { "{{name}}" },
  run = function(api, data) return { ok = true } end,
}]])
    write(dir .. "/gateway.lua", string.format(
      "return { paths = { actions = { %q }, middleware = { %q } } }", dir .. "/actions", root .. "/middleware"))
    h = helper.start({ config = dir .. "/gateway.lua" })
  end)

  teardown(function()
    h.stop()
    os.execute("rm -rf " .. dir)
  end)

  it("runs before and after the action", function()
    local r = h.runAction("probe", {}, { type = "web" })
    assert.is_nil(r.error)
    assert.equal("yes", r.data.headers["X-{{name}}"])
    assert.equal(1, r.connection.{{name}}Seen)
  end)
end)
]==]

local HANDLER = [==[
-- The handler `{{name}}` (docs/routing.md; SPEC §6, rest_framework_channels): messages with
-- a route matching `routes` run its generics on a Redis resource, or its own actions.
-- Over WebSocket/TCP: {"action": "create", "route": "{{name}}/", "data": {"title": "x"}}
-- Over HTTP: POST /api/{{name}}/, GET /api/{{name}}/1/, ...
-- Test it with {{spec}}.
return {
  name = "{{name}}",
  routes = { [[^{{name}}/$]], [[^{{name}}/(?P<pk>[-\w]+)/$]] }, -- pcre2; named groups are params

  -- One Redis hash per object under redis.prefix .. "resource:{{name}}:".
  resource = {
    name = "{{name}}",
    fields = {
      title = { required = true, maxLength = 255 },
      content = { default = "" },
    },
    -- pageSize = 10,                        -- then `list` answers {count, next, previous, results}
  },
  generics = { "retrieve", "list", "create", "update", "partial_update", "remove" },
  -- permissions = { "isAuthenticated" },

  -- Actions of its own: a full action table, or a function returning body, status.
  actions = {
    count = function(api, data)
      return { route = data.route }, 200
    end,
  },
}
]==]

local HANDLER_SPEC = [==[
-- Specs of the handler `{{name}}`, with the spec helper (docs/testing.md): each message
-- goes through its route, as a WebSocket client's would, against a private Redis.
local helper = require("gateway.test")

describe("the handler {{name}}", function()
  local h

  setup(function()
    h = helper.start({ config = "gateway.lua" })
  end)

  teardown(function()
    h.stop()
  end)

  before_each(function()
    h.flush()
  end)

  it("creates, retrieves, lists and removes", function()
    local created = h.runRoute("{{name}}/", "create", { title = "first" })
    assert.equal(201, created.status)
    local id = created.data.id
    assert.equal("first", h.runRoute("{{name}}/" .. id .. "/", "retrieve").data.title)
    assert.equal(1, #h.runRoute("{{name}}/", "list").data)
    assert.equal(204, h.runRoute("{{name}}/" .. id .. "/", "remove").status)
    assert.equal(404, h.runRoute("{{name}}/" .. id .. "/", "retrieve").status)
  end)

  it("validates its fields", function()
    local r = h.runRoute("{{name}}/", "create", {})
    assert.equal(422, r.status)
    assert.same({ { title = { "This field is required." } } }, r.errors)
  end)

  it("answers its own actions", function()
    assert.equal(200, h.runRoute("{{name}}/", "count").status)
  end)
end)
]==]

local TASK = [==[
-- The task `{{name}}` (docs/tasks.md): loaded from paths.tasks, enqueued with
-- api.tasks.enqueue("{{name}}", params), run by a gateway with tasks.enabled = true.
-- Jobs run at least once: a job whose worker died runs again, so make run idempotent.
return {
  name = "{{name}}",
  description = "I do {{name}} in the background",
  queue = "default",
  frequency = 0,               -- ms between recurring runs across the cluster; 0: only when enqueued
  retries = 0,                 -- runs after the first that failed, before the failed list
  backoff = { 1000, 5000, 30000 }, -- ms before each retry (the last repeats)
  middleware = {},             -- names of task middleware
  inputs = {
    x = { required = false, default = 1 },
  },

  -- params: what the task was enqueued with, through its inputs; job: { id, task, queue,
  -- enqueuedAt, attempts }. Raise to fail the attempt; may wait (api.redis, api.sleep).
  run = function(api, params, job)
    return { ran = true, x = params.x }
  end,
}
]==]

local TASK_SPEC = [==[
-- Specs of the task `{{name}}`: its shape, its run on a stand-in api, and that the
-- project (task files included) still loads in the spec helper (docs/testing.md).
local helper = require("gateway.test")

describe("the task {{name}}", function()
  it("has the task shape", function()
    local task = dofile("tasks/{{name}}.lua")
    assert.equal("{{name}}", task.name)
    assert.is_string(task.description)
    assert.is_function(task.run)
  end)

  it("runs", function()
    local task = dofile("tasks/{{name}}.lua")
    assert.same({ ran = true, x = 2 }, task.run({}, { x = 2 }, { id = "job1", attempts = 0 }))
  end)

  it("leaves the project loadable", function()
    local h = helper.start({ config = "gateway.lua" })
    h.stop()
  end)
end)
]==]

local KINDS = {
  action = { folder = "actions", specs = "actions", template = ACTION, spec = ACTION_SPEC },
  middleware = { folder = "middleware", specs = "middleware", template = MIDDLEWARE, spec = MIDDLEWARE_SPEC },
  handler = { folder = "actions", specs = "handlers", template = HANDLER, spec = HANDLER_SPEC },
  task = { folder = "tasks", specs = "tasks", template = TASK, spec = TASK_SPEC },
}

-- .busted: busted on Lua 5.4, finding gateway.test in this gateway's lua/ folder.
local function bustedConfig(luaDir)
  return string.format([==[
-- busted's settings for this project (written by `gateway generate`): Lua 5.4, and
-- the gateway's Lua folder, where the spec helper gateway.test lives (docs/testing.md).
return {
  default = {
    lua = "lua5.4",
    lpath = %q,
    ROOT = { "tests" },
  },
}
]==], luaDir .. "/?.lua;" .. luaDir .. "/?/init.lua;./?.lua")
end

-- main(args, fs, luaDir) -> exit status (0 done, 1 a file exists or cannot be written,
-- 2 bad usage); messages on stdout and stderr.
function G.main(args, fs, luaDir)
  local kind, name, dir
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--dir" then
      dir = args[i + 1]
      if not dir or dir == "" then
        io.stderr:write("gateway: --dir needs a folder\n", USAGE, "\n")
        return 2
      end
      i = i + 2
    elseif a:sub(1, 2) == "--" then
      io.stderr:write("gateway: unknown option \"", a, "\"\n", USAGE, "\n")
      return 2
    elseif not kind then
      kind, i = a, i + 1
    elseif not name then
      name, i = a, i + 1
    else
      io.stderr:write("gateway: unexpected argument \"", a, "\"\n", USAGE, "\n")
      return 2
    end
  end
  if not kind or not name then
    io.stderr:write(USAGE, "\n")
    return 2
  end
  local k = KINDS[kind]
  if not k then
    io.stderr:write("gateway: cannot generate \"", kind, "\": action, middleware, handler or task\n")
    return 2
  end
  if not validName(name) then
    io.stderr:write("gateway: \"", name, "\" is not a valid name: a letter, then letters, digits",
      " or _ (at most 64)\n")
    return 2
  end
  dir = dir or "."
  local function under(rel) return dir == "." and rel or (dir:gsub("/+$", "") .. "/" .. rel) end
  local file = k.folder .. "/" .. name .. ".lua"
  local spec = "tests/" .. k.specs .. "/" .. name .. "_spec.lua"
  local vars = { name = name, spec = spec }

  -- Refuse before writing anything, so a refusal leaves no half of the pair.
  for _, rel in ipairs({ file, spec }) do
    if fs.exists(under(rel)) then
      io.stderr:write("gateway: ", under(rel), " already exists; nothing was written\n")
      return 1
    end
  end
  local written = {}
  local function create(rel, text)
    local path = under(rel)
    local folder = path:match("^(.*)/[^/]*$")
    local ok, err = true, nil
    if folder then ok, err = fs.mkdir(folder) end
    if ok then ok, err = fs.create(path, text) end
    if not ok then
      io.stderr:write("gateway: ", err, "\n")
      return false
    end
    written[#written + 1] = path
    return true
  end
  if not create(file, fill(k.template, vars)) or not create(spec, fill(k.spec, vars)) then return 1 end
  if not fs.exists(under(".busted")) then create(".busted", bustedConfig(luaDir)) end
  for _, path in ipairs(written) do io.stdout:write("created ", path, "\n") end
  io.stdout:write("run the specs with `busted` in ", dir == "." and "this folder" or dir,
    " (the spec helper needs the gateway's `make testhost`; docs/testing.md)\n")
  if kind == "task" then
    io.stdout:write("note: tasks run where the config has tasks = { enabled = true } (docs/tasks.md)\n")
  end
  return 0
end

G.validName = validName
return G
