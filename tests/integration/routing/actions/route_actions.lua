-- Actions used only by test_routes.py (web routes). Each one reports what it was given:
-- its own name and version, the params after scrubbing, data.matchedRoute, data.route and
-- connection.extension. It also sets an X-Action header, so that HEAD requests (no body)
-- show which action answered.
local inputs = { id = {}, a = {}, b = {}, q = {}, x = {}, c = {}, name = {}, rest = {}, userID = {} }

local function report(api, data, next)
  local r = data.response
  r.action = data.action
  r.version = data.actionTemplate and data.actionTemplate.version
  r.params = data.params
  r.matchedRoute = data.matchedRoute
  r.route = data.route
  r.extension = data.connection.extension
  r.method = data.connection.rawConnection and data.connection.rawConnection.method
  data.headers["X-Action"] = data.action
  next()
end

local function action(name, version)
  return { name = name, description = "route test action " .. name, version = version,
           inputs = inputs, run = report }
end

return {
  routeA = action("routeA"),
  routeB = action("routeB"),
  routeC = action("routeC"),
  routeGet = action("routeGet"),
  routeAll = action("routeAll"),
  routeHead = action("routeHead"),
  routeVersioned1 = action("routeVersioned", 1),
  routeVersioned2 = action("routeVersioned", 2),
  -- matchExtensionMimeType: answers a raw string (a PNG signature and a marker), or a table
  -- when mode=table; needs a token so that a missing input can be shown.
  fileMime = {
    name = "fileMime",
    description = "I answer with the MIME type of the path's extension",
    matchExtensionMimeType = true,
    inputs = { name = {}, token = { required = true }, mode = {} },
    run = function(api, data, next)
      if data.params.mode == "table" then
        data.response.kind = "table"
        data.response.token = data.params.token
      else
        data.response = "\137PNG\r\n\26\n" .. "raw-body"
      end
      next()
    end,
  },
}
