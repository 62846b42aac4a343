"""api.cache (SPEC §9, issue 5): ActionHero's cache on api.redis. save/load of any
JSON-encodable value, TTLs and expireTimeMS, destroy, locks held per connection (across two
WebSockets, with load's retry), FIFO lists, the key layout under redis.prefix, and 503 when
Redis is down. The fixture actions live in cache_actions/."""

import asyncio
import json
import os
import shutil
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_ACTIONS = os.path.join(HERE, "cache_actions")
ACTIONS = [gw.EXAMPLE_ACTIONS, CACHE_ACTIONS]

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"),
                                reason="redis-server is not installed")


@pytest.fixture(scope="module")
def cgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module on the session's redis-server."""
    workdir = tmp_path_factory.mktemp("cgw")
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url),
                           {"paths": {"actions": ACTIONS},
                            "general": {"simultaneousActions": 100, "actionTimeout": 5000}})
    g = gw.Gateway(workdir, config).start()
    try:
        deadline = time.monotonic() + 5
        while run(g, "listLength", "warmup")[1] != 200:
            assert time.monotonic() < deadline, g.describe()
            time.sleep(0.02)
        yield g
    finally:
        g.stop()
        assert not g.sanitizer_reports(), g.describe()


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


def ws_msg(op, *args, rid=None):
    return {"action": "cacheRun", "params": {"op": op, "args": list(args)}, "request_id": rid}


async def ws_call(ws, op, *args, timeout=5):
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
    t0 = time.time() * 1000
    assert results(cgw, "save", k, "one") == [True]
    assert results(cgw, "save", k, {"two": 2}) == [True]
    value, meta = results(cgw, "load", k)
    assert value == {"two": 2}
    assert abs(meta["createdAt"] - t0) < 2000, meta
    assert "readAt" not in meta  # first read: no earlier read
    value, meta2 = results(cgw, "load", k)
    assert meta2["readAt"] >= meta["createdAt"], meta2
    results(cgw, "destroy", k)


def test_missing_is_not_found(cgw):
    assert results(cgw, "load", key("missing")) == [None, "Object not found"]


def test_ttl_expires(cgw):
    k = key()
    assert results(cgw, "save", k, "short", 150) == [True]
    value, meta = results(cgw, "load", k)
    assert value == "short"
    assert meta["expireTimestamp"] - meta["createdAt"] == 150, meta
    pttl = raw_keys(cgw, "*" + k)["keys"][0]["pttl"]
    assert 0 < pttl <= 150
    time.sleep(0.25)
    value, err = results(cgw, "load", k)
    assert value is None and err in ("Object not found", "Object expired")
    assert not raw_keys(cgw, "*" + k)["keys"]  # Redis removed it (an empty table: {})


def test_load_expire_time_ms_resets_the_ttl(cgw):
    k = key()
    assert results(cgw, "save", k, "v", 300) == [True]
    time.sleep(0.15)
    value, meta = results(cgw, "load", k, {"expireTimeMS": 2000})
    assert value == "v"
    assert meta["expireTimestamp"] - time.time() * 1000 > 1500, meta
    pttl = raw_keys(cgw, "*" + k)["keys"][0]["pttl"]
    assert 1500 < pttl <= 2000, pttl
    time.sleep(0.3)  # past the first TTL
    assert results(cgw, "load", k)[0] == "v"
    # expireTimeMS also gives a TTL to a value saved without one.
    k2 = key()
    results(cgw, "save", k2, "forever")
    assert raw_keys(cgw, "*" + k2)["keys"][0]["pttl"] == -1
    results(cgw, "load", k2, {"expireTimeMS": 100})
    time.sleep(0.2)
    assert results(cgw, "load", k2)[1] == "Object not found"
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
    asyncio.run(asyncio.wait_for(go(), 20))
    results(cgw, "destroy", k)


def test_load_retry_waits_for_the_unlock(cgw):
    k = key()

    async def go():
        async with cgw.ws_connect() as a, cgw.ws_connect() as b:
            assert await ws_call(a, "save", k, {"n": 1}) == [True]
            assert await ws_call(a, "lock", k, 5000) == [True]
            # Without enough retry: locked after about `retry` ms.
            t0 = time.monotonic()
            assert await ws_call(b, "load", k, {"retry": 200}) == [None, "Object locked"]
            assert 0.18 <= time.monotonic() - t0 < 1.5
            # With retry: B waits while A holds the lock, and gets the value once A lets go.
            await b.send(json.dumps(ws_msg("load", k, {"retry": 3000})))
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            assert await ws_call(a, "unlock", k) == [True]
            env = json.loads(await asyncio.wait_for(b.recv(), 5))
            assert env["status"] == 200, env
            assert env["data"]["results"][0]["value"] == {"n": 1}, env
            assert time.monotonic() - t0 < 0.5
            # checkLock with retry too.
            assert await ws_call(a, "lock", k, 300) == [True]
            t0 = time.monotonic()
            assert await ws_call(b, "checkLock", k, 2000) == [True]  # the lock's own ttl ends
            assert 0.15 <= time.monotonic() - t0 < 1.5
    asyncio.run(asyncio.wait_for(go(), 20))
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
    na, na2, nb = asyncio.run(asyncio.wait_for(go(), 10))
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

def test_redis_down_is_503(make_gateway, redis_url):
    g = make_gateway({"paths": {"actions": ACTIONS},
                      "redis": {"url": "redis://127.0.0.1:%d/0" % gw.free_port()}})
    for op, args in [("save", ["k", 1]), ("load", ["k"]), ("lock", ["k"]),
                     ("checkLock", ["k"]), ("push", ["l", 1]), ("listLength", ["l"])]:
        out, status = run(g, op, *args)
        assert status == 503, (op, out)
        assert gw.error_text(out) == "redis unavailable", out
    # Actions without Redis still work.
    status, body = g.get("/api/randomNumber")
    assert status == 200, body
