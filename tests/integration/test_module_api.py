"""The parts of the C module API (core/gateway.h) the example modules do not use, through the
test module tests/integration/module_src/probe.c: gateway_register_value, connection hooks
(create/destroy for web, WebSocket and TCP connections; a raising hook is logged), a C
postProcessor, gateway_redis_command's failures (redis timeout, refused commands, Redis
unreachable), gateway_redis_connected and gateway_async_unavailable. Also modules linked into
the binary with `make STATIC_MODULES=...`, and the built-in modules api.redis, api.json,
api.regex and api.sleep registered on the same API. Marked `asan`: `make test-asan` runs them
again against the sanitizer build."""

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import gateway as gw


pytestmark = pytest.mark.asan

PROBE_SRC = os.path.join(gw.HERE, "module_src", "probe.c")
PROBE_ACTIONS = os.path.join(gw.HERE, "probe_actions")
HELLO_DIR = os.path.join(gw.REPO, "examples", "modules", "hello")
MODULE_ACTIONS = os.path.join(gw.HERE, "module_actions")


@pytest.fixture(scope="module")
def probe_so(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "probe.so"
    cflags = subprocess.run(["pkg-config", "--cflags", "lua5.4", "libuv", "hiredis"],
                            capture_output=True, text=True, check=True).stdout.split()
    subprocess.run([shutil.which("cc") or "cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                    "-Werror", "-shared", "-fPIC", *cflags, "-I" + os.path.join(gw.REPO, "core"),
                    "-o", str(out), PROBE_SRC], check=True)
    return str(out)


def _config(tmp_path, redis_url, modules, actions=(PROBE_ACTIONS,), **extra):
    base = gw.default_config(str(tmp_path), redis_url, actions=list(actions), middleware=[])
    base["modules"] = modules
    return gw.deep_merge(base, extra)


def _probe(probe_so, **config):
    return {"name": "probe", "path": probe_so, "config": config}


# -- values, hooks and a C postProcessor --------------------------------------------------

def _wait_probe_connected(g, timeout=10.0):
    """Poll (bounded) until the probe module sees the Redis connection up; the gateway connects
    in the background after it starts listening."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = g.get("/api/probeInfo")
        assert status == 200, body
        if body["connected"] is True:
            return
        assert body["connected"] is False, body
        assert time.monotonic() < deadline, "not connected after %.0f s\n%s" % (
            timeout, g.describe())
        time.sleep(0.02)


def test_value_hooks_and_post_processor_over_http(make_gateway, tmp_path, redis_url, probe_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [_probe(probe_so)]))
    _wait_probe_connected(g)
    status, first = g.get("/api/probeInfo")
    assert status == 200, first
    assert first["info"] == {"name": "probe", "answer": 42}, first
    assert first["seen"] is True, first  # create ran before the action, on its connection
    assert first["postedBy"] == "probe", first  # the C postProcessor
    assert first["connected"] is True, first
    status, second = g.get("/api/probeInfo")
    assert status == 200, second
    # Each web request is a connection, destroyed once its action completes (before the
    # response is sent): one more created, and exactly the first one destroyed since.
    assert second["created"] == first["created"] + 1, (first, second)
    assert second["destroyed"] == first["destroyed"] + 1, (first, second)
    assert g.wait_for_log(r"probe destroy web.*module=probe", timeout=5), g.log_text()
    # A postProcessor returning nil, "message" adds the error to the response: 400 (SPEC 5,
    # a middleware error without a status), the action's response still there.
    status, body = g.get("/api/probeInfo?probeFail=1")
    assert status == 400, body
    assert body["errors"] == ["probe post failed"], body
    assert gw.error_text(body) == "probe post failed", body
    assert body["info"]["answer"] == 42 and "postedBy" not in body, body  # the action ran


def test_hooks_once_per_websocket_connection(make_gateway, tmp_path, redis_url, probe_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [_probe(probe_so)]))

    async def go():
        async with g.ws_connect() as ws:
            got = []
            for i in range(3):
                await ws.send(json.dumps({"action": "probeInfo", "request_id": i}))
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return got

    envs = asyncio.run(asyncio.wait_for(go(), 30))
    assert all(e["status"] == 200 and e["data"]["seen"] is True for e in envs), envs
    # Three messages, one connection: create ran once for all of them.
    assert len({e["data"]["created"] for e in envs}) == 1, envs
    assert envs[0]["data"]["postedBy"] == "probe", envs
    assert g.wait_for_log(r"probe destroy websocket.*module=probe", timeout=5), g.log_text()


def test_hooks_on_tcp_connections(make_gateway, tmp_path, redis_url, probe_so):
    config = _config(tmp_path, redis_url, [_probe(probe_so)],
                     servers={"socket": {"enabled": True, "port": 0}})
    g = make_gateway(config=config)
    with g.line_client() as c:
        c.send_line(json.dumps({"action": "probeInfo"}))
        env = c.read_json()
    assert env["status"] == 200 and env["data"]["seen"] is True, env
    assert g.wait_for_log(r"probe destroy socket.*module=probe", timeout=5), g.log_text()


def test_raising_create_hook_is_logged_and_the_request_served(make_gateway, tmp_path, redis_url,
                                                              probe_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [_probe(probe_so, hookRaises=True)]))
    status, body = g.get("/api/probeInfo")
    assert status == 200, body
    assert body["seen"] is True, body
    assert g.wait_for_log(r"connection middleware probeHooks create failed.*probe create failed "
                          r"on purpose", timeout=5), g.log_text()


# -- suspending: where it is allowed ------------------------------------------------------

def test_async_unavailable_says_why(make_gateway, tmp_path, redis_url, probe_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [_probe(probe_so)]))
    status, body = g.get("/api/probeWhy")
    assert status == 200, body
    assert body["here"] == "can suspend", body
    assert body["inSort"].startswith("cannot wait here"), body
    assert body["inCoroutine"].startswith("can only be called from an action"), body
    assert "api.probe.redis cannot wait here" in body["redisInSort"], body


# -- Redis through a module -----------------------------------------------------------------

def test_redis_commands_and_refusals(make_gateway, tmp_path, redis_url, probe_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [_probe(probe_so)]))
    key = "itest:probe:%d:%d" % (os.getpid(), time.monotonic_ns())
    status, body = g.get("/api/probeRedis?cmd=SET&args=%s+v1" % key)
    assert status == 200 and body["reply"] == "OK", body
    status, body = g.get("/api/probeRedis?cmd=GET&args=" + key)
    assert body["reply"] == "v1", body
    status, body = g.get("/api/probeRedis?cmd=INCR&args=" + key)
    assert "reply" not in body and "not an integer" in body["err"], body  # an error reply
    for cmd, why in (("SUBSCRIBE", "pub/sub"), ("MULTI", "EVAL"), ("SELECT", "redis.url")):
        status, body = g.get("/api/probeRedis?cmd=%s&args=1" % cmd)
        assert status == 200, body
        assert body["err"].startswith("refused: ") and why in body["err"], (cmd, body)


@contextlib.contextmanager
def writes_paused(sock):
    """Within the block, Redis holds every write command, and whatever its client sends after
    one, until CLIENT UNPAUSE at the end (CLIENT PAUSE ... WRITE: its +OK means the pause is
    on, so nothing is left to timing). 'sock' is a connection of its own to that Redis; the
    block gets a function returning how many clients Redis holds (INFO blocked_clients).
    The pause's own bound (60 s) only matters should UNPAUSE never come."""
    f = sock.makefile("rb")

    def command(*args):
        sock.sendall(gw.resp_encode(*args))
        reply = gw.resp_read(f, text=True)
        assert not isinstance(reply, Exception), (args, reply)
        return reply

    def blocked_clients():
        info = command("INFO", "clients")
        return int(re.search(r"^blocked_clients:(\d+)", info, re.M).group(1))

    assert command("CLIENT", "PAUSE", 60000, "WRITE") == "OK"
    try:
        yield blocked_clients
    finally:
        assert command("CLIENT", "UNPAUSE") == "OK"


def test_redis_timeout_through_a_module(make_gateway, tmp_path, private_redis, probe_so):
    r = private_redis()
    g = make_gateway(config=_config(tmp_path, r.url(), [_probe(probe_so)],
                                    redis={"url": r.url(), "commandTimeout": 400}))
    _wait_probe_connected(g)
    key = "itest:probe:late:%d" % os.getpid()
    with r.connect() as side, writes_paused(side) as blocked_clients:
        t0 = time.monotonic()
        status, body = g.get("/api/probeRedis?cmd=SET&args=%s+late" % key)
        elapsed = time.monotonic() - t0
        assert status == 200 and body["err"] == "redis timeout", body
        assert 0.3 <= elapsed < gw.bound(1.3), elapsed
        assert blocked_clients() == 1  # the SET is still held, its reply to come
    # Redis ran the SET once unpaused; its late +OK was dropped: the next command gets its
    # own reply.
    status, body = g.get("/api/probeRedis?cmd=ECHO&args=after")
    assert status == 200 and body["reply"] == "after", body
    assert r.command("GET", key) == b"late"


def test_redis_unreachable_through_a_module(make_gateway, tmp_path, probe_so):
    config = _config(tmp_path, None, [_probe(probe_so)],
                     redis={"url": "unix://" + str(tmp_path / "no-redis.sock")})
    g = make_gateway(config=config)
    for _ in range(2):
        status, body = g.get("/api/probeRedis?cmd=PING")
        assert status == 200, body
        assert body["err"] == "redis unavailable", body
    status, body = g.get("/api/probeInfo")
    assert body["connected"] is False, body
