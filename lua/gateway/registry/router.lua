-- Web routes (SPEC §6): the routes file's per-method lists compiled into segment matchers.
-- Static segments match case-insensitively, `:name` takes one segment, `:name(regex)` one
-- segment the pcre2 regex accepts, and with matchTrailingPathParts the last variable takes
-- the rest of the path. Each list is indexed by its routes' first static segment (at
-- whatever position), so a request only tries the routes that can match it, in file order.
-- M.resolve holds the whole precedence of a request under /api/: ?action=, web routes,
-- one segment naming an action, handler routes (their matching is gateway.registry.handlers).

local core = require("gateway.core")
local pcre = require("gateway.regex")
local handlers = require("gateway.registry.handlers")

local M = {}

M.METHODS = { "get", "post", "put", "patch", "delete", "head" }
local METHOD_SET = { all = true }
for _, m in ipairs(M.METHODS) do METHOD_SET[m] = true end

local function split(path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do segs[#segs + 1] = seg end
  return segs
end
M.split = split

-- One path segment of a route: { literal = "users" } or { name = "id", regex = "..." }.
local function compileSegment(seg, where)
  if seg:sub(1, 1) ~= ":" then return { literal = seg:lower() } end
  local name, rest = seg:match("^:([%w_]+)(.*)$")
  if not name then error(where .. ': bad variable segment "' .. seg .. '"', 0) end
  if rest == "" then return { name = name } end
  local regex = rest:match("^%((.*)%)$")
  if not regex then error(where .. ': bad variable segment "' .. seg .. '" (expected :name(regex))', 0) end
  local ok, err = pcall(pcre.test, "", regex)
  if not ok then error(where .. ": " .. tostring(err), 0) end
  return { name = name, regex = regex }
end

-- A list with an index: each route is filed under its first static segment (position
-- and lower-cased text); routes without any static segment are in `any`. Buckets and
-- `any` keep file order.
local function newList()
  return { routes = {}, byPos = {}, positions = {}, any = {} }
end

local function addRoute(list, route)
  list.routes[#list.routes + 1] = route
  for pos, seg in ipairs(route.segments) do
    if seg.literal then
      local byText = list.byPos[pos]
      if not byText then
        byText = {}
        list.byPos[pos] = byText
        list.positions[#list.positions + 1] = pos
        table.sort(list.positions)
      end
      byText[seg.literal] = byText[seg.literal] or {}
      table.insert(byText[seg.literal], route)
      return
    end
  end
  list.any[#list.any + 1] = route
end

-- Compile the routes table `spec` (what the routes file returned); `actionExists(name)`
-- says whether an action is loaded. Raises "file: reason" on a bad route.
function M.compile(spec, file, actionExists)
  local compiled, order = {}, 0
  for method in pairs(METHOD_SET) do compiled[method] = newList() end
  if spec == nil then return compiled end
  if type(spec) ~= "table" then error(file .. ": the routes file must return a table", 0) end
  local methods = {}
  for method in pairs(spec) do
    if not METHOD_SET[method] then
      error(file .. ': unknown method "' .. tostring(method) .. '" (use all, get, post, put, patch, delete, head)', 0)
    end
    methods[#methods + 1] = method
  end
  table.sort(methods)
  for _, method in ipairs(methods) do
    if type(spec[method]) ~= "table" then error(file .. ": " .. method .. " must be a list of routes", 0) end
    for i, r in ipairs(spec[method]) do
      local where = file .. ": " .. method .. "[" .. i .. "]"
      if type(r) ~= "table" or type(r.path) ~= "string" then error(where .. ": a route needs a path", 0) end
      if type(r.action) ~= "string" or not actionExists(r.action) then
        error(where .. ': unknown action "' .. tostring(r.action) .. '" for ' .. r.path, 0)
      end
      local segments = {}
      for _, seg in ipairs(split(r.path)) do segments[#segments + 1] = compileSegment(seg, where) end
      local trailing = r.matchTrailingPathParts == true
      if trailing and not (segments[#segments] and segments[#segments].name) then
        error(where .. ": matchTrailingPathParts needs a path ending in a variable", 0)
      end
      order = order + 1
      addRoute(compiled[method], {
        method = method, path = r.path, action = r.action, apiVersion = r.apiVersion,
        trailing = trailing, segments = segments, order = order,
      })
    end
  end
  return compiled
end

-- Does `route` match the path segments? Returns its params, or nil.
local function tryRoute(route, segs)
  local rs = route.segments
  local n = #rs
  if #segs < n or (#segs > n and not route.trailing) then return nil end
  local params
  for i = 1, n do
    local rseg, seg = rs[i], segs[i]
    if rseg.literal then
      if seg:lower() ~= rseg.literal then return nil end
    else
      if i == n and route.trailing then seg = table.concat(segs, "/", n) end
      -- core.regex_test: a segment the pattern cannot decide within pcre2's match
      -- limit does not match (the client gets what any other segment would).
      if rseg.regex and not core.regex_test(seg, rseg.regex) then return nil end
      params = params or {}
      params[rseg.name] = seg
    end
  end
  return params or {}
end

-- The first match in one list: the candidate lists (one bucket per indexed position,
-- and `any`) are walked together in file order.
local function matchList(list, segs)
  local lists, at = { list.any }, { 1 }
  for _, pos in ipairs(list.positions) do
    local seg = segs[pos]
    local bucket = seg and list.byPos[pos][seg:lower()]
    if bucket then
      lists[#lists + 1] = bucket
      at[#at + 1] = 1
    end
  end
  while true do
    local best, bestList
    for k = 1, #lists do
      local r = lists[k][at[k]]
      if r and (not best or r.order < best.order) then best, bestList = r, k end
    end
    if not best then return nil end
    at[bestList] = at[bestList] + 1
    local params = tryRoute(best, segs)
    if params then return best, params end
  end
end

-- The lists a method tries, in order: its own, then all (HEAD: head, get, all).
local ORDER = { head = { "head", "get", "all" } }
for _, m in ipairs(M.METHODS) do ORDER[m] = ORDER[m] or { m, "all" } end
local ALL_ONLY = { "all" }

-- Segments of a raw (still %-encoded) path, each decoded on its own: "%2F" stays inside its
-- segment as a "/", and "+" stays a plus sign.
local function splitRaw(raw)
  local segs = split(raw)
  for i, seg in ipairs(segs) do
    if seg:find("%", 1, true) then segs[i] = core.url_decode(seg) end
  end
  return segs
end

-- The route for `method` (lower case) and `path` (relative to /api), and its params. With
-- `rawPath` (the same path before %-decoding) segments are split before they are decoded.
-- Empty lists are skipped without splitting the path: most requests name an action directly.
function M.match(compiled, method, path, rawPath)
  local segs
  for _, name in ipairs(ORDER[method] or ALL_ONLY) do
    local list = compiled[name]
    if list and #list.routes > 0 then
      segs = segs or (rawPath and splitRaw(rawPath)) or split(path)
      local route, params = matchList(list, segs)
      if route then return route, params end
    end
  end
  return nil
end

local LOWER = { GET = "get", POST = "post", PUT = "put", PATCH = "patch", DELETE = "delete",
  HEAD = "head" }

-- Which action a web request under /api/ names (SPEC §6), in this order:
--   1. params.action naming a loaded action;
--   2. a web route of `reg.routes` for `method` (its params are merged into `params`, and
--      its apiVersion applies when params has none);
--   3. a single path segment naming a loaded action, `extension` (".json" -> "json")
--      stripped from it;
--   4. a handler route of `reg.handlerIndex`, the handler action chosen by `method`
--      (its params, query string and named groups, are merged into `params`);
--   5. else the name as given (the segment, the whole path, or params.action), which the
--      processor answers with 404.
-- `method` is the HTTP method ("GET"), `rest` the decoded path after /api/ and `rawRest`
-- the same before %-decoding, or nil (see M.match). Returns
--   name                                           by name (1, 3, 5)
--   name, routeParams, route                       a web route (2): its compiled entry
--   name, namedGroups, pattern, handlerAction      a handler (4)
--   nil, message, 405                              a handler matched, but not the method
-- A path of one segment is not split: most requests name their action directly.
function M.resolve(reg, method, rest, rawRest, params, extension)
  local versions = reg.versions
  local asked = params.action
  if type(asked) == "string" and versions[asked] then return asked end

  local route, routeParams = M.match(reg.routes, LOWER[method] or method:lower(), rest, rawRest)
  if route then
    for k, v in pairs(routeParams) do params[k] = v end
    if (params.apiVersion == nil or params.apiVersion == "") and route.apiVersion ~= nil then
      params.apiVersion = route.apiVersion
    end
    return route.action, routeParams, route
  end

  -- One segment (most requests) needs no split.
  local nsegs, candidate
  if rest:find("/", 1, true) then
    local segs = split(rest)
    nsegs, candidate = #segs, segs[1] or ""
  else
    nsegs, candidate = rest == "" and 0 or 1, rest
  end
  if extension then candidate = candidate:gsub("%." .. extension:gsub("%p", "%%%0") .. "$", "") end
  if nsegs > 1 or not versions[candidate] then
    local action, handlerParams, pattern, named =
      handlers.resolve(reg.handlerIndex, rest, nil, method)
    if action then
      for k, v in pairs(handlerParams) do params[k] = v end
      return action.name, named, pattern, action
    elseif pattern == 405 then
      return nil, handlerParams, 405
    end
  end
  local name = nsegs <= 1 and candidate or rest
  if name == "" and type(asked) == "string" then name = asked end
  return name
end

-- How many routes were loaded.
function M.count(compiled)
  local n = 0
  for _, list in pairs(compiled) do n = n + #list.routes end
  return n
end

return M
