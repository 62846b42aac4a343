"""Redis client and api.redis (SPEC §9, issue 5): replies mapped to Lua over HTTP and
WebSocket, argument conversion, misuse, pipelining of many actions on one connection, and the
faults: Redis killed and restarted, down at startup, stalled (DEBUG SLEEP), clients leaving
while their command is in flight, AUTH/SELECT, shutdown with a command in flight.

The fixture actions live in redis_actions/. Basic tests share the session's redis-server
(`redis_url`); fault tests start a private one (conftest's private_redis) they may kill."""

import asyncio
import json
import os
import re
import select
import socket
import threading
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_ACTIONS = os.path.join(HERE, "redis_actions")
ACTIONS = [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, REDIS_ACTIONS]


def redis_config(url, **redis):
    return {"paths": {"actions": ACTIONS}, "redis": dict({"url": url}, **redis),
            "general": {"simultaneousActions": 100, "actionTimeout": 5000}}


@pytest.fixture(scope="module")
def rgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module on the session's redis-server."""
    workdir = tmp_path_factory.mktemp("rgw")
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url), redis_config(redis_url))
    with gw.serving(workdir, config) as g:  # exit status 0 and no sanitizer report at the end
        wait_connected(g)
        yield g


def key(name="k"):
    return "itest:redis:%s:%s" % (uuid.uuid4().hex[:10], name)


def run_cmd(g, command, *args, mode=None, timeout=gw.REQUEST_TIMEOUT):
    body = {"command": command, "args": list(args)}
    if mode:
        body["mode"] = mode
    return g.json("POST", "/api/redisRun", body, timeout=timeout)


def reply_of(g, command, *args, mode=None):
    status, body = run_cmd(g, command, *args, mode=mode)
    assert status == 200, body
    return body["reply"] if mode != "pcall" else (body["reply"], body.get("err"))


def incr(g, k, timeout=gw.REQUEST_TIMEOUT):
    return g.json("POST", "/api/redisIncr", {"key": k}, timeout=timeout)


def connected(g):
    status, body = g.get("/api/redisConnected")
    assert status == 200, body
    return body["connected"]


def wait_connected(g, timeout=None):
    timeout = timeout or gw.bound(5)
    deadline = time.monotonic() + timeout
    while not connected(g):
        assert time.monotonic() < deadline, "not connected to Redis after %.0f s\n%s" % (
            timeout, g.describe())
        time.sleep(0.02)


def redis_warnings(g, since=0):
    return [line for line in g.log_since(since).splitlines()
            if " warning redis:" in line or " error redis:" in line]


def wait_for_lines(g, pattern, count, timeout=None, since=0):
    """Wait (bounded) until at least 'count' log lines since 'since' match 'pattern'; returns
    how many did (fewer on timeout: assert it)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + (timeout or gw.bound(5))
    while True:
        n = sum(1 for line in g.log_since(since).splitlines() if rx.search(line))
        if n >= count or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


def wait_for_retries(g, n, since):
    """Wait until the client has failed 'n' more reconnection attempts after the logged
    outage (each is a debug line; the backoff is 100 ms doubling up to 1 s)."""
    got = wait_for_lines(g, r" debug redis: (cannot connect to|cannot use) ", n, since=since)
    assert got >= n, "only %d failed reconnection attempts logged\n%s" % (got, g.describe())


def ws_calls(g, messages, timeout=10.0):
    """Send every message on one WebSocket without waiting, then read one answer each;
    answers are returned in arrival order."""
    async def go():
        async with g.ws_connect() as ws:
            for m in messages:
                await ws.send(json.dumps(m))
            out = []
            for _ in messages:
                out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
            return out
    return asyncio.run(asyncio.wait_for(go(), timeout * 2))


# -- replies and arguments -------------------------------------------------------------------

def test_set_get_incr_del(rgw):
    k = key()
    assert reply_of(rgw, "SET", k, "hello") == {"type": "status", "value": "OK"}
    assert reply_of(rgw, "GET", k) == {"type": "string", "value": "hello"}
    assert reply_of(rgw, "DEL", k) == {"type": "integer", "value": 1}
    assert reply_of(rgw, "GET", k) == {"type": "nil"}
    assert reply_of(rgw, "INCR", k) == {"type": "integer", "value": 1}
    assert reply_of(rgw, "INCRBY", k, "41") == {"type": "integer", "value": 42}
    assert reply_of(rgw, "PING") == {"type": "status", "value": "PONG"}
    # Binary-safe bulk strings, including an empty one.
    assert reply_of(rgw, "SET", k, "") == {"type": "status", "value": "OK"}
    assert reply_of(rgw, "GET", k) == {"type": "string", "value": ""}
    rgw.json("POST", "/api/redisRun", {"command": "DEL", "args": [k]})


def test_arrays_and_nil_inside_arrays(rgw):
    k = key("list")
    assert reply_of(rgw, "RPUSH", k, "a", "b", "c")["value"] == 3
    assert reply_of(rgw, "LRANGE", k, "0", "-1") == {
        "type": "array", "n": 3,
        "value": [{"type": "string", "value": v} for v in ("a", "b", "c")]}
    empty = reply_of(rgw, "LRANGE", key("none"), "0", "-1")
    assert empty["type"] == "array" and empty["n"] == 0
    h = key("hash")
    reply_of(rgw, "HSET", h, "f1", "v1", "f2", "v2")
    got = reply_of(rgw, "HGETALL", h)
    assert got["type"] == "array" and got["n"] == 4
    flat = [e["value"] for e in got["value"]]
    assert dict(zip(flat[::2], flat[1::2])) == {"f1": "v1", "f2": "v2"}
    # A nil inside an array is false, as in Redis's own Lua scripting.
    reply_of(rgw, "SET", k + ":s", "x")
    assert reply_of(rgw, "MGET", k + ":s", key("missing")) == {
        "type": "array", "n": 2,
        "value": [{"type": "string", "value": "x"}, {"type": "boolean", "value": False}]}
    # Nested arrays and an error inside an array (EVAL returns them as they are).
    nested = reply_of(rgw, "EVAL", "return {1, {2, 'x'}, redis.error_reply('boom')}", "0")
    assert nested["value"][0] == {"type": "integer", "value": 1}
    assert nested["value"][1]["value"] == [{"type": "integer", "value": 2},
                                           {"type": "string", "value": "x"}]
    assert nested["value"][2]["type"] == "error"
    assert nested["value"][2]["value"].endswith("boom"), nested
    # A nil multi-bulk at the top level is nil.
    assert reply_of(rgw, "BLPOP", key("empty"), "0.01") == {"type": "nil"}
    for name in (k, h, k + ":s"):
        reply_of(rgw, "DEL", name)


def test_error_reply_pcall_and_raised_table(rgw):
    k = key()
    reply_of(rgw, "SET", k, "not a number")
    reply, err = reply_of(rgw, "INCR", k, mode="pcall")
    assert reply == {"type": "nil"}
    assert err == "ERR value is not an integer or out of range"
    reply, err = reply_of(rgw, "SET", k, "v", mode="pcall")
    assert reply == {"type": "status", "value": "OK"} and err is None
    # What call raises: { err = "..." } whose tostring is the message.
    status, body = run_cmd(rgw, "LPUSH", k, "x", mode="try")
    assert status == 200, body
    assert body["ok"] is False
    assert body["raised"]["err"] == \
        "WRONGTYPE Operation against a key holding the wrong kind of value", body
    assert body["raised"]["text"] == body["raised"]["err"]
    assert "status" not in body["raised"]
    reply_of(rgw, "DEL", k)


def test_uncaught_error_reply_is_500_with_the_message_in_the_log(rgw):
    k = key()
    reply_of(rgw, "SET", k, "text")
    offset = rgw.log_size()
    r = rgw.request("POST", "/api/redisRun", {"command": "INCR", "args": [k]})
    assert r.status == 500, r.body
    assert gw.error_text(r.json()) == "The server experienced an internal error"
    assert b"not an integer" not in r.body
    assert rgw.wait_for_log("ERR value is not an integer", since=offset), rgw.describe()
    reply_of(rgw, "DEL", k)


def test_unknown_command_is_an_error_reply(rgw):
    reply, err = reply_of(rgw, "NOSUCHCOMMAND", "x", mode="pcall")
    assert reply == {"type": "nil"}
    assert err.startswith("ERR unknown command"), err


def test_number_arguments(rgw):
    k = key()
    status, body = rgw.json("POST", "/api/redisArgs", {"key": k})
    assert status == 200, body
    assert body["stored"] == {"int": "42", "negative": "-7", "integral_float": "3",
                              "fraction": "1.5", "small": "0.1", "big": "1e+20",
                              "huge": "inf", "neg_huge": "-inf",
                              "max": "9223372036854775807"}, body
    assert "string or number expected, got boolean" in body["boolean"], body
    assert "string or number expected, got table" in body["table"], body
    assert "command name (string) expected" in body["name"], body
    assert "command name (string) expected" in body["none"], body
    reply_of(rgw, "DEL", k)


def test_misuse_raises_clear_errors(rgw):
    status, body = rgw.get("/api/redisMisuse")
    assert status == 200, body
    m = body["messages"]
    multi = ("MULTI is not allowed: other actions' commands would land inside the "
             "transaction on the shared connection; use EVAL or FCALL for atomic work")
    assert m["MULTI"] == "api.redis.call: " + multi, m
    assert m["subscribe"] == ("api.redis.call: subscribe is not allowed: pub/sub and MONITOR "
                              "need a connection of their own, which api.redis does not offer"), m
    assert m["SELECT"] == ("api.redis.call: SELECT is not allowed: it would change the "
                           "connection every action shares (the database and password come "
                           "from redis.url)"), m
    assert m["CLIENT"] == ("api.redis.call: CLIENT is not allowed: replies would no longer "
                           "match their commands on the shared connection"), m
    # Misuse raises from pcall too: it is a bug in the action, not Redis trouble.
    assert m["pcall_multi"] == "api.redis.pcall: " + multi, m
    assert m["own_coroutine"] == ("api.redis.call can only be called from an action, "
                                  "middleware or timer callback (not while loading, nor from "
                                  "a coroutine of your own)"), m
    assert m["not_yieldable"].endswith(
        "redis_misuse.lua:17: api.redis.call cannot wait here (a C function such as "
        "table.sort or string.gsub is calling this code)"), m
    rgw.assert_serving()


def test_call_while_loading_fails_clearly(gateway_bin, redis_url, tmp_path):
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "early.lua").write_text(
        'local v = api.redis.call("GET", "x")\n'
        'return { name = "early", description = "d", run = function(api, data, next) next() end }\n')
    config = gw.default_config(str(tmp_path), redis_url, actions=[str(actions)])
    path = gw.write_config(str(tmp_path / "gw.lua"), config)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 1, res
    assert "early.lua" in res.stderr, res.stderr
    assert "api.redis.call can only be called from an action" in res.stderr, res.stderr


def test_bad_redis_url_is_a_startup_error(gateway_bin, tmp_path):
    config = gw.default_config(str(tmp_path), None, actions=[gw.EXAMPLE_ACTIONS])
    path = gw.write_config(str(tmp_path / "gw.lua"), config)
    res = gw.run_cli(["--config", path, "--redis", "localhost:6379", "--check"])
    assert res.returncode == 1, res
    assert "redis.url" in res.stderr and "from --redis" in res.stderr, res.stderr
    res = gw.run_cli(["--config", path, "--check"], env={"GATEWAY_REDIS_URL": "redis://:pw@h:0"})
    assert res.returncode == 1, res
    assert "port" in res.stderr and "GATEWAY_REDIS_URL" in res.stderr, res.stderr
    assert "pw" not in res.stderr.replace("port", "")


def test_connected_and_timer_callbacks(rgw):
    assert connected(rgw) is True
    k = key()
    status, body = rgw.json("POST", "/api/redisLater", {"key": k, "value": "from a timer"})
    assert status == 200, body
    deadline = time.monotonic() + gw.bound(3)
    while reply_of(rgw, "GET", k) != {"type": "string", "value": "from a timer"}:
        assert time.monotonic() < deadline, "the timer callback's SET never landed"
        time.sleep(0.02)
    reply_of(rgw, "DEL", k)


def test_over_websocket(rgw):
    k = key()
    msgs = [
        {"action": "redisRun", "params": {"command": "SET", "args": [k, "ws"]}, "request_id": 1},
        {"action": "redisRun", "params": {"command": "GET", "args": [k]}, "request_id": 2},
        {"action": "redisRun", "params": {"command": "INCR", "args": [k], "mode": "pcall"},
         "request_id": 3},
        {"action": "redisRun", "params": {"command": "INCR", "args": [k]}, "request_id": 4},
        {"action": "redisRun", "params": {"command": "DEL", "args": [k]}, "request_id": 5},
    ]
    answers = {}
    for m in msgs:  # one at a time, so the order of effects is the order sent
        (env,) = ws_calls(rgw, [m])
        answers[env["request_id"]] = env
    assert answers[1]["status"] == 200 and answers[1]["data"]["reply"]["value"] == "OK"
    assert answers[2]["data"]["reply"] == {"type": "string", "value": "ws"}
    assert answers[3]["status"] == 200
    assert answers[3]["data"]["err"] == "ERR value is not an integer or out of range"
    assert answers[4]["status"] == 500, answers[4]
    assert answers[4]["errors"] == ["The server experienced an internal error"]
    assert answers[5]["data"]["reply"] == {"type": "integer", "value": 1}


def test_many_concurrent_actions_share_the_connection(rgw):
    """200 INCRs from 4 WebSockets, all in flight together: each lands exactly once."""
    k = key("counter")
    per_conn, conns = 50, 4

    async def one(i):
        async with rgw.ws_connect() as ws:
            for j in range(per_conn):
                await ws.send(json.dumps({"action": "redisIncr", "params": {"key": k},
                                          "request_id": "%d-%d" % (i, j)}))
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(per_conn)]

    async def go():
        return await asyncio.gather(*(one(i) for i in range(conns)))

    t0 = time.monotonic()
    results = [env for batch in asyncio.run(asyncio.wait_for(go(), 30)) for env in batch]
    elapsed = time.monotonic() - t0
    assert all(env["status"] == 200 for env in results), [e for e in results if e["status"] != 200][:3]
    values = sorted(env["data"]["value"] for env in results)
    assert values == list(range(1, per_conn * conns + 1))
    assert reply_of(rgw, "GET", k) == {"type": "string", "value": str(per_conn * conns)}
    assert elapsed < gw.bound(10), elapsed
    reply_of(rgw, "DEL", k)


# -- faults ----------------------------------------------------------------------------------

def incr_value(g, k):
    status, body = incr(g, k)
    assert status == 200, body
    return body["value"]


def assert_unavailable_at_once(g, k, message="redis unavailable"):
    """While Redis is down a command fails at once: it is not queued until Redis is back
    (the action would time out: 504 after 5 s) and waits for no command timeout."""
    t0 = time.monotonic()
    status, body = incr(g, k)
    elapsed = time.monotonic() - t0
    assert status == 503, body
    assert gw.error_text(body) == message, body
    assert elapsed < gw.bound(1.5), elapsed
    status, body = run_cmd(g, "GET", k, mode="pcall")
    assert status == 200, body
    assert body["reply"] == {"type": "nil"} and body["err"] == message, body
    (env,) = ws_calls(g, [{"action": "redisIncr", "params": {"key": k}}])
    # A raised error table shows as its fields, like next({ status = ..., message = ... }).
    assert env["status"] == 503 and gw.errors_of(env) == [message], env


def wait_for_incr(g, k, timeout):
    """Poll until a Redis-backed action works again (failing after 'timeout' seconds);
    returns its value."""
    t0 = time.monotonic()
    while True:
        status, body = incr(g, k)
        if status == 200:
            return body["value"]
        assert status == 503, body
        assert time.monotonic() - t0 < timeout, "no reconnection within %.1f s\n%s" % (
            timeout, g.describe())
        time.sleep(0.02)


# The client retries every 100 ms doubling up to 1 s: after Redis is back, a command works
# again within about a second (the bound has margin for a loaded machine).
RECONNECT_BOUND = 2.5


@pytest.mark.asan
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_redis_killed_then_restarted(make_gateway, private_redis, transport):
    # With appendfsync everysec Redis may answer a write up to ~2 s before it reaches the
    # AOF, so a SIGKILL can lose it; `always` writes before answering. (A clean restart
    # keeps everything with the default: see the next test.)
    r = private_redis(fsync_always=True, tcp=transport == "tcp")
    url = r.url() if transport == "unix" else "redis://127.0.0.1:%d/0" % r.port
    g = make_gateway(redis_config(url))
    wait_connected(g)
    k = key()
    assert incr_value(g, k) == 1
    assert incr_value(g, k) == 2  # acknowledged before the restart
    # Commands in flight when Redis dies: a BLPOP waiting inside Redis, and two INCRs queued
    # behind it on the shared connection. Each waiting action gets 503 at once.
    results, threads = [], []

    def in_flight(path, body):
        results.append(g.json("POST", path, body))

    def launch(path, body, marker):
        offset = g.log_size()
        t = threading.Thread(target=in_flight, args=(path, body))
        t.start()
        threads.append(t)
        assert g.wait_for_log(marker, timeout=gw.bound(5), since=offset), g.describe()

    list_key = key("list")
    launch("/api/redisBlpop", {"key": list_key, "seconds": 5},
           "redisBlpop sending key=" + re.escape(list_key))
    r.wait_blocked(1)
    for name in ("a", "b"):
        queued = key(name)
        launch("/api/redisIncr", {"key": queued}, "redisIncr sending key=" + re.escape(queued))
    offset = g.log_size()
    t0 = time.monotonic()
    r.kill()
    for t in threads:
        t.join(gw.bound(5))
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "actions still waiting after the kill"
    assert [(status, gw.error_text(body)) for status, body in results] == \
        [(503, "redis unavailable")] * 3, results
    assert elapsed < gw.bound(1.5), elapsed  # not after the BLPOP's 5 s
    assert g.wait_for_log("redis: lost the connection", since=offset), g.describe()
    assert_unavailable_at_once(g, k)
    assert connected(g) is False
    g.assert_serving()  # actions that need no Redis keep working
    # Several retries happen meanwhile; the outage is logged once.
    wait_for_retries(g, 3, since=offset)
    assert_unavailable_at_once(g, k)
    warnings = redis_warnings(g, offset)
    assert len(warnings) == 1, warnings
    assert "lost the connection" in warnings[0]

    r.start()  # same socket and port, same data folder (appendonly)
    value = wait_for_incr(g, k, timeout=gw.bound(RECONNECT_BOUND))
    assert value == 3, "the INCR acknowledged before the restart was lost"
    assert connected(g) is True
    assert g.wait_for_log("redis: connected to", since=offset)
    g.assert_serving()


@pytest.mark.asan
def test_acknowledged_incr_survives_a_clean_restart(make_gateway, private_redis):
    r = private_redis()  # appendonly yes, appendfsync everysec (as make run and the harness)
    g = make_gateway(redis_config(r.url()))
    wait_connected(g)
    k = key()
    for i in range(1, 6):
        assert incr_value(g, k) == i
    r.stop()
    assert_unavailable_at_once(g, k)
    r.start()
    assert wait_for_incr(g, k, timeout=gw.bound(RECONNECT_BOUND)) == 6


@pytest.mark.asan
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_gateway_starts_without_redis_and_connects_later(make_gateway, private_redis, transport):
    r = private_redis(start=False, tcp=transport == "tcp")
    url = r.url() if transport == "unix" else "redis://127.0.0.1:%d/0" % r.port
    g = make_gateway(redis_config(url))  # starting is not held up by Redis
    k = key()
    assert_unavailable_at_once(g, k)
    g.assert_serving()
    wait_for_retries(g, 2, since=0)
    warnings = redis_warnings(g)
    assert len(warnings) == 1 and "cannot connect to" in warnings[0], warnings
    r.start(keep_port=True)  # the gateway has this port in its URL
    assert wait_for_incr(g, k, timeout=gw.bound(RECONNECT_BOUND)) == 1


def wait_stalled(r, timeout=None):
    """Wait (bounded) until Redis answers nobody: a PING on a fresh connection gets no
    answer within 0.2 s (Redis answers one in microseconds when it is not asleep)."""
    deadline = time.monotonic() + (timeout or gw.bound(5))
    while True:
        with r.connect() as probe:
            probe.sendall(gw.resp_encode("PING"))
            readable, _, _ = select.select([probe], [], [], 0.2)
            if not readable:
                return
        assert time.monotonic() < deadline, "Redis kept answering PING during DEBUG SLEEP"


STALL_SECONDS = 3


@pytest.mark.asan
def test_stalled_redis_times_out_and_the_loop_keeps_serving(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(redis_config(r.url(), commandTimeout=500))
    wait_connected(g)
    k = key()
    assert reply_of(g, "SET", k, "before") == {"type": "status", "value": "OK"}

    # DEBUG SLEEP from outside: Redis answers nobody for STALL_SECONDS. All that follows, up
    # to the look at `stall`, happens meanwhile: that look proves it.
    stall = r.connect()
    stall.sendall(gw.resp_encode("DEBUG", "SLEEP", STALL_SECONDS))
    wait_stalled(r)
    results = {}

    def slow(name, mode):
        t0 = time.monotonic()
        results[name] = run_cmd(g, "GET", k, mode=mode) + (time.monotonic() - t0,)

    threads = [threading.Thread(target=slow, args=("call", None)),
               threading.Thread(target=slow, args=("pcall", "pcall"))]
    for t in threads:
        t.start()
    for _ in range(3):  # the loop is not blocked meanwhile
        g.assert_serving()
    for t in threads:
        t.join(gw.bound(5))
    assert not any(t.is_alive() for t in threads)
    readable, _, _ = select.select([stall], [], [], 0)
    assert not readable, "Redis woke up before the timeouts and the plain actions were answered"
    status, body, elapsed = results["call"]
    assert status == 503, body
    assert gw.error_text(body) == "redis timeout", body
    # commandTimeout is 500 ms (minus a timer's millisecond of rounding).
    assert 0.49 <= elapsed < 0.5 + gw.bound(1.0), elapsed
    status, body, elapsed = results["pcall"]
    assert status == 200 and body["err"] == "redis timeout", body
    assert body["reply"] == {"type": "nil"}, body

    # After the stall, the late replies are dropped and every reply finds its own command.
    stall.settimeout(STALL_SECONDS + gw.bound(5))
    assert stall.recv(64).startswith(b"+OK")
    stall.close()
    for i in range(5):
        assert reply_of(g, "SET", "%s:%d" % (k, i), "v%d" % i)["value"] == "OK"
    for i in range(5):
        assert reply_of(g, "GET", "%s:%d" % (k, i)) == {"type": "string", "value": "v%d" % i}
    assert reply_of(g, "GET", k) == {"type": "string", "value": "before"}


@pytest.mark.asan
def test_client_gone_while_its_command_is_in_flight(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(redis_config(r.url()))
    wait_connected(g)
    k = key("list")

    async def ws_leaves():
        async with g.ws_connect() as ws:
            await ws.send(json.dumps({"action": "redisBlpop", "params": {"key": k, "seconds": 1}}))
            r.wait_blocked(1)  # (blocks this event loop briefly: nothing else runs on it)
        # closed with the BLPOP still waiting in Redis

    asyncio.run(asyncio.wait_for(ws_leaves(), gw.bound(10)))
    offset = g.log_size()
    with socket.create_connection((g.host, g.port), timeout=5) as s:  # the same over HTTP
        body = json.dumps({"key": k + "x", "seconds": 1}).encode()
        s.sendall(b"POST /api/redisBlpop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        # Queued behind the first BLPOP on the shared connection; then the client leaves.
        assert g.wait_for_log("redisBlpop sending key=" + re.escape(k + "x"),
                              timeout=gw.bound(5), since=offset), g.describe()
    g.assert_serving()
    # Both BLPOPs time out in Redis (1 s each, one after the other on the shared connection);
    # their replies find nobody and are dropped. Then the connection is in step again.
    assert reply_of(g, "RPUSH", k, "item")["value"] == 1
    status, body = g.json("POST", "/api/redisBlpop", {"key": k, "seconds": 1})
    assert status == 200, body
    assert body["value"] == [k, "item"]
    assert g.alive()


@pytest.mark.asan
def test_action_timeout_while_command_in_flight(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(gw.deep_merge(redis_config(r.url()), {"general": {"actionTimeout": 1000}}))
    wait_connected(g)
    k = key("list")
    status, body = g.json("POST", "/api/redisBlpop", {"key": k, "seconds": 30})
    assert status == 504, body
    assert gw.error_text(body) == "action timed out"
    # The BLPOP still waits in Redis and holds up the shared connection. Release it from
    # outside: its reply ([k, "late"]) comes after its action is gone and is dropped; the
    # next command gets its own reply.
    r.wait_blocked(1)
    assert r.command("RPUSH", k, "late") == 1
    r.wait_blocked(0)
    assert r.command("LLEN", k) == 0  # the BLPOP took it
    assert reply_of(g, "SET", k + ":s", "mine") == {"type": "status", "value": "OK"}
    assert reply_of(g, "GET", k + ":s") == {"type": "string", "value": "mine"}


@pytest.mark.asan
def test_shutdown_with_a_command_in_flight(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway(redis_config(r.url()))
    wait_connected(g)
    k = key("list")
    result = {}

    def waiter():
        result["r"] = g.json("POST", "/api/redisBlpop", {"key": k, "seconds": 2})

    t = threading.Thread(target=waiter)
    t.start()
    r.wait_blocked(1)  # the BLPOP waits inside Redis
    assert g.stop() == 0  # SIGTERM: the drain lets the BLPOP finish
    t.join(gw.bound(5))
    assert result["r"][0] == 200, result
    assert result["r"][1]["value"] is None


@pytest.mark.asan
def test_shutdown_while_redis_is_down(make_gateway, private_redis):
    r = private_redis(start=False)
    g = make_gateway(gw.deep_merge(redis_config(r.url()), {"general": {"shutdownTimeout": 20000}}))
    assert_unavailable_at_once(g, key())
    t0 = time.monotonic()
    assert g.stop(timeout=30) == 0
    # Neither the reconnection timer nor the drain (up to 20 s) holds up the exit.
    assert time.monotonic() - t0 < gw.bound(3)


@pytest.mark.asan
def test_auth_and_select(make_gateway, private_redis):
    password = "s3cr@t/pw:x"
    r = private_redis(password=password, tcp=True)
    k = key()
    g = make_gateway(redis_config(r.url(db=3, password=password)))
    wait_connected(g)
    assert reply_of(g, "SET", k, "in db 3")["value"] == "OK"
    assert r.command("GET", k, db=3) == b"in db 3"
    assert r.command("GET", k) is None  # not in db 0

    # An ACL user over TCP, with the password in the URL as it is (the last '@' ends it).
    assert r.command("ACL", "SETUSER", "alice", "on", ">alice@pw", "~*", "+@all") == "OK"
    g2 = make_gateway(redis_config("redis://alice:alice@pw@127.0.0.1:%d/4" % r.port))
    wait_connected(g2)
    assert reply_of(g2, "SET", k, "in db 4")["value"] == "OK"
    assert r.command("GET", k, db=4) == b"in db 4"
    assert r.command("ACL", "WHOAMI", user=("alice", "alice@pw")) == b"alice"


@pytest.mark.asan
def test_wrong_password_is_logged_once_without_the_password(make_gateway, private_redis):
    r = private_redis(password="right-one")
    g = make_gateway(redis_config(r.url(password="wrong-one")))
    k = key()
    assert g.wait_for_log(r" warning redis: cannot use .*AUTH failed", timeout=gw.bound(5)), \
        g.describe()
    assert_unavailable_at_once(g, k)
    wait_for_retries(g, 2, since=0)  # a few more attempts, each refused
    warnings = redis_warnings(g)
    assert len(warnings) == 1, warnings
    assert "AUTH failed" in warnings[0] and "WRONGPASS" in warnings[0], warnings
    assert "wrong-one" not in g.log_text() and "right-one" not in g.log_text()
    assert "password=***" in warnings[0]
