"""Slow and idle HTTP clients (issue 14): servers.web.headerTimeout, bodyTimeout, minBodyRate,
keepAliveTimeout and sendTimeout. Hundreds of connections trickling a head or a body, one byte at
a time, do not keep a fresh client from being served, and each gets 408 and is closed within its
bound. The timeouts are short here to keep the tests fast; the sweep checks them once a second.
"""

import selectors
import socket
import time

import pytest

import gateway as gw

SLOW = 150  # connections of each kind
TICK = 0.5  # seconds between two bytes of a slow client
HEAD = b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n"
BODY_HEAD = (b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100000\r\n\r\n")


class Slow:
    """A client that sends 'first', then one byte every TICK, and records what it reads."""

    def __init__(self, g, first, byte):
        self.sock = socket.create_connection((g.host, g.port), timeout=5)
        self.sock.setblocking(False)
        self.sock.send(first)
        self.byte = byte
        self.opened = time.monotonic()
        self.data = b""
        self.closed_at = None

    def tick(self):
        if self.closed_at is None:
            try:
                self.sock.send(self.byte)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass

    def readable(self):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.closed_at = time.monotonic()


def run_slow(g, clients, deadline_s, fresh_every=1.0):
    """Tick the slow clients until every one is closed or 'deadline_s' passes; meanwhile a
    fresh client asks for /api/randomNumber every 'fresh_every' seconds. Returns the
    durations of the fresh requests."""
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    fresh = []
    start = time.monotonic()
    next_tick = next_fresh = start
    try:
        while any(c.closed_at is None for c in clients) and time.monotonic() - start < deadline_s:
            now = time.monotonic()
            if now >= next_tick:
                for c in clients:
                    c.tick()
                next_tick = now + TICK
            if now >= next_fresh:
                t0 = time.monotonic()
                status, body = g.get("/api/randomNumber")
                assert status == 200, body
                fresh.append(time.monotonic() - t0)
                next_fresh = time.monotonic() + fresh_every
            for key, _ in sel.select(timeout=0.05):
                c = key.data
                c.readable()
                if c.closed_at is not None:
                    sel.unregister(c.sock)
    finally:
        sel.close()
        for c in clients:
            c.sock.close()
    return fresh


def assert_408_within(clients, bound_s, message):
    for c in clients:
        assert c.closed_at is not None, "a slow client was not closed: %r" % c.data
        assert c.data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), c.data
        assert b"Connection: close" in c.data, c.data
        assert message.encode() in c.data, c.data
        assert c.closed_at - c.opened < bound_s, (c.closed_at - c.opened, c.data)


def timeouts(**kw):
    return {"servers": {"web": kw}}


@pytest.mark.asan
def test_slow_heads_and_bodies_do_not_hold_the_worker(make_gateway):
    # 150 heads that never end (headerTimeout 1 s) and 150 bodies at 2 bytes/s (under
    # minBodyRate, caught after the 5 s grace; bodyTimeout is not reached between bytes).
    g = make_gateway(timeouts(headerTimeout=1000, bodyTimeout=3000, minBodyRate=1024))
    heads = [Slow(g, HEAD, b"X") for _ in range(SLOW)]
    bodies = [Slow(g, BODY_HEAD + b"{", b" ") for _ in range(SLOW)]
    fresh = run_slow(g, heads + bodies, deadline_s=gw.bound(15))
    assert fresh, "no fresh request was made"
    assert max(fresh) < gw.bound(1), fresh
    # headerTimeout + a sweep (1 s) + slack; the body: its first sweep + 5 s grace + a sweep.
    assert_408_within(heads, gw.bound(3), "request header timeout")
    assert_408_within(bodies, gw.bound(9), "request body timeout")
    g.assert_serving()


@pytest.mark.asan
def test_stalled_body_gets_408_after_body_timeout(make_gateway):
    g = make_gateway(timeouts(bodyTimeout=1000))
    stalled = [Slow(g, BODY_HEAD + b"{\"a\":", b"") for _ in range(20)]
    run_slow(g, stalled, deadline_s=gw.bound(6))
    assert_408_within(stalled, gw.bound(3), "request body timeout")


def test_fast_body_is_not_cut(make_gateway):
    # A body that keeps above minBodyRate past the grace period is read whole.
    g = make_gateway(timeouts(bodyTimeout=2000, minBodyRate=1024))
    body = b'{"a":"' + b"x" * 14000 + b'"}'
    with socket.create_connection((g.host, g.port), timeout=gw.bound(20)) as s:
        s.sendall(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 1000):  # ~2000 bytes/s for 7 s
            s.sendall(body[i:i + 1000])
            time.sleep(0.5)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer


@pytest.mark.asan
def test_silent_connection_closed_after_header_timeout(make_gateway):
    # A connection that sends nothing is closed without an answer (nothing was asked).
    g = make_gateway(timeouts(headerTimeout=1000))
    with socket.create_connection((g.host, g.port), timeout=gw.bound(5)) as s:
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < gw.bound(3)


@pytest.mark.asan
def test_idle_keep_alive_closed_after_keep_alive_timeout(make_gateway):
    g = make_gateway(timeouts(keepAliveTimeout=1000, headerTimeout=60000))
    with socket.create_connection((g.host, g.port), timeout=gw.bound(5)) as s:
        s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed, silently
        assert time.monotonic() - t0 < gw.bound(3)


def test_keep_alive_head_timer_starts_at_the_first_byte(make_gateway):
    # After a long idle wait (under keepAliveTimeout), the next request's head has its own
    # headerTimeout, counted from its first byte.
    g = make_gateway(timeouts(keepAliveTimeout=10000, headerTimeout=1500))
    with socket.create_connection((g.host, g.port), timeout=gw.bound(5)) as s:
        s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        time.sleep(2.5)
        s.sendall(b"GET /api/randomNumber HTTP/1.1\r\n")
        time.sleep(0.5)
        s.sendall(b"Host: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_client_not_reading_dropped_after_send_timeout(make_gateway):
    # A large static file the client never reads: closed after sendTimeout.
    g = make_gateway(timeouts(sendTimeout=1000), start=False)
    with open(g.config["paths"]["public"] + "/big.bin", "wb") as f:
        f.write(b"x" * (32 << 20))
    g.start()
    with socket.create_connection((g.host, g.port), timeout=gw.bound(10)) as s:
        s.sendall(b"GET /public/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(3.5)  # sendTimeout + a sweep + slack, reading nothing
        got = 0
        while True:
            try:
                chunk = s.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += len(chunk)
        assert got < 32 << 20, got  # cut short
    g.assert_serving()
