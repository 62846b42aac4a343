"""Limits on what one request can make the Lua state do (issue 14): the memory cap
(general.luaMemoryLimit), JSON nesting and size (general.jsonMaxDepth, jsonMaxElements), and
pcre2's match limit on patterns that backtrack catastrophically on client input.

Every test here runs again on the sanitizer build (make test-asan): the runtime answers for a
task that ran out of memory while the state is at its cap, and that path must be clean."""

import asyncio
import json
import os
import threading
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

LIMITS_ACTIONS = os.path.join(gw.HERE, "limits_actions")
LIMIT = 64 * 1024 * 1024  # the test gateway's general.luaMemoryLimit
BOMB = "a" * 40 + "b"     # ^(a+)+$ backtracks 2^40 ways on it before failing


@pytest.fixture(scope="module")
def lgw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lgw")
    routes = workdir / "routes.lua"
    routes.write_text("return " + gw.to_lua({"get": [
        {"path": "/bomb/:s(^(a+)+$)", "action": "randomNumber"},
    ]}) + "\n")
    config = gw.default_config(str(workdir), redis_url,
                               actions=[gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, LIMITS_ACTIONS])
    config["paths"]["routes"] = str(routes)
    config["servers"]["socket"] = {"enabled": True, "port": 0, "maxLineLength": 1 << 20}
    config["general"]["luaMemoryLimit"] = LIMIT
    config["general"]["actionTimeout"] = 20000
    config["general"]["cpuTimeout"] = 10000  # the hogs stop at the memory cap, even under ASan
    with gw.serving(workdir, config) as g:
        yield g


@pytest.fixture
def g(lgw):
    assert lgw.alive(), "the module's gateway died\n" + lgw.describe()
    return lgw


def texts(g, transport, lines, timeout=10.0):
    """Send each text as one message (WebSocket text frame or TCP line) on one connection;
    return the parsed answers in order."""
    if transport == "tcp":
        with g.line_client(timeout=timeout) as c:
            return [c.call(t, timeout=timeout) for t in lines]

    async def go():
        async with g.ws_connect() as ws:
            out = []
            for t in lines:
                await ws.send(t)
                out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
            return out

    return asyncio.run(asyncio.wait_for(go(), timeout * (len(lines) + 2)))


def workers(g):
    return sorted(g.children())


# -- the memory cap ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/memory_hog", "/api/big_rep"])
def test_action_over_the_memory_cap_gets_500_and_the_worker_serves_on(g, path):
    before = workers(g)
    since = g.log_size()
    r = g.request("GET", path)
    assert r.status == 500, (r.status, r.body[:300])
    assert "internal error" in gw.error_text(r.json())
    assert g.wait_for_log(r"general\.luaMemoryLimit is %d" % LIMIT, timeout=gw.bound(3),
                          since=since), g.log_since(since)[-2000:]
    # The next request, at once, on the same worker.
    g.assert_serving()
    assert workers(g) == before


def test_memory_error_caught_by_the_action(g):
    status, body = g.get("/api/caught_hog")
    assert status == 200, body
    assert body["caught"] is True and "not enough memory" in body["err"], body
    g.assert_serving()


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_memory_cap_over_persistent_connections(g, transport):
    before = workers(g)
    hog, ok = gw.exchange(g, transport, [{"action": "memory_hog"}, {"action": "randomNumber"}],
                          timeout=gw.bound(10))
    assert hog["status"] == 500, hog
    assert ok["status"] == 200 and 0 <= ok["data"]["randomNumber"] < 1, ok
    assert workers(g) == before


def test_rss_stays_bounded_across_hogs(g):
    g.assert_serving()
    base = g.rss_kib()
    for _ in range(5):
        status, _ = g.get("/api/memory_hog")
        assert status == 500
        g.assert_serving()
    # Each hog stops at the cap; what it built is collected before the next.
    grown_mib = (g.rss_kib() - base) / 1024
    assert grown_mib < 2 * LIMIT / 2 ** 20, "RSS grew by %.0f MiB" % grown_mib


# -- JSON depth and size -------------------------------------------------------------------

def post_json(g, text):
    return g.request("POST", "/api/echo_params", text.encode(),
                     {"Content-Type": "application/json"})


def test_deeply_nested_json_body_gets_400(g):
    for depth in (65, 100000):
        r = post_json(g, "[" * depth + "]" * depth)
        assert r.status == 400, (depth, r.status, r.body[:300])
        assert gw.error_text(r.json()) == \
            "invalid JSON body: nested deeper than general.jsonMaxDepth (64)"
    r = post_json(g, "[" * 100000)  # unclosed too
    assert r.status == 400 and "jsonMaxDepth" in gw.error_text(r.json())
    r = post_json(g, '{"a":' + "[" * 64 + "]" * 64 + "}")  # deep strings do not count
    assert r.status == 400
    r = post_json(g, '{"a":"' + "[" * 1000 + '"}')
    assert r.status == 200, r.body[:300]
    r = post_json(g, "[" * 64 + "]" * 64)
    assert r.status == 200, r.body[:300]
    g.assert_serving()


def test_json_body_with_too_many_values_gets_400(g):
    r = post_json(g, "[" + "0," * 150000 + "0]")
    assert r.status == 400, (r.status, r.body[:300])
    assert gw.error_text(r.json()) == \
        "invalid JSON body: more than general.jsonMaxElements (100000) values"
    r = post_json(g, '{"a":[' + "[]," * 60000 + '[]],"b":"x"}')
    assert r.status == 400 and "jsonMaxElements" in gw.error_text(r.json())
    r = post_json(g, "[" + "1," * 999 + "1]")
    assert r.status == 200, r.body[:300]
    assert len(r.json()["params"]["payload"]) == 1000
    g.assert_serving()


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_json_limits_over_persistent_connections(g, transport):
    # A TCP line is JSON when it starts with "{".
    deep_text = '{"action":"x","data":' + "[" * 100000 if transport == "tcp" else "[" * 100000
    deep, deep_data, many, ok = texts(g, transport, [
        deep_text,
        '{"action":"randomNumber","data":{"a":' + "[" * 70 + "]" * 70 + "}}",
        '{"action":"randomNumber","data":{"a":[' + "0," * 100001 + "0]}}",
        '{"action":"randomNumber"}',
    ])
    for env in (deep, deep_data):
        assert env["status"] == 400, env
        assert env["errors"] == ["invalid JSON: nested deeper than general.jsonMaxDepth (64)"]
    assert many["status"] == 400, many
    assert many["errors"] == ["invalid JSON: more than general.jsonMaxElements (100000) values"]
    assert ok["status"] == 200, ok


# -- pcre2 match limits --------------------------------------------------------------------

def test_route_regex_that_backtracks_is_no_match_while_others_are_served(g):
    served, stop = [], threading.Event()

    def other_client():
        while not stop.is_set() and len(served) < 200:
            t = time.monotonic()
            status, _ = g.get("/api/randomNumber")
            served.append((status, time.monotonic() - t))

    th = threading.Thread(target=other_client)
    th.start()
    try:
        for _ in range(20):
            r = g.request("GET", "/api/bomb/" + BOMB)
            assert r.status == 404, (r.status, r.body[:300])
    finally:
        stop.set()
        th.join(gw.bound(10))
    assert served and all(s == 200 for s, _ in served)
    assert max(t for _, t in served) < gw.bound(1.0)
    status, body = g.get("/api/bomb/aaaa")
    assert status == 200, body


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_handler_route_that_backtracks_is_no_match(g, transport):
    bomb, ok = gw.exchange(g, transport, [
        {"route": "bomb/" + BOMB, "action": "show"},
        {"route": "bomb/aaaa", "action": "show"},
    ], timeout=gw.bound(5))
    assert bomb["status"] == 404, bomb
    assert ok["status"] == 200 and ok["data"] == {"matched": True}, ok


def test_api_regex_raises_at_the_match_limit(g):
    status, body = g.get("/api/regex_probe?s=" + BOMB)
    assert status == 200, body
    assert body["ok"] is False
    assert "backtracks too much" in body["err"], body
    status, body = g.get("/api/regex_probe?s=aaa")
    assert status == 200 and body["ok"] is True, body


def test_validator_regex_at_the_match_limit_fails_validation(g):
    status, body = g.get("/api/regex_validated?s=" + BOMB)
    assert status in (400, 422), (status, body)
    assert gw.has_error(body, "must be a's"), body
    status, body = g.get("/api/regex_validated?s=aaa")
    assert status == 200 and body["s"] == "aaa", body
