-- services/cluster.lua without the gateway: the envelope on the wire (topic first, so a
-- worker skips topics it has no handler for without decoding the rest) and in-process
-- delivery, which is what api.cluster does with no server (busted, the spec helper).

package.path = "lua/?.lua;" .. package.path
package.cpath = "build/lua/?.so;" .. package.cpath

local json = require("gateway.json")
local cluster = require("gateway.services.cluster")

describe("cluster envelopes", function()
  it("encode the topic first, then from and payload", function()
    local text = cluster.encode(json, "rooms.say", "12:abc", { room = "lobby", n = 1 })
    assert.truthy(text:match('^{"topic":"rooms%.say","from":"12:abc","payload":{'))
    local env = json.decode(text)
    assert.same({ topic = "rooms.say", from = "12:abc", payload = { room = "lobby", n = 1 } }, env)
  end)

  it("decode to topic, payload and sender", function()
    local text = cluster.encode(json, "t", "w1", { a = { 1, 2 } })
    local topic, payload, from = cluster.decode(json, text)
    assert.equal("t", topic)
    assert.same({ a = { 1, 2 } }, payload)
    assert.equal("w1", from)
  end)

  it("skip a topic nobody handles without decoding the payload", function()
    -- The payload is not even JSON: only the topic is read.
    local topic, why = cluster.decode(json, '{"topic":"other","from":"w","payload":{oops', { mine = true })
    assert.is_nil(topic)
    assert.equal("unwanted", why)
  end)

  it("decode a topic with escapes the fast path cannot read", function()
    local text = cluster.encode(json, 'a"b/c', "w", true)
    local topic, payload = cluster.decode(json, text, { ['a"b/c'] = true })
    assert.equal('a"b/c', topic)
    assert.is_true(payload)
    assert.is_nil((cluster.decode(json, text, { other = true })))
  end)

  it("refuse what is not an envelope", function()
    for _, text in ipairs({ "", "[]", "null", '{"topic":1,"from":"w"}', '{"topic":"t"}', "{bad" }) do
      local topic, why = cluster.decode(json, text)
      assert.is_nil(topic, text)
      assert.equal("not a cluster message", why, text)
    end
  end)
end)

describe("the cluster in one process", function()
  it("delivers a copy to the topic's handler with this worker as sender", function()
    local c = cluster.new(json)
    assert.is_false(c.distributed())
    local got, sender
    local sent = { x = { 1 } }
    c.on("t", function(payload, from) got, sender = payload, from end)
    assert.is_true(c.publish("t", sent))
    assert.same({ x = { 1 } }, got)
    assert.are_not.equal(sent, got)
    assert.equal(c.id, sender)
    assert.is_true(c.publish("nobody", { y = 1 }))
  end)

  it("gives each worker its own id", function()
    assert.are_not.equal(cluster.new(json).id, cluster.new(json).id)
  end)

  it("raises for a topic that is not a string", function()
    local c = cluster.new(json)
    assert.has_error(function() c.publish(nil, {}) end)
  end)
end)
