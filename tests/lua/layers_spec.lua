-- The layers of lua/gateway/ (see the head of lua/gateway/runtime.lua): every require
-- between its files goes to the file's own folder or to one below it, never up and never
-- in a circle. Read from the sources, so a new require that breaks the rule fails here.

package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local core = require("gateway.core")

local ROOT = "lua/gateway"

-- The folders a folder's files may require from (their own included). registry/ and
-- services/ both stand on pipeline/ and do not require each other. runtime.lua, at the
-- top, may require anything.
local MAY_REQUIRE = {
  transport = { transport = true, registry = true, services = true, pipeline = true },
  registry = { registry = true, pipeline = true },
  services = { services = true, pipeline = true },
  pipeline = { pipeline = true },
}

-- Provided by the C core (preloaded), below every layer.
local FROM_C = {
  ["gateway.core"] = true, ["gateway.regex"] = true, ["gateway.json"] = true,
  ["gateway.loop"] = true, ["gateway.conn"] = true, ["gateway.pubsub"] = true,
}

-- module name -> file path, for every .lua file under lua/gateway.
local function modules()
  local found = {}
  local function walk(dir, prefix)
    for _, e in ipairs(assert(core.readdir(dir), dir)) do
      if e.dir then
        walk(dir .. "/" .. e.name, prefix .. e.name .. ".")
      elseif e.name:match("%.lua$") then
        found[prefix .. e.name:gsub("%.lua$", "")] = dir .. "/" .. e.name
      end
    end
  end
  walk(ROOT, "gateway.")
  return found
end

-- The gateway modules a file requires: `require("gateway.x")`, `require "gateway.x"` and
-- `pcall(require, "gateway.x")`, outside comments.
local function requiresOf(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("a")
  f:close()
  local names = {}
  for line in text:gmatch("[^\n]*") do
    line = line:gsub("%-%-.*$", "")
    for name in line:gmatch("require%s*%(?%s*[\"'](gateway%.[%w_%.]+)[\"']") do names[#names + 1] = name end
    for name in line:gmatch("pcall%(%s*require%s*,%s*[\"'](gateway%.[%w_%.]+)[\"']") do names[#names + 1] = name end
  end
  return names
end

-- "transport" for gateway.transport.web; nil for gateway.runtime.
local function layerOf(name)
  return name:match("^gateway%.([%w_]+)%.")
end

describe("lua/gateway layers", function()
  local mods = modules()
  local graph = {}
  for name, path in pairs(mods) do graph[name] = requiresOf(path) end

  it("finds the runtime and a file in each layer", function()
    assert.is_not_nil(mods["gateway.runtime"])
    local seen = {}
    for name in pairs(mods) do
      local layer = layerOf(name)
      if layer then seen[layer] = true end
    end
    for layer in pairs(MAY_REQUIRE) do assert.is_true(seen[layer], "no file in " .. layer) end
    for layer in pairs(seen) do assert.is_not_nil(MAY_REQUIRE[layer], "a folder with no rule: " .. layer) end
  end)

  it("requires only modules that exist", function()
    for name, reqs in pairs(graph) do
      for _, r in ipairs(reqs) do
        assert.is_true(mods[r] ~= nil or FROM_C[r] == true, name .. " requires " .. r .. ", which is not there")
      end
    end
  end)

  it("requires nothing from a layer above", function()
    for name, reqs in pairs(graph) do
      local layer = layerOf(name)
      if layer then
        for _, r in ipairs(reqs) do
          local target = layerOf(r)
          if not FROM_C[r] then
            assert.is_true(target ~= nil and MAY_REQUIRE[layer][target] == true,
              name .. " (" .. layer .. ") requires " .. r .. " (" .. tostring(target or "runtime") .. ")")
          end
        end
      end
    end
  end)

  it("has no circle of requires", function()
    local state = {} -- nil: not visited, 1: on the current path, 2: done
    local function visit(name, path)
      state[name] = 1
      path[#path + 1] = name
      for _, r in ipairs(graph[name] or {}) do
        if state[r] == 1 then error("a circle: " .. table.concat(path, " -> ") .. " -> " .. r, 0) end
        if state[r] == nil and graph[r] then visit(r, path) end
      end
      path[#path] = nil
      state[name] = 2
    end
    for name in pairs(graph) do
      if state[name] == nil then visit(name, {}) end
    end
  end)
end)
