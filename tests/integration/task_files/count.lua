-- Counts each run of each job in a Redis hash: HINCRBY <key> <job id> 1 (test_tasks.py
-- reads it to see every job ran, and none twice).
return {
  name = "count",
  description = "Counts its runs per job id",
  queue = "default",
  inputs = { key = { required = true }, sleep = { default = 0, formatter = "toNumber" } },
  run = function(api, params, job)
    if params.sleep > 0 then api.sleep(params.sleep) end
    api.redis.call("HINCRBY", params.key, job.id, 1)
    api.redis.call("RPUSH", params.key .. ":at", tostring(math.floor(api.now())))
  end,
}
