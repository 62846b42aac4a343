-- Calls api.tasks.<op>(table.unpack(args)) for test_tasks.py: args is a JSON array.
return {
  name = "taskOp",
  description = "Runs one api.tasks function",
  inputs = { op = { required = true }, args = { default = "[]" }, times = { default = 1, formatter = "toNumber" } },
  run = function(api, data)
    local args = api.json.decode(data.params.args)
    local fn = api.tasks[data.params.op]
    local results = {}
    for i = 1, data.params.times do
      local r, why = fn(table.unpack(args))
      results[i] = { r == nil and api.json.null or r, why }
    end
    data.response.result = results[1][1]
    data.response.reason = results[1][2]
    if data.params.times > 1 then
      local ids = {}
      for i, r in ipairs(results) do ids[i] = r[1] end
      data.response.results = ids
    end
  end,
}
