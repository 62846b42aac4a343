-- Sessions (SPEC §9): a user kept in Redis under a random token, so it survives across
-- requests and connections. `api.session` is M.new(api):
--   create(connection, user, ttlMs) -> token    stores the user, sets connection.user/.session
--   load(token)                     -> user | nil  (unknown, expired or malformed token)
--   destroy(connection)             -> true | false (whether a stored session was deleted)
--   check(connection)               -> nil | err    (clears a session Redis no longer has)
-- The user is stored as JSON at `redis.prefix .. "session:" .. token` with PX ttlMs (default
-- 24 h); the expiry is fixed at creation (no sliding renewal). Every call does Redis work, so
-- it yields the calling coroutine and raises { status = 503, message = "redis unavailable" }
-- (or "redis timeout") when Redis cannot answer, as api.redis.call does.
-- The web transport restores a session from `Authorization: Bearer <token>` and persistent
-- connections from an `authenticate` message (see gateway.transport.web and
-- gateway.transport.messages).

local core = require("gateway.core")

local M = {}

M.DEFAULT_TTL_MS = 24 * 60 * 60 * 1000
M.INVALID = "invalid or expired token"

-- Tokens are what create makes (hex); anything else is refused before it reaches Redis,
-- so a client cannot address other keys or send something huge.
function M.validToken(token)
  return type(token) == "string" and #token >= 16 and #token <= 128 and not token:find("[^%w%-_]")
end

-- The token of an `Authorization: Bearer <token>` header value, or nil.
function M.bearer(header)
  if type(header) ~= "string" then return nil end
  return header:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
end

function M.new(api)
  local S = {}

  local function key(token)
    local redis = api.config.redis
    local prefix = redis and redis.prefix or "gateway:"
    return prefix .. "session:" .. token
  end

  function S.create(connection, user, ttlMs)
    if type(connection) ~= "table" then error("api.session.create: connection must be a table", 2) end
    if user == nil then error("api.session.create: user must not be nil", 2) end
    ttlMs = ttlMs == nil and M.DEFAULT_TTL_MS or math.tointeger(tonumber(ttlMs))
    if not ttlMs or ttlMs <= 0 then error("api.session.create: ttlMs must be a positive integer", 2) end
    local ok, text = pcall(api.json.encode, user)
    if not ok then error("api.session.create: user is not JSON-encodable: " .. tostring(text), 2) end
    local token = core.random_id() .. core.random_id() -- 256 random bits
    api.redis.call("SET", key(token), text, "PX", ttlMs)
    connection.user, connection.session = user, token
    return token
  end

  function S.load(token)
    if not M.validToken(token) then return nil end
    local text = api.redis.call("GET", key(token))
    if type(text) ~= "string" then return nil end
    local ok, user = pcall(api.json.decode, text)
    if not ok or user == nil or user == api.json.null then return nil end
    return user
  end

  function S.destroy(connection)
    if type(connection) ~= "table" then error("api.session.destroy: connection must be a table", 2) end
    local token = connection.session
    local deleted = false
    if M.validToken(token) then deleted = api.redis.call("DEL", key(token)) == 1 end
    connection.user, connection.session = nil, nil
    return deleted
  end

  -- The user of `token`, or nil for an unknown token, or nil, err (the raised Redis
  -- failure table) when Redis failed. Used by the transports, which must answer a Redis
  -- failure themselves and then set connection.user and connection.session.
  function S.restore(token)
    local ok, user = pcall(S.load, token)
    if not ok then
      local err = user
      if type(err) ~= "table" or not err.status then
        -- A Redis error reply or a bug: logged, answered as an internal error.
        core.log("error", "session lookup failed", { "error", tostring(type(err) == "table" and err.err or err) })
        err = { status = 500, message = "The server experienced an internal error" }
      end
      return nil, err
    end
    return user
  end

  -- The session an `Authorization: Bearer <token>` header value names, for the
  -- transports that restore one before the connection exists (web requests, WebSocket
  -- upgrades, the spec helper): user, token when it is a live session; nothing for no
  -- header, another scheme, or an unknown or expired token (the client stays
  -- unauthenticated); nil, nil, err when Redis failed (err as in restore: answer it).
  function S.fromHeader(header)
    local token = M.bearer(header)
    if not token then return nil end
    local user, err = S.restore(token)
    if err then return nil, nil, err end
    if user == nil then return nil end
    return user, token
  end

  -- Is the session of a persistent connection still there? Each message on a WebSocket
  -- or TCP connection that holds one asks before its action runs, so a logout elsewhere
  -- (any connection, worker or node) or an expiry ends it here too: connection.user and
  -- connection.session are cleared when Redis no longer has the token. One EXISTS per
  -- message, as the web's Bearer lookup is one GET per request. Returns nil, or the
  -- error to answer when Redis cannot tell (err as in restore).
  function S.check(connection)
    local token = connection.session
    if not M.validToken(token) then
      connection.user, connection.session = nil, nil
      return nil
    end
    local ok, n = pcall(api.redis.call, "EXISTS", key(token))
    if not ok then
      local err = n
      if type(err) ~= "table" or not err.status then
        core.log("error", "session check failed", { "error", tostring(type(err) == "table" and err.err or err) })
        err = { status = 500, message = "The server experienced an internal error" }
      end
      return err
    end
    if n == 0 then connection.user, connection.session = nil, nil end
    return nil
  end

  return S
end

return M
