"""/health and /ready (issue 16, docs/operations.md): liveness answers 200 while the
process serves; readiness 200 only while Redis is connected and the server is not
draining, else 503 with the reasons; both before user middleware (an API-key middleware
must not turn a load balancer away), at configurable paths, and not counted as actions."""

import json
import os
import signal
import threading
import time

import pytest

import gateway as gw
import promtext

pytestmark = pytest.mark.asan

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_ACTIONS = os.path.join(HERE, "redis_actions")

READY = {"status": "ready", "redis": True, "draining": False}


def wait_ready(g, want, timeout=5):
    deadline = time.monotonic() + gw.bound(timeout)
    while True:
        r = g.request("GET", "/ready")
        if r.status == want:
            return r
        assert time.monotonic() < deadline, "no %d from /ready: %r\n%s" % (want, r, g.describe())
        time.sleep(0.05)


def test_health_and_ready(make_gateway):
    g = make_gateway()
    r = g.request("GET", "/health")
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-store"
    assert wait_ready(g, 200).json() == READY
    r = g.request("HEAD", "/health")
    assert r.status == 200 and r.body == b""
    # Keep-alive: several checks over one connection.
    c = g.client()
    try:
        for _ in range(3):
            assert c.request("GET", "/health").status == 200
            assert c.request("GET", "/ready").status == 200
    finally:
        c.close()
    # Another method is not the endpoint: it goes on to the routes (404 here).
    assert g.request("POST", "/health").status == 404


def test_ready_follows_redis(make_gateway, private_redis):
    r = private_redis()
    g = make_gateway({"redis": {"url": r.url()}})
    wait_ready(g, 200)
    r.stop()
    body = wait_ready(g, 503).json()
    assert body == {"status": "unavailable", "redis": False, "draining": False,
                    "errors": ["redis is not connected"]}, body
    assert g.request("GET", "/health").status == 200  # alive all the same
    r.start(keep_port=True)
    assert wait_ready(g, 200, timeout=10).json() == READY


def test_ready_is_503_while_draining(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000}})
    idle = g.client()
    wait_ready(g, 200)
    assert idle.request("GET", "/ready").status == 200
    out = []
    offset = g.log_size()
    t = threading.Thread(target=lambda: out.append(g.request("GET", "/api/sleepTest?sleepDuration=900",
                                                             timeout=10)))
    t.start()
    assert g.wait_for_log(r"connLogger create", since=offset), g.describe()
    offset = g.log_size()
    g.signal(signal.SIGTERM)
    assert g.wait_for_log(r"shutting down: waiting for 1 in-flight actions", since=offset), g.describe()
    r = idle.request("GET", "/ready")
    assert r.status == 503, r
    assert r.json() == {"status": "unavailable", "redis": True, "draining": True,
                        "errors": ["the server is shutting down"]}
    assert r.headers["Connection"] == "close"
    idle.close()
    t.join(10)
    assert out and out[0].status == 200
    assert g.wait(10) == 0


def test_middleware_that_refuses_everything_does_not_block_them(make_gateway, tmp_path):
    mw = tmp_path / "deny_all"
    mw.mkdir()
    (mw / "deny.lua").write_text(
        'return { name = "apiKey", global = true, preProcessor = function(data, next)\n'
        '  next({ status = 401, message = "api key required" }) end }\n')
    g = make_gateway({"paths": {"middleware": [gw.TEST_MIDDLEWARE, str(mw)]}})
    assert g.get("/api/randomNumber")[0] == 401
    assert g.request("GET", "/health").status == 200
    assert wait_ready(g, 200).json() == READY
    assert g.request("GET", "/metrics").status == 200


def test_paths_are_configurable_and_can_be_off(make_gateway):
    g = make_gateway({"servers": {"web": {"healthPath": "/livez", "readyPath": "/readyz"}}})
    assert g.request("GET", "/livez").status == 200
    wait_ready_path = g.request("GET", "/readyz")
    assert wait_ready_path.status in (200, 503)
    assert g.request("GET", "/health").status == 404
    assert g.request("GET", "/ready").status == 404
    off = make_gateway({"servers": {"web": {"healthPath": "", "readyPath": ""}}})
    assert off.request("GET", "/health").status == 404
    assert off.request("GET", "/ready").status == 404


def test_not_counted_as_actions(make_gateway):
    g = make_gateway()
    for path in ("/health", "/ready", "/health", "/metrics"):
        g.request("GET", path)
    r = g.request("GET", "/metrics")
    samples, _, _ = promtext.parse(r.body.decode())
    assert promtext.series(samples, "gateway_requests_total") == []
    # Nor logged as actions.
    assert "path=/health" not in g.log_text()


def test_pipelined_and_http10(make_gateway):
    g = make_gateway()
    wait_ready(g, 200)
    raw = g.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = [int(s) for s in __import__("re").findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert statuses == [200, 200, 200, 200, 200], raw[:2000]
    assert raw.count(b'{"status":"ok"}') == 2 and b"gateway_requests_total" in raw
    # HTTP/1.0 without keep-alive: answered, then closed.
    raw = g.raw(b"GET /health HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in raw
    assert raw.endswith(b'{"status":"ok"}')
