-- Spins without yielding: must be stopped after general.cpuTimeout.
return {
  name = "cpu_loop",
  description = "I loop forever",
  run = function(api, data, next)
    while true do end
  end,
}
