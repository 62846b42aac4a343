-- api.documentation and the built-in showDocumentation action: what each action with
-- toDocument ~= false declares, by name and version.

local D = {}

local function describeInputs(action)
  local out = {}
  for key, input in pairs(action.inputs or {}) do
    local d = { required = input.required == true }
    if input.default ~= nil and type(input.default) ~= "function" then d.default = input.default end
    if type(input.description) == "string" then d.description = input.description end
    out[key] = d
  end
  return out
end

function D.build(reg)
  local doc = {}
  for name, byVersion in pairs(reg.actions) do
    for version, a in pairs(byVersion) do
      if a.toDocument ~= false then
        doc[name] = doc[name] or {}
        doc[name][tostring(version)] = {
          name = a.name, version = a.version, description = a.description,
          inputs = describeInputs(a), outputExample = a.outputExample,
          blockedConnectionTypes = a.blockedConnectionTypes, matchExtensionMimeType = a.matchExtensionMimeType,
        }
      end
    end
  end
  return doc
end

-- showDocumentation, unless the project defines its own.
function D.addBuiltins(reg, api)
  if reg.actions.showDocumentation then return end
  local inputs = require("gateway.pipeline.inputs")
  local action = {
    name = "showDocumentation", description = "Return the API documentation", version = 1,
    inputs = {}, middleware = {}, permissions = {}, toDocument = false, _file = "(built in)",
    outputExample = { documentation = {} },
    run = function(a, data)
      data.response.documentation = a.documentation.documentation
      -- The loaded tasks (docs/tasks.md), when there are any.
      if next(a.documentation.tasks or {}) ~= nil then data.response.tasks = a.documentation.tasks end
    end,
  }
  inputs.compile(action, api)
  reg.actions.showDocumentation = { [1] = action }
  reg.versions.showDocumentation = { 1 }
end

return D
