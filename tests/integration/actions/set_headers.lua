-- Sets response headers the HTTP layer frames itself (test_http_layer.py checks they are
-- dropped) next to one that is kept.
return {
  name = "set_headers",
  description = "I set framing headers an action may not set",
  run = function(api, data)
    data.headers["X-Kept"] = "yes"
    data.headers["Transfer-Encoding"] = "chunked"
    data.headers["Content-Length"] = "1"
    data.headers["Connection"] = "upgrade"
    data.headers["Date"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    data.response.ok = true
  end,
}
