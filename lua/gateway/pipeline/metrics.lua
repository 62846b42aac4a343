-- What /metrics counts per action (docs/operations.md): requests and messages by
-- action, transport and status, and their latency histogram by action and transport.
-- The per-request cost is a few table lookups and increments: one record per
-- (transport, action), made on first use, holding a count per status and the histogram's
-- buckets (not cumulative here; made cumulative when the text is written). The core's own
-- figures (connections, Redis, restarts) come from C with the scrape
-- (transport/metrics.lua renders both).

local M = {}

-- Upper bounds in seconds, Prometheus' default buckets with two below 5 ms for a gateway
-- that answers in well under a millisecond. The last, +Inf, ends the bucket search.
M.BOUNDS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local SEARCH = {}
for i, b in ipairs(M.BOUNDS) do SEARCH[i] = b end
SEARCH[#SEARCH + 1] = math.huge

-- The label set is bounded: actions come from the loaded files (a name a client made up
-- is counted under action ""), statuses are whole numbers 100-999 (others are counted
-- as "other"); past MAX_RECORDS (transport, action) pairs or MAX_SERIES request series,
-- new ones are counted under action "" or status "other".
M.MAX_RECORDS = 1000
M.MAX_SERIES = 10000

-- A record is one (transport, action): `sum` (seconds) and one count per status and
-- bucket, at key status * 16 + bucket (bucket 1-15, the last +Inf; 0 for an answer that
-- never reached an action and has no duration; status 0 is "other"). One integer key
-- per request keeps the per-request work to a bucket search and two increments.
local records = { web = {}, websocket = {}, socket = {} } -- [transport][action] = record
local nrecords, nseries = 0, 0
M.records = records

local function newRecord(transport, action)
  local byAction = records[transport]
  if not byAction then
    byAction = {}
    records[transport] = byAction
  end
  if nrecords >= M.MAX_RECORDS and action ~= "" then
    local r = byAction[""]
    if r then return r end
    action = ""
  end
  local r = { transport = transport, action = action, sum = 0 }
  byAction[action] = r
  nrecords = nrecords + 1
  return r
end

-- The first count of a (record, status, bucket): bounded as said above.
local function newKey(r, status, bucket)
  if not (math.type(status) == "integer" and status >= 100 and status <= 999) or nseries >= M.MAX_SERIES then
    status = 0
  end
  local k = status * 16 + bucket
  if r[k] == nil then
    nseries = nseries + 1
    r[k] = 0
  end
  return k
end

-- One request or message answered: its action's name ("" when it named none that is
-- loaded), its status, and its duration in ms (nil when it never reached an action).
function M.observe(transport, action, status, ms)
  local byAction = records[transport]
  local r = byAction and byAction[action] or newRecord(transport, action)
  local i = 0
  if ms then
    local s = ms * 0.001
    i = 1
    while s > SEARCH[i] do i = i + 1 end
    r.sum = r.sum + s
  end
  local k = status * 16 + i
  local n = r[k]
  if n then
    r[k] = n + 1
  else
    k = newKey(r, status, i)
    r[k] = r[k] + 1
  end
end

-- A record's counts as the text wants them: statuses { [status or "other"] = n }, the
-- histogram's buckets (not cumulative, 1-15) and its count.
function M.counts(r)
  local statuses, buckets, count = {}, {}, 0
  for i = 1, #SEARCH do buckets[i] = 0 end
  for k, n in pairs(r) do
    if math.type(k) == "integer" then
      local status, bucket = k // 16, k % 16
      local label = status == 0 and "other" or status
      statuses[label] = (statuses[label] or 0) + n
      if bucket > 0 then
        buckets[bucket] = buckets[bucket] + n
        count = count + n
      end
    end
  end
  return statuses, buckets, count
end

-- Forget everything (the busted specs).
function M.reset()
  for k in pairs(records) do records[k] = {} end
  nrecords, nseries = 0, 0
end

return M
