-- An example task (docs/tasks.md). gateway.lua.example loads this folder (paths.tasks)
-- but runs no jobs (tasks.enabled = false); with tasks = { enabled = true }, an action
-- enqueues it with api.tasks.enqueue("sayHello", { name = "Ada" }).
return {
  name = "sayHello",
  description = "Logs a greeting, once per job even if the job runs twice",
  queue = "default",
  frequency = 0,    -- ms between recurring runs across the cluster; 0: only when enqueued
  retries = 2,      -- runs after a failed first one, before the failed list
  backoff = { 1000, 5000 }, -- ms before each retry (the last repeats)
  inputs = {
    name = { required = true },
  },

  run = function(api, params, job)
    -- Jobs run at least once: after a worker dies mid-job the job runs again elsewhere.
    -- A key per job id (SET NX) makes a second run of the same job do nothing.
    local first = api.redis.call("SET", "example:hello:" .. job.id, "1", "NX", "PX", 86400000)
    if not first then return end
    api.log("hello, " .. params.name, "info", { job = job.id })
  end,
}
