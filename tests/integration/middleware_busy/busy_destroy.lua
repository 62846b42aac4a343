-- Connection middleware whose destroy runs a few tens of thousands of Lua instructions
-- (well under a millisecond): enough for the cpuTimeout hook to look at the clock while
-- it runs, so a stale CPU slice would show.
return {
  name = "busyDestroy",
  destroy = function(connection)
    local n = 0
    for i = 1, 50000 do n = n + i end
    connection.busySum = n
  end,
}
