-- Not available over the TCP socket server.
return {
  name = "blocked_socket",
  description = "I refuse socket connections",
  blockedConnectionTypes = { "socket" },
  run = function(api, data, next)
    data.response.ran = true
    next()
  end,
}
