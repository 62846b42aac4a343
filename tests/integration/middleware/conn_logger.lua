-- Connection middleware: logs every connection's create and destroy.
return {
  name = "connLogger",
  priority = 100,
  create = function(connection)
    api.log("connLogger create id=" .. tostring(connection.id) .. " ctype=" .. tostring(connection.type), "info")
  end,
  destroy = function(connection)
    api.log("connLogger destroy id=" .. tostring(connection.id) .. " ctype=" .. tostring(connection.type), "info")
  end,
}
