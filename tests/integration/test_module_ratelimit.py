"""The example `ratelimit` C module (examples/modules/ratelimit): a token bucket per client in
Redis, spent by one EVAL from a global C middleware. Capacity, then 429 with Retry-After; the
X-RateLimit-* headers; refill; buckets per parameter; the WebSocket envelope; opt-in middleware
with global = false; fail-open (and failClosed) while Redis is unreachable or too slow; a check
cancelled by a client leaving or actionTimeout. Marked `asan`: `make test-asan` runs them again
against the sanitizer build. `make test` builds the module."""

import asyncio
import contextlib
import json
import math
import os
import socket
import time
import urllib.parse
import uuid

import pytest

import gateway as gw
from test_module_api import writes_paused


pytestmark = pytest.mark.asan

RATELIMIT_SO = os.path.join(gw.REPO, "build", "modules", "ratelimit.so")
RATELIMIT_ACTIONS = os.path.join(gw.HERE, "ratelimit_actions")
WARNING = "cannot check the rate limit"


@pytest.fixture(scope="module")
def ratelimit_so():
    if not os.path.exists(RATELIMIT_SO):
        pytest.fail("%s not built (run `make modules`)" % RATELIMIT_SO, pytrace=False)
    return RATELIMIT_SO


@pytest.fixture
def prefix():
    """A bucket prefix of the test's own, so no test sees another's buckets."""
    return "itest:ratelimit:%s:" % uuid.uuid4().hex[:10]


def _config(workdir, redis_url, module_config, redis=None, general=None):
    config = gw.default_config(str(workdir), redis_url,
                               actions=[RATELIMIT_ACTIONS, gw.EXAMPLE_ACTIONS], middleware=[])
    config["modules"] = [{"name": "ratelimit", "path": RATELIMIT_SO, "config": module_config}]
    if redis:
        config["redis"] = dict(config.get("redis", {}), **redis)
    config["general"].update(general or {})
    return config


def _redis(url, *args):
    """One command on a connection of its own -> the reply (text)."""
    u = urllib.parse.urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(gw.resp_encode(*args))
        return gw.resp_read(s.makefile("rb"), text=True)


@contextlib.contextmanager
def _redis_held(url):
    """Within the block, the Redis at 'url' holds every write command (the bucket's EVAL is
    one) until the block ends; see writes_paused."""
    u = urllib.parse.urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as side:
        with writes_paused(side) as blocked_clients:
            yield blocked_clients


def _limit_headers(r):
    return r.headers.get("X-RateLimit-Limit"), r.headers.get("X-RateLimit-Remaining")


def _warnings(g):
    return [line for line in g.log_lines() if WARNING in line]


def _wait_limited(g, timeout=5.0):
    """Poll until a request carries the limit headers again (Redis is back)."""
    deadline = time.monotonic() + timeout
    while True:
        r = g.request("GET", "/api/randomNumber")
        if r.headers.get("X-RateLimit-Limit"):
            return r
        assert time.monotonic() < deadline, "not limited again after %.0f s\n%s" % (
            timeout, g.describe())
        time.sleep(0.05)


# -- the bucket ---------------------------------------------------------------------------

def test_capacity_then_429(make_gateway, tmp_path, redis_url, ratelimit_so, prefix):
    # One token every 5 s: none comes back within the test (checked below).
    g = make_gateway(config=_config(tmp_path, redis_url, {
        "capacity": 5, "refillPerSecond": 0.2, "prefix": prefix}))
    seen = []
    t0 = time.monotonic()
    for _ in range(5):
        r = g.request("GET", "/api/randomNumber")
        assert r.status == 200, r.body
        seen.append(_limit_headers(r))
    r = g.request("GET", "/api/randomNumber")
    elapsed = time.monotonic() - t0  # at least the time between the first and the last check
    assert elapsed < 5, "six requests took %.1f s: a token came back meanwhile" % elapsed
    assert seen == [("5", str(n)) for n in (4, 3, 2, 1, 0)], seen

    assert r.status == 429, r.body
    assert gw.error_text(r.json()) == "rate limit exceeded", r.body
    assert _limit_headers(r) == ("5", "0"), dict(r.headers)
    # Retry-After is the time until the next token: 5 s less the 0.2 token per second that
    # came back since the first request, rounded up to whole seconds.
    retry_after = int(r.headers.get("Retry-After"))
    assert math.ceil(5 - elapsed) <= retry_after <= 5, (retry_after, elapsed)

    # The bucket is one hash under the prefix, gone once it would be full again: 25 s after
    # the first request (each token spent 5 s before it is back).
    key = prefix + "ip:127.0.0.1"
    bucket = _redis(redis_url, "HGETALL", key)
    assert bucket[0::2] == ["tokens", "ts"] and float(bucket[1]) < 1, bucket
    pttl = _redis(redis_url, "PTTL", key)
    since_first = time.monotonic() - t0
    assert 25000 - 1000 * since_first - 5 <= pttl <= 25000, (pttl, since_first)
    assert g.wait_for_log(r"loaded: 5 requests, refilled at 0\.2/s, per ip.*module=ratelimit")


def test_refill(make_gateway, tmp_path, redis_url, ratelimit_so, prefix):
    # Two tokens, one more every 500 ms. Each expectation below holds while the calls it
    # covers fit in a window (measured on this side, which can only overstate the time Redis
    # saw); on a machine too slow for one, the sequence starts again on a fresh bucket.
    rate = 2.0
    g = make_gateway(config=_config(tmp_path, redis_url, {
        "capacity": 2, "refillPerSecond": rate, "prefix": prefix}))
    key = prefix + "ip:127.0.0.1"

    def call():
        r = g.request("GET", "/api/randomNumber")
        return r.status, r.headers.get("X-RateLimit-Remaining"), r.headers.get("Retry-After")

    def within(since, seconds):
        return time.monotonic() - since < seconds

    drained = [(200, "1", None), (200, "0", None), (429, "0", "1")]
    too_slow = []
    for _ in range(3):
        _redis(redis_url, "DEL", key)  # a missing bucket is a full one
        # Two tokens spent, the third call refused: less than one token came back meanwhile.
        t1 = time.monotonic()
        first = [call() for _ in range(3)]
        if not within(t1, 1 / rate):
            too_slow.append("the first three calls")
            continue
        assert first == drained, first
        # A token and a bit later (the point of this sleep), one call passes and leaves none:
        # fewer than two tokens can have come back since the first call.
        time.sleep(1 / rate + 0.1)
        second = [call() for _ in range(2)]
        if not within(t1, 2 / rate):
            too_slow.append("the refill")
            continue
        assert second == [(200, "0", None), (429, "0", "1")], second
        # Idle until it is full again (the script expires a bucket then): no more than the
        # capacity, however long the wait.
        deadline = time.monotonic() + 10
        while _redis(redis_url, "EXISTS", key) == 1:
            assert time.monotonic() < deadline, "the bucket never expired"
            time.sleep(0.05)
        t3 = time.monotonic()
        third = [call() for _ in range(3)]
        if not within(t3, 1 / rate):
            too_slow.append("the last three calls")
            continue
        assert third == drained, third
        return
    pytest.fail("the machine was too slow for the test's windows three times: %s" % too_slow)


def test_buckets_per_parameter(make_gateway, tmp_path, redis_url, ratelimit_so, prefix):
    g = make_gateway(config=_config(tmp_path, redis_url, {
        "capacity": 2, "refillPerSecond": 0.1, "prefix": prefix, "keyBy": "param:apiKey"}))

    def call(query):
        r = g.request("GET", "/api/randomNumber" + query)
        return r.status, r.headers.get("X-RateLimit-Remaining")

    assert [call("?apiKey=a") for _ in range(3)] == [(200, "1"), (200, "0"), (429, "0")]
    assert call("?apiKey=b") == (200, "1")
    assert call("") == (200, "1")  # without the parameter: the bucket of the address
    for key in ("param:apiKey:a", "param:apiKey:b", "ip:127.0.0.1"):
        assert _redis(redis_url, "EXISTS", prefix + key) == 1, key


def test_websocket_gets_the_429_envelope(make_gateway, tmp_path, redis_url, ratelimit_so,
                                         prefix):
    g = make_gateway(config=_config(tmp_path, redis_url, {
        "capacity": 2, "refillPerSecond": 0.1, "prefix": prefix}))
    answers = gw.exchange(g, "ws", [{"action": "randomNumber", "request_id": i}
                                    for i in range(3)])
    assert [a["status"] for a in answers] == [200, 200, 429], answers
    assert answers[2]["errors"] == ["rate limit exceeded"], answers[2]
    assert answers[2]["data"] is None and answers[2]["request_id"] == 2, answers[2]


def test_not_global_limits_only_actions_listing_it(make_gateway, tmp_path, redis_url,
                                                   ratelimit_so, prefix):
    g = make_gateway(config=_config(tmp_path, redis_url, {
        "capacity": 1, "refillPerSecond": 0.1, "prefix": prefix, "global": False}))
    for _ in range(3):
        r = g.request("GET", "/api/randomNumber")
        assert r.status == 200 and _limit_headers(r) == (None, None), (r.status, dict(r.headers))
    r = g.request("GET", "/api/rateLimited")
    assert r.status == 200 and _limit_headers(r) == ("1", "0"), (r.status, dict(r.headers))
    assert g.request("GET", "/api/rateLimited").status == 429


# -- Redis unreachable or slow ------------------------------------------------------------

def test_fail_open_while_redis_is_down(make_gateway, tmp_path, ratelimit_so, prefix,
                                       private_redis):
    redis = private_redis(start=False)  # its unix socket, not listening yet
    g = make_gateway(config=_config(tmp_path, None, {
        "capacity": 1, "refillPerSecond": 0.1, "prefix": prefix},
        redis={"url": redis.url()}))
    for _ in range(3):
        r = g.request("GET", "/api/randomNumber")
        assert r.status == 200 and _limit_headers(r) == (None, None), (r.status, r.body)
    warnings = _warnings(g)
    assert len(warnings) == 1, warnings  # one per outage, not one per request
    assert "letting requests through" in warnings[0], warnings

    redis.start()
    assert _wait_limited(g).status == 200  # the one token
    assert g.request("GET", "/api/randomNumber").status == 429
    assert g.wait_for_log(r"Redis answers again.*module=ratelimit"), g.log_text()


def test_fail_closed_while_redis_is_down(make_gateway, tmp_path, ratelimit_so):
    g = make_gateway(config=_config(tmp_path, None, {"failClosed": True},
                                    redis={"url": "unix://" + str(tmp_path / "no-redis.sock")}))
    for _ in range(2):
        status, body = g.get("/api/randomNumber")
        assert status == 503, body
        assert gw.error_text(body) == "redis unavailable", body
    warnings = _warnings(g)
    assert len(warnings) == 1 and "failing requests with 503" in warnings[0], warnings


def test_redis_timeout(make_gateway, tmp_path, redis_url, ratelimit_so, prefix):
    fast = {"commandTimeout": 200}
    g_open = make_gateway(config=_config(tmp_path, redis_url, {"prefix": prefix},
                                         redis=fast))
    g_closed = make_gateway(config=_config(tmp_path, redis_url, {
        "prefix": prefix, "failClosed": True}, redis=fast))
    with _redis_held(redis_url):
        r = g_open.request("GET", "/api/randomNumber")
        assert r.status == 200 and _limit_headers(r) == (None, None), (r.status, r.body)
        status, body = g_closed.get("/api/randomNumber")
        assert status == 503 and gw.error_text(body) == "redis unavailable", body
    for g in (g_open, g_closed):
        assert "(redis timeout)" in "".join(_warnings(g)), g.log_text()
        assert _wait_limited(g).status == 200


def test_check_cancelled_when_the_request_ends_first(make_gateway, tmp_path, redis_url,
                                                     ratelimit_so, prefix):
    g = make_gateway(config=_config(tmp_path, redis_url, {"prefix": prefix},
                                    general={"actionTimeout": 300}))
    cancelled = r"rate limit check cancelled.*module=ratelimit"

    # actionTimeout passes while Redis holds the EVAL.
    with _redis_held(redis_url) as blocked_clients:
        started = time.monotonic()
        status, body = g.get("/api/randomNumber")
        assert status == 504, body
        assert gw.error_text(body) == "action timed out", body
        assert time.monotonic() - started < gw.bound(0.9)
        assert g.wait_for_log(cancelled), g.log_text()
        assert blocked_clients() == 1  # the EVAL is still held: its reply comes later
    # The late reply is dropped; the next request gets its own.
    r = g.request("GET", "/api/randomNumber")
    assert r.status == 200 and r.headers.get("X-RateLimit-Limit") == "10", dict(r.headers)

    # A WebSocket client leaves while Redis holds its EVAL.
    offset = g.log_size()
    with _redis_held(redis_url) as blocked_clients:
        def held():
            deadline = time.monotonic() + 10
            while blocked_clients() == 0:
                assert time.monotonic() < deadline, "the EVAL never reached Redis"
                time.sleep(0.02)

        async def leave():
            async with g.ws_connect() as ws:
                await ws.send(json.dumps({"action": "randomNumber"}))
                await asyncio.to_thread(held)
            # closed with the EVAL still held in Redis

        asyncio.run(asyncio.wait_for(leave(), 20))
        assert g.wait_for_log(cancelled, since=offset), g.log_text()
    r = g.request("GET", "/api/randomNumber")
    assert r.status == 200 and r.headers.get("X-RateLimit-Limit") == "10", dict(r.headers)
    assert not _warnings(g), g.log_text()


# -- configuration errors -----------------------------------------------------------------

@pytest.mark.parametrize("module_config, message", [
    ({"capacity": 0}, "capacity must be a positive integer"),
    ({"refillPerSecond": -1}, "refillPerSecond must be a positive number"),
    ({"keyBy": "cookie"}, 'keyBy must be "ip" or "param:<name>", not "cookie"'),
])
def test_bad_config_stops_the_start(tmp_path, redis_url, ratelimit_so, module_config, message):
    path = gw.write_config(str(tmp_path / "gateway.lua"),
                           _config(tmp_path, redis_url, module_config))
    res = gw.run_cli(["--config", path, "--check"], timeout=10)
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert message in out and 'module "ratelimit": gateway_module_init failed' in out, out


def test_config_value_of_the_wrong_type_is_named(tmp_path, redis_url, ratelimit_so):
    # gateway_config_number: a string where a number belongs falls back to the default, and
    # the log says which key (a typo'd type is not silently ignored).
    path = gw.write_config(str(tmp_path / "gateway.lua"),
                           _config(tmp_path, redis_url, {"refillPerSecond": "0.5"}))
    res = gw.run_cli(["--config", path, "--check"], timeout=10)
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 0, out
    assert ("config.refillPerSecond must be a number, not string; using the default" in out
            and "module=ratelimit" in out), out
    assert "refilled at 5/s" in out, out
