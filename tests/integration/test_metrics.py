"""/metrics (issue 16, docs/operations.md): the Prometheus text format 0.0.4, read strictly
(promtext.py: HELP and TYPE before every family, label escapes, cumulative buckets); the
counters grow by exactly what was sent, over HTTP, WebSocket and TCP; names a client makes
up share one label value; the allow-list; the gauges; Redis's state, latency and errors;
worker restarts seen by the workers; answered before user middleware."""

import asyncio
import http.client
import json
import os
import re
import signal
import subprocess
import time

import pytest

import gateway as gw
import promtext

pytestmark = pytest.mark.asan

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_ACTIONS = os.path.join(HERE, "redis_actions")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(g, path="/metrics", headers=None):
    r = g.request("GET", path, headers=headers)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.headers["Content-Type"] == CONTENT_TYPE, r.headers
    samples, types, helps = promtext.parse(r.body.decode("utf-8"))
    promtext.check_histograms(samples, types)
    return samples, types


def requests_total(samples, action, transport, status):
    return promtext.value(samples, "gateway_requests_total", action=action, transport=transport,
                          status=str(status))


def duration_count(samples, action, transport):
    return promtext.value(samples, "gateway_request_duration_seconds_count", action=action,
                          transport=transport)


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_every_family_is_announced_and_typed(make_gateway):
    g = make_gateway()
    assert g.get("/api/randomNumber")[0] == 200
    samples, types = scrape(g)
    expected = {
        "gateway_requests_total": "counter",
        "gateway_request_duration_seconds": "histogram",
        "gateway_open_connections": "gauge",
        "gateway_pending_actions": "gauge",
        "gateway_redis_connected": "gauge",
        "gateway_redis_command_duration_seconds": "histogram",
        "gateway_redis_errors_total": "counter",
        "gateway_lua_memory_bytes": "gauge",
        "gateway_worker_restarts_total": "counter",
        "gateway_worker_info": "gauge",
        "gateway_process_start_time_seconds": "gauge",
        "gateway_uptime_seconds": "gauge",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, (name, types)
    assert promtext.value(samples, "gateway_lua_memory_bytes") > 10000
    start = promtext.value(samples, "gateway_process_start_time_seconds")
    assert abs(start - time.time()) < 600, start
    assert promtext.value(samples, "gateway_uptime_seconds") >= 0
    assert promtext.value(samples, "gateway_worker_restarts_total") == 0
    (info,) = promtext.series(samples, "gateway_worker_info")
    assert info[0]["worker"] == "-1" and int(info[0]["pid"]) == g.pid, info
    # The scrape's own connection is open; HEAD answers the head only.
    assert promtext.value(samples, "gateway_open_connections", type="web") >= 1
    r = g.request("HEAD", "/metrics")
    assert r.status == 200 and r.body == b"" and r.headers["Content-Type"] == CONTENT_TYPE


def test_counters_grow_by_exactly_what_was_sent(make_gateway):
    g = make_gateway()
    before, _ = scrape(g)
    for _ in range(3):
        assert g.get("/api/randomNumber")[0] == 200
    for name in ("nope1", "nope2"):
        assert g.get("/api/" + name)[0] == 404
    assert g.get("/api/fail_string")[0] == 400
    assert g.get("/elsewhere")[0] == 404  # not under /api: no action ran
    after, _ = scrape(g)

    def delta(action, status):
        return requests_total(after, action, "web", status) - requests_total(before, action, "web", status)

    assert delta("randomNumber", 200) == 3
    assert delta("", 404) == 3  # two unknown names and the path outside /api
    assert delta("fail_string", 400) == 1
    assert duration_count(after, "randomNumber", "web") - duration_count(before, "randomNumber", "web") == 3
    # A name nobody loaded does not become a label value.
    assert not [s for s in promtext.series(after, "gateway_requests_total") if "nope" in s[0]["action"]]
    # The scrape and static answers are not actions.
    assert not [s for s in promtext.series(after, "gateway_requests_total") if s[0]["action"] == "metrics"]
    total = sum(v for _, v in promtext.series(after, "gateway_request_duration_seconds_count"))
    assert total >= 5


def test_many_unknown_names_share_one_series(make_gateway):
    g = make_gateway()
    for i in range(40):
        assert g.get("/api/made-up-%d" % i)[0] == 404
    samples, _ = scrape(g)
    labels = [s[0] for s in promtext.series(samples, "gateway_requests_total")]
    assert [l for l in labels if l["status"] == "404"] == [{"action": "", "transport": "web", "status": "404"}]
    assert requests_total(samples, "", "web", 404) == 40


def test_websocket_and_socket_messages(make_gateway):
    g = make_gateway({"servers": {"socket": {"enabled": True, "port": 0}}})

    async def go():
        async with g.ws_connect() as ws:
            for i in range(2):
                await ws.send(json.dumps({"action": "randomNumber", "request_id": i}))
                assert json.loads(await ws.recv())["status"] == 200
            await ws.send("not json")
            assert json.loads(await ws.recv())["status"] == 400
            await ws.send(json.dumps({"action": "nope"}))
            assert json.loads(await ws.recv())["status"] == 404
            samples, _ = scrape(g)  # while it is open
            return samples

    during = run(go())
    assert promtext.value(during, "gateway_open_connections", type="websocket") == 1
    assert requests_total(during, "randomNumber", "websocket", 200) == 2
    assert requests_total(during, "", "websocket", 400) == 1
    assert requests_total(during, "", "websocket", 404) == 1
    assert duration_count(during, "randomNumber", "websocket") == 2

    with g.line_client() as c:
        assert c.call("randomNumber")["status"] == 200
        assert c.call('{"action":"randomNumber"}')["status"] == 200
        samples, _ = scrape(g)
        assert promtext.value(samples, "gateway_open_connections", type="socket") == 1
    assert requests_total(samples, "randomNumber", "socket", 200) == 2
    deadline = time.monotonic() + gw.bound(3)
    while True:
        samples, _ = scrape(g)
        if promtext.value(samples, "gateway_open_connections", type="websocket") == 0 and \
                promtext.value(samples, "gateway_open_connections", type="socket") == 0:
            break
        assert time.monotonic() < deadline, "connections still counted as open"
        time.sleep(0.05)


def test_pending_actions_gauge(make_gateway):
    g = make_gateway()
    offset = g.log_size()
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(g.request("GET", "/api/sleepTest?sleepDuration=600")))
    t.start()
    assert g.wait_for_log(r"connLogger create", since=offset)
    samples, _ = scrape(g)
    t.join(10)
    assert out and out[0].status == 200
    assert promtext.value(samples, "gateway_pending_actions") == 1
    samples, _ = scrape(g)
    assert promtext.value(samples, "gateway_pending_actions") == 0


def test_allow_list(make_gateway):
    g = make_gateway({"servers": {"web": {"metrics": {"allow": ["10.0.0.0/8", "fd00::/8"]}}}})
    r = g.request("GET", "/metrics")
    assert r.status == 403, r
    assert "servers.web.metrics.allow" in r.json()["error"]
    g.assert_serving()  # the connection was kept and nothing else changed
    g2 = make_gateway({"servers": {"web": {"metrics": {"allow": ["127.0.0.1"]}}}})
    scrape(g2)


def test_path_and_switch(make_gateway):
    g = make_gateway({"servers": {"web": {"metrics": {"path": "/internal/prom"}}}})
    scrape(g, "/internal/prom")
    assert g.request("GET", "/metrics").status == 404
    off = make_gateway({"servers": {"web": {"metrics": {"enabled": False}}}})
    assert off.request("GET", "/metrics").status == 404


@pytest.mark.parametrize("key,value,why", [
    ("metrics", {"allow": ["localhost"]}, '"localhost" is not an IPv4 or IPv6 address'),
    ("metrics", {"allow": ["10.0.0.0/33"]}, "the prefix length must be 0 to 32"),
    ("trustedProxies", ["::1/129"], "the prefix length must be 0 to 128"),
    ("metrics", {"path": "metrics"}, "must start with '/'"),
    ("healthPath", "health", "must start with '/'"),
])
def test_bad_operations_keys_are_startup_errors(make_gateway, key, value, why):
    g = make_gateway({"servers": {"web": {key: value}}}, start=False)
    gw.write_config(g.config_path, g.config)
    p = subprocess.run(g.command() + ["--check"], capture_output=True, text=True, timeout=gw.bound(10))
    assert p.returncode == 1, p
    assert "servers.web." in p.stderr and why in p.stderr, p.stderr


def test_user_middleware_does_not_see_it(make_gateway, tmp_path):
    mw = tmp_path / "deny_all"
    mw.mkdir()
    (mw / "deny.lua").write_text(
        'return { name = "apiKey", global = true, preProcessor = function(data, next)\n'
        '  next({ status = 401, message = "api key required" }) end }\n')
    g = make_gateway({"paths": {"middleware": [gw.TEST_MIDDLEWARE, str(mw)]}})
    assert g.get("/api/randomNumber")[0] == 401
    samples, _ = scrape(g)
    assert requests_total(samples, "randomNumber", "web", 401) == 1


def test_redis_state_latency_and_errors(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, REDIS_ACTIONS]},
                      "redis": {"url": r.url()}})
    deadline = time.monotonic() + gw.bound(5)
    while g.get("/api/redisConnected")[1].get("connected") is not True:
        assert time.monotonic() < deadline, g.describe()
        time.sleep(0.02)
    before, _ = scrape(g)
    assert promtext.value(before, "gateway_redis_connected") == 1
    for i in range(4):
        assert g.json("POST", "/api/redisRun", {"command": "SET", "args": ["m:k%d" % i, "v"]})[0] == 200
    # An error reply: INCR on text.
    g.json("POST", "/api/redisRun", {"command": "INCR", "args": ["m:k0"], "mode": "pcall"})
    after, _ = scrape(g)
    count = "gateway_redis_command_duration_seconds_count"
    assert promtext.value(after, count) - promtext.value(before, count) >= 5
    assert promtext.value(after, "gateway_redis_errors_total", kind="reply") - \
        promtext.value(before, "gateway_redis_errors_total", kind="reply") == 1

    r.stop()
    deadline = time.monotonic() + gw.bound(5)
    while True:
        down, _ = scrape(g)
        if promtext.value(down, "gateway_redis_connected") == 0:
            break
        assert time.monotonic() < deadline, g.describe()
        time.sleep(0.05)
    status, _ = g.json("POST", "/api/redisRun", {"command": "GET", "args": ["m:k1"]})
    assert status == 503
    down2, _ = scrape(g)
    assert promtext.value(down2, "gateway_redis_errors_total", kind="unavailable") > \
        promtext.value(after, "gateway_redis_errors_total", kind="unavailable")


def test_worker_restarts_are_seen_by_every_worker(make_gateway):
    g = make_gateway({"workers": 2})
    deadline = time.monotonic() + gw.bound(10)
    while len(g.children()) < 2:
        assert time.monotonic() < deadline, g.describe()
        time.sleep(0.05)
    victim = g.children()[0]
    offset = g.log_size()
    os.kill(victim, signal.SIGKILL)
    assert g.wait_for_log(r"worker \d \(pid %d\) exited" % victim, since=offset, timeout=gw.bound(5))
    assert g.wait_for_log(r"worker \d started", since=offset, timeout=gw.bound(5))
    # Each scrape is one worker's (new connections spread over them): both say 1.
    seen = set()
    deadline = time.monotonic() + gw.bound(10)
    while len(seen) < 2:
        samples, _ = scrape(g)
        assert promtext.value(samples, "gateway_worker_restarts_total") == 1
        (info,) = promtext.series(samples, "gateway_worker_info")
        seen.add(info[0]["worker"])
        assert time.monotonic() < deadline, "one worker never answered: %r" % seen
    assert seen == {"0", "1"}


def metrics_listener(g):
    """(host, port) of the `listening metrics http://...` line."""
    deadline = time.monotonic() + gw.bound(5)
    while True:
        for line in g.stdout_text().splitlines():
            m = re.match(r"listening metrics http://\[?([^\]]+?)\]?:(\d+)$", line)
            if m:
                return m.group(1), int(m.group(2))
        assert time.monotonic() < deadline, g.describe()
        time.sleep(0.02)


def ops_request(host, port, method, path):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_listener_of_its_own(make_gateway, workers):
    g = make_gateway({"workers": workers, "servers": {"web": {"metrics": {"port": 0}}}})
    host, port = metrics_listener(g)
    assert host == "127.0.0.1" and port != g.port
    assert g.get("/api/randomNumber")[0] == 200
    status, headers, body = ops_request(host, port, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    samples, types, _ = promtext.parse(body.decode())
    promtext.check_histograms(samples, types)
    if workers == 1:
        assert requests_total(samples, "randomNumber", "web", 200) == 1
    assert ops_request(host, port, "GET", "/health")[0] == 200
    assert ops_request(host, port, "GET", "/ready")[0] in (200, 503)
    # Nothing else there, and no /metrics on the web listener any more.
    status, _, body = ops_request(host, port, "GET", "/api/randomNumber")
    assert status == 404 and json.loads(body)["error"] == "not found"
    assert ops_request(host, port, "GET", "/ws")[0] == 404
    assert g.request("GET", "/metrics").status == 404
    assert g.request("GET", "/health").status == 200
    # The web listener's 404 for /metrics is counted; the metrics listener's are not.
    if workers == 1:
        status, _, body = ops_request(host, port, "GET", "/metrics")
        samples, _, _ = promtext.parse(body.decode())
        assert requests_total(samples, "", "web", 404) == 1


def test_metrics_listener_keeps_the_allow_list(make_gateway):
    g = make_gateway({"servers": {"web": {"metrics": {"port": 0, "allow": ["10.0.0.0/8"]}}}})
    host, port = metrics_listener(g)
    assert ops_request(host, port, "GET", "/metrics")[0] == 403
    assert ops_request(host, port, "GET", "/health")[0] == 200


def test_metrics_port_in_use_is_a_startup_error(make_gateway):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        g = make_gateway({"servers": {"web": {"metrics": {"port": port}}}}, start=False, expect_exit=1)
        with pytest.raises(gw.PortInUse):
            g.start()
        assert g.wait(10) == 1
