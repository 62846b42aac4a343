"""api.cache (SPEC §9, issue 5): ActionHero's cache on api.redis. save/load of any
JSON-encodable value, TTLs and expireTimeMS, destroy, locks held per connection (across two
WebSockets, with load's retry), FIFO lists, the key layout under redis.prefix, and 503 when
Redis is down. The fixture actions live in cache_actions/.

TTLs are checked without racing the clock: the ttl given is read back from Redis (PTTL) and
from the metadata on a long ttl, and expiry is awaited as state (the key gone from Redis) on a
short one, with the check that it did not go before its time."""

import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.parse
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_ACTIONS = os.path.join(HERE, "cache_actions")
ACTIONS = [gw.EXAMPLE_ACTIONS, CACHE_ACTIONS]

# Every test here runs again on the sanitizer build (make test-asan).
pytestmark = pytest.mark.asan

LONG_TTL = 60000  # ms: never reached during a test
SHORT_TTL = 300  # ms: awaited


@pytest.fixture(scope="module")
def cgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module on the session's redis-server."""
    workdir = tmp_path_factory.mktemp("cgw")
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url),
                           {"paths": {"actions": ACTIONS},
                            "general": {"simultaneousActions": 100, "actionTimeout": 5000},
                            # cacheKeys' flushScripts empties the script cache.
                            "redis": {"allowCommands": ["SCRIPT FLUSH"]}})
    with gw.serving(workdir, config) as g:  # exit status 0 and no sanitizer report at the end
        deadline = time.monotonic() + gw.bound(5)
        while True:
            out, status = run(g, "listLength", "warmup")
            if status == 200:
                break
            assert status == 503, out  # until the Redis client has connected
            assert time.monotonic() < deadline, g.describe()
            time.sleep(0.02)
        yield g


def key(name="k"):
    return "ctest:%s:%s" % (uuid.uuid4().hex[:10], name)


def run(g, op, *args, try_=False):
    body = {"op": op, "args": list(args)}
    if try_:
        body["try"] = True
    status, out = g.json("POST", "/api/cacheRun", body)
    return out, status


def results(g, op, *args):
    """The values api.cache.<op>(...) returned (nil as None)."""
    out, status = run(g, op, *args)
    assert status == 200, out
    return [r.get("value") for r in out["results"]]


def raw_keys(g, pattern):
    status, out = g.json("POST", "/api/cacheKeys", {"pattern": pattern})
    assert status == 200, out
    return out


def raw_redis(url, *args):
    """One command on the session's redis-server, from outside the gateway."""
    u = urllib.parse.urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(gw.resp_encode(*args))
        return gw.resp_read(s.makefile("rb"), text=True)


def wait_gone(g, k, ttl_ms, t0):
    """Wait (bounded) until Redis no longer holds cache key 'k', saved (or given its ttl)
    by a request sent at monotonic time 't0' with a ttl of 'ttl_ms'. It must not go early:
    Redis set the expiry after t0, so a look that finds it gone ended after t0 + ttl."""
    deadline = t0 + ttl_ms / 1000 + gw.bound(5)
    while True:
        keys = raw_keys(g, "*" + k)["keys"]
        now = time.monotonic()
        if not keys:
            assert now - t0 >= ttl_ms / 1000, "gone %.3f s after the save, before its ttl" % (
                now - t0)
            return
        assert now < deadline, "still in Redis %.1f s after a %d ms ttl: %r" % (
            now - t0, ttl_ms, keys)
        time.sleep(0.02)


def ws_msg(op, *args, rid=None):
    return {"action": "cacheRun", "params": {"op": op, "args": list(args)}, "request_id": rid}


async def ws_call(ws, op, *args, timeout=gw.bound(5)):
    await ws.send(json.dumps(ws_msg(op, *args)))
    env = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert env["status"] == 200, env
    return [r.get("value") for r in env["data"]["results"]]


# -- save and load ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "hello", "", "ünïcode ✓", 42, -7, 1.5, 2 ** 40, True, False,
    [1, "two", 3.25, [4]], {"a": 1, "nested": {"list": [1, 2, {"x": "y"}], "t": True}},
])
def test_save_load_round_trip(cgw, value):
    k = key()
    assert results(cgw, "save", k, value) == [True]
    out, status = run(cgw, "load", k)
    assert status == 200, out
    got, meta = out["results"]
    assert got["value"] == value, out
    if isinstance(value, bool):
        assert got["type"] == "boolean"
    elif isinstance(value, int):
        assert got["type"] == "integer", out
    assert meta["value"]["key"] == k
    assert meta["value"]["createdAt"] <= time.time() * 1000 + 1000
    assert "expireTimestamp" not in meta["value"]  # no TTL
    results(cgw, "destroy", k)


def test_save_replaces_and_read_at(cgw):
    k = key()
    assert results(cgw, "save", k, "one") == [True]
    # Timestamps are wall-clock ms (api.now(), floored), taken while the request ran.
    t0 = time.time() * 1000
    assert results(cgw, "save", k, {"two": 2}) == [True]
    t1 = time.time() * 1000
    value, meta = results(cgw, "load", k)
    t2 = time.time() * 1000
    assert value == {"two": 2}
    assert t0 - 1 <= meta["createdAt"] <= t1, (t0, meta, t1)  # the replacing save's time
    assert "readAt" not in meta  # first read: no earlier read
    value, meta2 = results(cgw, "load", k)
    assert meta2["createdAt"] == meta["createdAt"], meta2
    assert t1 - 1 <= meta2["readAt"] <= t2, (t1, meta2, t2)  # the first load's time
    results(cgw, "destroy", k)


def test_missing_is_not_found(cgw):
    assert results(cgw, "load", key("missing")) == [None, "Object not found"]


def assert_pttl_near(g, k, ttl_ms):
    """Redis holds cache key 'k' with the expiry 'ttl_ms' given just now (less the time
    since, with margin for a slow machine)."""
    keys = raw_keys(g, "*" + k)["keys"]
    assert len(keys) == 1, keys
    assert ttl_ms - gw.bound(10) * 1000 < keys[0]["pttl"] <= ttl_ms, (ttl_ms, keys)


def test_ttl_expires(cgw):
    # A long ttl: the metadata and Redis's own expiry.
    k = key()
    assert results(cgw, "save", k, "long", LONG_TTL) == [True]
    value, meta = results(cgw, "load", k)
    assert value == "long"
    assert meta["expireTimestamp"] - meta["createdAt"] == LONG_TTL, meta
    assert_pttl_near(cgw, k, LONG_TTL)
    assert results(cgw, "destroy", k) == [True]
    # A short one: Redis removes the value when it is over, not before; then it is not found.
    k = key()
    t0 = time.monotonic()
    assert results(cgw, "save", k, "short", SHORT_TTL) == [True]
    wait_gone(cgw, k, SHORT_TTL, t0)
    assert results(cgw, "load", k) == [None, "Object not found"]


def test_expired_but_still_stored_is_object_expired(cgw, redis_url):
    """A value whose expireTimestamp has passed while Redis still holds it (its own expiry
    runs on Redis's clock, a moment behind the gateway's) loads as `Object expired`."""
    k = key()
    stored = raw_keys(cgw, "none")["prefix"] + k
    past = int(time.time() * 1000) - 1000
    assert raw_redis(redis_url, "HSET", stored, "value", '"old"', "expireTimestamp", past,
                     "createdAt", past - 1000, "readAt", "") == 4
    try:
        assert results(cgw, "load", k) == [None, "Object expired"]
        # A timestamp still ahead loads.
        raw_redis(redis_url, "HSET", stored, "expireTimestamp", past + LONG_TTL)
        assert results(cgw, "load", k)[0] == "old"
    finally:
        raw_redis(redis_url, "DEL", stored)


def test_load_expire_time_ms_resets_the_ttl(cgw):
    first_ttl = 1500  # ms: the load below must come within it (a second request, at once)
    k = key()
    t0 = time.monotonic()
    assert results(cgw, "save", k, "v", first_ttl) == [True]
    value, meta = results(cgw, "load", k, {"expireTimeMS": LONG_TTL})
    assert value == "v"
    # The new expiry counts from the load, which came after the save and before first_ttl.
    assert LONG_TTL <= meta["expireTimestamp"] - meta["createdAt"] < LONG_TTL + first_ttl, meta
    assert_pttl_near(cgw, k, LONG_TTL)
    time.sleep(max(0.0, t0 + first_ttl / 1000 + 0.2 - time.monotonic()))  # past the first ttl
    assert results(cgw, "load", k)[0] == "v"
    # expireTimeMS also gives a ttl to a value saved without one.
    k2 = key()
    assert results(cgw, "save", k2, "forever") == [True]
    assert raw_keys(cgw, "*" + k2)["keys"][0]["pttl"] == -1
    t1 = time.monotonic()
    assert results(cgw, "load", k2, {"expireTimeMS": SHORT_TTL})[0] == "forever"
    wait_gone(cgw, k2, SHORT_TTL, t1)
    assert results(cgw, "load", k2) == [None, "Object not found"]
    results(cgw, "destroy", k)


def test_destroy(cgw):
    k = key()
    results(cgw, "save", k, 1)
    assert results(cgw, "destroy", k) == [True]
    assert results(cgw, "destroy", k) == [False]
    assert results(cgw, "load", k) == [None, "Object not found"]


def test_bad_arguments_raise(cgw):
    out, status = run(cgw, "save", None, 1, try_=True)
    assert status == 200 and "key must be a string" in out["raised"], out
    out, status = run(cgw, "save", key(), 1, "soon", try_=True)
    assert status == 200 and "ttlMs must be a number" in out["raised"], out
    out, status = run(cgw, "load", key(), "x", try_=True)
    assert status == 200 and "options must be a table" in out["raised"], out


# -- keys ------------------------------------------------------------------------------------

def test_keys_live_under_the_prefix(cgw):
    tag = uuid.uuid4().hex[:10]
    results(cgw, "save", tag + ":value", "x", 10000)
    results(cgw, "push", tag + ":list", "x")
    # An HTTP request is its own connection: lock, then unlock from another request fails.
    assert results(cgw, "lock", tag + ":value", 5000) == [True]
    out = raw_keys(cgw, "*" + tag + "*")
    prefix = out["configPrefix"] + "cache:"
    assert out["prefix"] == prefix
    assert {k["key"]: k["type"] for k in out["keys"]} == {
        prefix + tag + ":value": "hash",
        prefix + tag + ":list": "list",
        prefix + "lock:" + tag + ":value": "string",
    }
    lock = [k for k in out["keys"] if ":lock:" in k["key"]][0]
    assert 0 < lock["pttl"] <= 5000
    assert results(cgw, "unlock", tag + ":value") == [False]  # not the holder
    assert results(cgw, "load", tag + ":value") == [None, "Object locked"]
    assert results(cgw, "save", tag + ":value", "y") == [False, "Object locked"]
    assert results(cgw, "destroy", tag + ":value") == [False, "Object locked"]
    results(cgw, "pop", tag + ":list")  # the value and the lock expire on their own


def test_scripts_reloaded_after_redis_forgets_them(cgw):
    k = key()
    assert results(cgw, "save", k, "before") == [True]
    status, out = cgw.json("POST", "/api/cacheKeys", {"pattern": "none", "flushScripts": True})
    assert status == 200, out
    assert results(cgw, "load", k)[0] == "before"  # NOSCRIPT: sent again with EVAL
    assert results(cgw, "save", k, "after") == [True]
    assert results(cgw, "load", k)[0] == "after"
    assert results(cgw, "destroy", k) == [True]


# -- locks across connections ----------------------------------------------------------------

def test_locks_belong_to_a_connection(cgw):
    k = key()

    async def go():
        async with cgw.ws_connect() as a, cgw.ws_connect() as b:
            assert await ws_call(a, "save", k, "data") == [True]
            assert await ws_call(a, "lock", k, 5000) == [True]
            assert await ws_call(a, "lock", k, 5000) == [True]  # ours: renewed
            assert await ws_call(a, "checkLock", k) == [True]
            assert (await ws_call(a, "load", k))[0] == "data"  # the holder reads and writes
            # B sees it locked, everywhere.
            assert await ws_call(b, "checkLock", k) == [False]
            assert await ws_call(b, "lock", k) == [False]
            assert await ws_call(b, "load", k) == [None, "Object locked"]
            assert await ws_call(b, "save", k, "b") == [False, "Object locked"]
            assert await ws_call(b, "destroy", k) == [False, "Object locked"]
            assert await ws_call(b, "unlock", k) == [False]
            t0 = time.monotonic()
            assert await ws_call(b, "checkLock", k, 150) == [False]
            assert time.monotonic() - t0 >= 0.14
            # A still holds it and can write; then lets go.
            assert await ws_call(a, "save", k, "a2") == [True]
            assert await ws_call(a, "unlock", k) == [True]
            assert await ws_call(a, "unlock", k) == [True]  # free already
            assert (await ws_call(b, "load", k))[0] == "a2"
            assert await ws_call(b, "lock", k, 5000) == [True]
            assert await ws_call(a, "load", k) == [None, "Object locked"]
            assert await ws_call(b, "unlock", k) == [True]
    asyncio.run(asyncio.wait_for(go(), gw.bound(15)))
    results(cgw, "destroy", k)


def test_load_retry_waits_for_the_unlock(cgw):
    """Lock holds and retries are long (30 s, 20 s), so a wait that ran to its end instead
    of noticing the change (every 50 ms) cannot pass for one that did."""
    k = key()

    async def go():
        async with cgw.ws_connect() as a, cgw.ws_connect() as b:
            assert await ws_call(a, "save", k, {"n": 1}) == [True]
            assert await ws_call(a, "lock", k, 30000) == [True]
            # Without enough retry: locked after `retry` ms.
            t0 = time.monotonic()
            assert await ws_call(b, "load", k, {"retry": 200}) == [None, "Object locked"]
            assert 0.198 <= time.monotonic() - t0 < 0.2 + gw.bound(1.5)
            # With retry: B waits while A holds the lock (no answer yet after half a
            # second), and gets the value once A lets go.
            await b.send(json.dumps(ws_msg("load", k, {"retry": 20000})))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.recv(), 0.5)  # (cancelling recv loses nothing)
            t0 = time.monotonic()
            assert await ws_call(a, "unlock", k) == [True]
            env = json.loads(await asyncio.wait_for(b.recv(), gw.bound(5)))
            assert env["status"] == 200, env
            assert env["data"]["results"][0]["value"] == {"n": 1}, env
            assert time.monotonic() - t0 < gw.bound(1.5)
            # checkLock with retry: true once the lock's own ttl (1 s) ends, not before.
            t0 = time.monotonic()
            assert await ws_call(a, "lock", k, 1000) == [True]
            t1 = time.monotonic()
            assert await ws_call(b, "checkLock", k, 20000) == [True]
            t2 = time.monotonic()
            assert t2 - t0 >= 1.0, t2 - t0
            assert t2 - t1 < 1.0 + gw.bound(1.5), t2 - t1
    asyncio.run(asyncio.wait_for(go(), gw.bound(15)))
    results(cgw, "destroy", k)


def test_lock_name_is_per_connection_and_process(cgw):
    async def go():
        async with cgw.ws_connect() as a, cgw.ws_connect() as b:
            await a.send(json.dumps(ws_msg("listLength", "x")))
            na = json.loads(await asyncio.wait_for(a.recv(), 5))["data"]["lockName"]
            await a.send(json.dumps(ws_msg("listLength", "x")))
            na2 = json.loads(await asyncio.wait_for(a.recv(), 5))["data"]["lockName"]
            await b.send(json.dumps(ws_msg("listLength", "x")))
            nb = json.loads(await asyncio.wait_for(b.recv(), 5))["data"]["lockName"]
            return na, na2, nb
    na, na2, nb = asyncio.run(asyncio.wait_for(go(), gw.bound(10)))
    assert na == na2 and na != nb
    assert na.split(":")[0] == nb.split(":")[0]  # the same process


# -- lists -----------------------------------------------------------------------------------

def test_push_pop_fifo(cgw):
    k = key("list")
    assert results(cgw, "listLength", k) == [0]
    assert results(cgw, "pop", k) == [None]
    for v in ["first", 2, {"third": [3]}, False]:
        assert results(cgw, "push", k, v) == [True]
    assert results(cgw, "listLength", k) == [4]
    assert results(cgw, "pop", k) == ["first"]
    assert results(cgw, "pop", k) == [2]
    assert results(cgw, "listLength", k) == [2]
    assert results(cgw, "pop", k) == [{"third": [3]}]
    assert results(cgw, "pop", k) == [False]
    assert results(cgw, "pop", k) == [None]
    assert results(cgw, "listLength", k) == [0]


# -- Redis down ------------------------------------------------------------------------------

def test_redis_down_is_503(make_gateway):
    # A unix socket path in a folder of our own where nothing listens (a free TCP port
    # could be taken by another process meanwhile).
    nowhere = tempfile.mkdtemp(prefix="gwc-", dir="/tmp")
    try:
        g = make_gateway({"paths": {"actions": ACTIONS},
                          "redis": {"url": "unix://%s/redis.sock?db=0" % nowhere}})
        for op, args in [("save", ["k", 1]), ("load", ["k"]), ("destroy", ["k"]),
                         ("lock", ["k"]), ("unlock", ["k"]), ("checkLock", ["k"]),
                         ("push", ["l", 1]), ("pop", ["l"]), ("listLength", ["l"])]:
            out, status = run(g, op, *args)
            assert status == 503, (op, out)
            assert gw.error_text(out) == "redis unavailable", (op, out)
            # What the action sees: a raised table with the status and the message.
            out, status = run(g, op, *args, try_=True)
            assert status == 200, (op, out)
            assert out["raised"] == {"status": 503, "message": "redis unavailable"}, (op, out)
        # Actions without Redis still work.
        g.assert_serving()
    finally:
        shutil.rmtree(nowhere, ignore_errors=True)
