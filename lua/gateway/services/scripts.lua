-- Server-side Lua scripts on api.redis, for the services whose operations span several
-- keys (the cache's locks, the task queues): one round trip each, atomic in Redis.
--
--   local eval = require("gateway.services.scripts").runner(api.redis)
--   eval(script, nkeys, key1, ..., arg1, ...) -> the script's reply (Redis errors raised)
--
-- A script is sent whole once (EVAL), then by its SHA1 (EVALSHA); when Redis has lost its
-- script cache (a restart, SCRIPT FLUSH) it is sent whole again.

local M = {}

local function isNoScript(e)
  return type(e) == "table" and type(e.err) == "string" and e.err:find("^NOSCRIPT") ~= nil
end

function M.runner(redis)
  local shas = {}
  return function(script, nkeys, ...)
    local sha = shas[script]
    if sha then
      local ok, r = pcall(redis.call, "EVALSHA", sha, nkeys, ...)
      if ok then return r end
      if not isNoScript(r) then error(r, 0) end
    end
    -- First use, or Redis lost its script cache: EVAL, then keep the sha.
    local r = redis.call("EVAL", script, nkeys, ...)
    if not sha then
      local okLoad, loaded = pcall(redis.call, "SCRIPT", "LOAD", script)
      if okLoad and type(loaded) == "string" then shas[script] = loaded end
    end
    return r
  end
end

return M
