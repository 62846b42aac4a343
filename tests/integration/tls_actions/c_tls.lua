-- A consumer of its own at /ws/tls/<n>/ (wss:// on a path other than the default).
return {
  consumer = [[^/ws/tls/(?P<n>\d+)/$]],
  name = "tlsconsumer",
  actions = {
    whoami = function(api, data)
      return { n = data.params.n, secure = data.connection.secure, type = data.connection.type }, 200
    end,
  },
}
