-- Answers with what a multipart body gave: fields as they are, files as name, type,
-- size and their bytes in hex (the bytes themselves may be binary and not UTF-8).
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

return {
  name = "upload_echo",
  description = "I describe the fields and files I received",
  inputs = { f1 = {}, f2 = {}, f3 = {}, upload = {}, doc = {} },
  run = function(api, data, next)
    for _, k in ipairs({ "f1", "f2", "f3", "upload", "doc" }) do
      local v = data.params[k]
      if type(v) == "table" and v.filename ~= nil then
        data.response[k] = { filename = v.filename, type = v.type, size = #v.data, hex = hex(v.data) }
      elseif v ~= nil then
        data.response[k] = v
      end
    end
    next()
  end,
}
