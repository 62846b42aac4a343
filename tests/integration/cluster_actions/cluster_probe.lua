-- What test_cluster.py watches the cluster through: every event it hears is recorded in
-- Redis under this gateway's redis.prefix, so the test reads what each worker saw.
local prefix = api.config.redis.prefix

local function record(key, value)
  api.redis.call("RPUSH", prefix .. "test:" .. key, value)
end

api.cluster.onWorkerGone(function(id) record("gone", id .. " by " .. api.cluster.id) end)
api.cluster.onResubscribed(function() record("resubscribed", api.cluster.id) end)
api.cluster.on("test.echo", function(payload, from)
  record("echo:" .. tostring(payload.tag), api.cluster.id .. " from " .. from)
end)

return {
  {
    name = "cluster_id",
    description = "I name the cluster worker that answers",
    run = function(api, data, next)
      data.response.id = api.cluster.id
      data.response.distributed = api.cluster.distributed()
      next()
    end,
  },
  {
    name = "cluster_command",
    description = "I send a Redis command without waiting for its reply",
    inputs = { key = { required = true } },
    run = function(api, data, next)
      local ok, why = api.cluster.command("SET", prefix .. "test:" .. data.params.key, "set")
      data.response.sent = ok
      data.response.why = why
      local refused, err = pcall(api.cluster.command, "FLUSHALL")
      data.response.refused = not refused and tostring(err):find("FLUSHALL is not allowed", 1, true) ~= nil
      next()
    end,
  },
  {
    name = "cluster_publish",
    description = "I publish test.echo with a tag to the cluster",
    inputs = { tag = { required = true } },
    run = function(api, data, next)
      data.response.published = api.cluster.publish("test.echo", { tag = data.params.tag })
      next()
    end,
  },
}
