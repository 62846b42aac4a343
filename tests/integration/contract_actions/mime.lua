-- Answers as a file of the request's extension (matchExtensionMimeType): a string body.
return {
  mimeText = {
    name = "mimeText",
    description = "I answer a CSV string",
    matchExtensionMimeType = true,
    run = function(api, data)
      data.response = "a,b\n1,2\n"
    end,
  },
  -- An ordinary action: its object response gets the middleware's fields.
  plainObject = {
    name = "plainObject",
    description = "I answer an object",
    run = function(api, data)
      data.response.answer = 42
    end,
  },
  -- A write in an ordinary action (a counter in Redis): after a raising postProcessor the
  -- client must still learn it happened.
  bumpCounter = {
    name = "bumpCounter",
    description = "I INCR a key",
    inputs = { key = { required = true } },
    run = function(api, data)
      data.response.value = api.redis.call("INCR", data.params.key)
    end,
  },
}
