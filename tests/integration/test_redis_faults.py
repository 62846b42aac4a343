"""Redis under faults (issue 14): commands refused on the shared connection unless
redis.allowCommands names them; a stopped Redis (SIGSTOP) under load, with the pending
commands bounded (redis.maxPending), the connection dropped after repeated timeouts and
remade after SIGCONT, and TCP keepalive on it; a generic write whose command timed out
answered 504 (it may have happened) while a read stays 503; an unpaged generic list cut at
redis.maxListSize.

Every test starts a private redis-server (conftest's private_redis) it may pause, stop
(SIGSTOP) or flush; each is stopped by PID at the end."""

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_ACTIONS = os.path.join(HERE, "redis_actions")
RESOURCES = os.path.join(HERE, "resource_actions")

pytestmark = pytest.mark.asan

ALLOW_HINT = 'name "%s" in redis.allowCommands'


def redis_config(url, actions=None, **redis):
    return {"paths": {"actions": actions or [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, REDIS_ACTIONS]},
            "redis": dict({"url": url}, **redis),
            "general": {"simultaneousActions": 1000, "actionTimeout": 10000}}


def run_cmd(g, *args, mode="try"):
    return g.json("POST", "/api/redisRun", {"command": args[0], "args": list(args[1:]), "mode": mode})


def wait_connected(g, timeout=None):
    deadline = time.monotonic() + (timeout or gw.bound(5))
    while True:
        status, body = g.get("/api/redisConnected")
        if status == 200 and body["connected"]:
            return
        assert time.monotonic() < deadline, "not connected to Redis\n" + g.describe()
        time.sleep(0.02)


def key(name="k"):
    return "itest:faults:%s:%s" % (uuid.uuid4().hex[:10], name)


# -- refused commands ---------------------------------------------------------------------

# One of each class, in the forms an action would send them, and the name the error gives.
REFUSED = [
    (["FLUSHALL"], "FLUSHALL"),
    (["flushdb"], "FLUSHDB"),
    (["CONFIG", "SET", "maxmemory", "1"], "CONFIG"),
    (["SHUTDOWN", "NOSAVE"], "SHUTDOWN"),
    (["DEBUG", "SLEEP", "0"], "DEBUG"),
    (["CLIENT", "KILL", "TYPE", "normal"], "CLIENT KILL"),
    (["client", "pause", "1000"], "CLIENT PAUSE"),
    (["WAIT", "1", "0"], "WAIT"),
    (["BLPOP", "itest:faults:none", "0"], "BLPOP"),
    (["BRPOPLPUSH", "itest:faults:a", "itest:faults:b", "0"], "BRPOPLPUSH"),
    (["BLMOVE", "itest:faults:a", "itest:faults:b", "LEFT", "RIGHT", "0"], "BLMOVE"),
    (["BZPOPMIN", "itest:faults:z", "0"], "BZPOPMIN"),
    (["BLMPOP", "0", "1", "itest:faults:a", "LEFT"], "BLMPOP"),
    (["XREAD", "BLOCK", "0", "STREAMS", "itest:faults:s", "$"], "XREAD"),
    (["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "itest:faults:s", ">"], "XREADGROUP"),
    (["SCRIPT", "FLUSH"], "SCRIPT FLUSH"),
    (["FUNCTION", "FLUSH"], "FUNCTION FLUSH"),
]


def test_dangerous_commands_are_refused_with_the_name_and_the_key(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(redis_config(r.url()))
    wait_connected(g)
    k = key()
    r.command("SET", k, "kept")
    for args, name in REFUSED:
        status, body = run_cmd(g, *args)
        assert status == 200 and body["ok"] is False, (args, body)
        text = body["raised"]["text"]
        assert text.startswith("api.redis.call: %s is not allowed: " % args[0]), (args, text)
        assert ALLOW_HINT % name in text, (args, text)
        # pcall raises too: a refused command is a bug in the action, not Redis trouble.
        offset = g.log_size()
        status, body = run_cmd(g, *args, mode="pcall")
        assert status == 500, (args, body)
        assert g.wait_for_log(re.escape("api.redis.pcall: %s is not allowed" % args[0]),
                              since=offset), g.describe()
    # Nothing reached Redis: the key, the server and its config are as they were.
    assert r.command("GET", k) == b"kept"
    assert r.command("CONFIG", "GET", "maxmemory")[1] == b"0"
    # A blocking command with a timeout, other CLIENT and SCRIPT subcommands: fine.
    status, body = run_cmd(g, "BLPOP", k + ":list", "0.01")
    assert status == 200 and body["ok"] is True and body["reply"] == {"type": "nil"}, body
    status, body = run_cmd(g, "CLIENT", "GETNAME")
    assert status == 200 and body["ok"] is True, body
    status, body = run_cmd(g, "SCRIPT", "EXISTS", "0" * 40)
    assert status == 200 and body["ok"] is True, body
    g.assert_serving()


def test_allow_commands_by_name(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(redis_config(r.url(), allowCommands=["flushdb", "BLPOP", "CLIENT KILL"]))
    wait_connected(g)
    k = key()
    r.command("SET", k, "v")
    r.command("RPUSH", k + ":list", "x")
    status, body = run_cmd(g, "FLUSHDB")
    assert status == 200 and body["reply"] == {"type": "status", "value": "OK"}, body
    assert r.command("DBSIZE") == 0
    r.command("RPUSH", k + ":list", "x")
    status, body = run_cmd(g, "BLPOP", k + ":list", "0")  # timeout 0, allowed: the value is there
    assert status == 200 and body["reply"]["value"][1] == {"type": "string", "value": "x"}, body
    status, body = run_cmd(g, "CLIENT", "KILL", "ID", "999999999")
    assert status == 200 and body["reply"] == {"type": "integer", "value": 0}, body  # none killed
    # Not named: still refused.
    status, body = run_cmd(g, "FLUSHALL")
    assert body["ok"] is False and ALLOW_HINT % "FLUSHALL" in body["raised"]["text"], body
    status, body = run_cmd(g, "CLIENT", "PAUSE", "10")
    assert body["ok"] is False and ALLOW_HINT % "CLIENT PAUSE" in body["raised"]["text"], body


def test_allow_commands_with_an_unknown_name_is_a_startup_error(gateway_bin, tmp_path):
    config = gw.default_config(str(tmp_path))
    config["redis"] = {"allowCommands": ["FLUSHDB", "SUBSCRIBE"]}
    path = gw.write_config(str(tmp_path / "gateway.lua"), config)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 1, res
    assert 'redis.allowCommands: "SUBSCRIBE" is not a command the gateway refuses' in res.stderr, res


# -- a stopped Redis under load -----------------------------------------------------------

def ws_burst(g, messages, timeout):
    """Send every message on one WebSocket at once; return (answers, seconds each took)."""
    async def go():
        async with g.ws_connect() as ws:
            sent = {}
            for i, m in enumerate(messages):
                m = dict(m, request_id=i)
                sent[i] = time.monotonic()
                await ws.send(json.dumps(m))
            out = {}
            while len(out) < len(messages):
                a = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                out[a["request_id"]] = (a, time.monotonic() - sent[a["request_id"]])
            return [out[i] for i in range(len(messages))]
    return asyncio.run(asyncio.wait_for(go(), timeout * 2))


def keepalive_on(port):
    """The gateway's TCP connection to Redis on 'port' has a keepalive timer (ss -o)."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", "dst", "127.0.0.1:%d" % port],
                         capture_output=True, text=True, timeout=10).stdout
    return out, "keepalive" in out


def test_stopped_redis_under_load_is_bounded_and_recovers(make_gateway, private_redis):
    r = private_redis(tcp=True)
    # The timeout is long enough for the whole first burst to be in before any times out
    # (also on the sanitizer build).
    g = make_gateway(redis_config(r.tcp_url(), commandTimeout=1500, maxPending=100))
    wait_connected(g)
    out, on = keepalive_on(r.port)
    assert on, "no keepalive on the gateway's Redis connection:\n" + out
    k = key()
    rss_before = g.rss_kib()
    offset = g.log_size()
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        # 400 commands at once: 100 wait for Redis (redis.maxPending), the rest fail at once.
        msgs = [{"action": "redisIncr", "data": {"key": k}}] * 400
        answers = ws_burst(g, msgs, timeout=gw.bound(10))
        statuses = [(a["status"], a["errors"]) for a, _ in answers]
        assert all(s == 503 for s, _ in statuses), statuses[:5]
        timeouts = [t for a, t in answers if a["errors"] == ["redis timeout"]]
        fast = [t for a, t in answers if a["errors"] == ["redis unavailable"]]
        assert len(timeouts) + len(fast) == 400, statuses[:5]
        assert len(timeouts) <= 100 and len(fast) >= 300, (len(timeouts), len(fast))
        assert g.wait_for_log(r"warning redis: 100 commands are waiting for .*redis\.maxPending",
                              since=offset), g.describe()
        # Three timeouts in a row: the connection is dropped, not left to queue.
        assert g.wait_for_log(r"redis: dropped the connection to .*: \d+ commands in a row got no "
                              r"reply within 1500 ms", timeout=gw.bound(5), since=offset), g.describe()
        # Sustained load while Redis stays stopped: every request is answered 503, within a
        # bound (at most a command timeout, or a 2 s handshake that cannot finish), and the
        # worker's memory stays put.
        deadline = time.monotonic() + 3
        rounds = 0
        while time.monotonic() < deadline:
            answers = ws_burst(g, [{"action": "redisIncr", "data": {"key": k}}] * 200,
                               timeout=gw.bound(10))
            assert all(a["status"] == 503 for a, _ in answers), answers[:3]
            assert max(t for _, t in answers) < gw.bound(4), max(t for _, t in answers)
            rounds += 1
        assert rounds >= 1
        g.assert_serving()  # what needs no Redis keeps working
        grown = g.rss_kib() - rss_before
        assert grown < 30 * 1024, "RSS grew by %d KiB with Redis stopped" % grown
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    # Recovery: a Redis-backed request answers 200 within a bound.
    deadline = time.monotonic() + gw.bound(8)
    while True:
        status, body = g.json("POST", "/api/redisIncr", {"key": k + ":after"})
        if status == 200:
            break
        assert status == 503, body
        assert time.monotonic() < deadline, "no recovery after SIGCONT\n" + g.describe()
        time.sleep(0.05)
    assert body["value"] == 1, body
    out, on = keepalive_on(r.port)
    assert on, "no keepalive on the new connection:\n" + out


# -- generic writes that time out -----------------------------------------------------------

def resource_gateway(make_gateway, r, **redis):
    config = redis_config(r.url(), actions=[RESOURCES, REDIS_ACTIONS], commandTimeout=300, **redis)
    config["redis"]["prefix"] = "itest:faults:"
    g = make_gateway(config)
    wait_connected(g)
    return g


def pause(r, ms, mode="ALL"):
    """CLIENT PAUSE from a connection of the test's own; returns when the pause ends."""
    assert r.command("CLIENT", "PAUSE", str(ms), mode) == "OK"
    return time.monotonic() + ms / 1000.0


def wait_unpaused(g, until, timeout=None):
    """Sleep until the pause is over (polling meanwhile would add timeouts in a row, and at
    three the gateway drops the connection, and the paused write with it), then until the
    gateway answers a read again."""
    time.sleep(max(0.0, until - time.monotonic()) + 0.05)
    deadline = time.monotonic() + (timeout or gw.bound(8))
    while True:
        status, body = g.json("GET", "/api/items/")
        if status == 200:
            return body
        assert time.monotonic() < deadline, "Redis still paused\n" + g.describe()
        time.sleep(0.05)


WRITE_TIMEOUT = "redis timeout: the write may have happened"


def test_generic_write_that_times_out_is_504_and_may_have_happened(make_gateway, private_redis):
    r = private_redis()
    g = resource_gateway(make_gateway, r)
    status, body = g.json("POST", "/api/items/", {"title": "one"})
    assert status == 201, body
    pk = body["id"]

    # CLIENT PAUSE WRITE: reads are answered, EVAL (a write) waits until the pause ends.
    steps = [("POST", "/api/items/", {"title": "two"}),
             ("PUT", "/api/items/%d/" % pk, {"title": "put"}),
             ("PATCH", "/api/items/%d/" % pk, {"content": "patched"}),
             ("DELETE", "/api/items/%d/" % pk, None)]
    for method, path, payload in steps:
        until = pause(r, 1000, "WRITE")
        status, body = g.json(method, path, payload)
        assert status == 504, (method, body)
        assert gw.error_text(body) == WRITE_TIMEOUT, (method, body)
        items = wait_unpaused(g, until)
    # Each write did happen once Redis went on: the client was right to be told "maybe".
    assert [(i["title"], i["content"]) for i in items] == [("two", "")], items
    assert r.command("EXISTS", "itest:faults:resource:item:obj:%d" % pk) == 0

    # A read that times out stays 503 "redis timeout".
    until = pause(r, 1000)
    status, body = g.json("GET", "/api/items/%d/" % items[0]["id"])
    assert status == 503 and gw.error_text(body) == "redis timeout", body
    wait_unpaused(g, until)


def test_unpaged_list_is_cut_at_max_list_size(make_gateway, private_redis):
    r = private_redis()
    g = resource_gateway(make_gateway, r, maxListSize=5)
    for i in range(8):
        status, body = g.json("POST", "/api/items/", {"title": "t%d" % i})
        assert status == 201, body
    offset = g.log_size()
    status, body = g.json("GET", "/api/items/")
    assert status == 200, body
    assert [i["title"] for i in body] == ["t0", "t1", "t2", "t3", "t4"], body
    assert g.wait_for_log(r'warning resource "item": list answers the first 5 of 8 objects '
                          r"\(redis.maxListSize\)", since=offset), g.describe()
    # Over WebSocket too, and a paged resource is not affected.
    [a] = gw.exchange(g, "ws", [{"action": "list", "route": "items/"}])
    assert a["status"] == 200 and len(a["data"]) == 5, a
