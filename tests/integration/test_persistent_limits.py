"""Limits of WebSocket and TCP clients that are slow, silent or greedy (issue 14): WebSocket
pings (servers.websocket.pingInterval, pongTimeout) and fragmentTimeout, fragment reassembly
bounded by maxMessageSize; TCP lineTimeout, idleTimeout, sticky params capped (maxParams,
maxParamBytes), half-close; client input that used to make a Lua pattern take quadratic time
(a TCP line, a multipart part header) answered without freezing the worker.

Limits are set short here; every wait is bounded, upper bounds on time go through gw.bound()."""

import asyncio
import json
import socket
import struct
import threading
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan


def run(coro, timeout=45):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tcp(overrides):
    return gw.deep_merge({"servers": {"socket": {"enabled": True, "port": 0}}}, overrides)


# -- linear-time parsing of client input ----------------------------------------------------

def _served_meanwhile(g, send_slow_input):
    """Send the slow input, then time a plain HTTP request to the same (single) worker."""
    send_slow_input()
    time.sleep(0.2)  # the worker has read it
    start = time.monotonic()
    g.assert_serving()
    return time.monotonic() - start


def test_tcp_line_of_spaces_does_not_freeze_the_worker(make_gateway):
    g = make_gateway(tcp({}))
    with g.line_client() as c:
        took = _served_meanwhile(g, lambda: c.send_line("x y" + " " * 60000 + "z"))
        assert took < gw.bound(1.0), "HTTP waited %.1f s behind one TCP line" % took
        env = c.read_json(timeout=gw.bound(2.0))
        assert env["status"] == 404 and env["action"] == "x", env
        assert env["errors"] == ["unknown action or invalid apiVersion"], env
        # A verb's argument keeps its inner spaces and loses the outer ones.
        answer = c.call("paramAdd a=b" + " " * 60000 + "c" + " " * 100)
        assert answer["status"] == "OK", answer
        assert c.call("paramView a")["data"] == "b" + " " * 60000 + "c"


def test_multipart_header_of_spaces_does_not_freeze_the_worker(make_gateway):
    g = make_gateway({})
    boundary = "gwBoundary7MA4YWxk"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: a%sb\r\n\r\nvalue\r\n"
            "--%s--\r\n" % (boundary, " " * 200000, boundary)).encode()
    result = {}

    def post():
        result["r"] = g.request("POST", "/api/echo_params", body,
                                {"Content-Type": "multipart/form-data; boundary=" + boundary},
                                timeout=60)

    t = threading.Thread(target=post)
    took = _served_meanwhile(g, t.start)
    t.join(60)
    assert took < gw.bound(1.0), "HTTP waited %.1f s behind one multipart body" % took
    r = result["r"]
    assert r.status == 200, r.body
    assert r.json()["params"]["a"] == "value", r.body
# -- TCP: sticky params ---------------------------------------------------------------------

def test_sticky_params_are_capped(make_gateway):
    g = make_gateway(tcp({"servers": {"socket": {"maxParams": 4, "maxParamBytes": 100}}}))
    with g.line_client() as c:
        for i in range(4):
            assert c.call("paramAdd k%d=v" % i)["status"] == "OK"
        assert c.call("paramAdd k4=v") == {
            "status": "error", "error": "too many sticky params (maxParams is 4)",
            "context": "response"}
        assert c.call("paramAdd k0=" + "x" * 90) == {
            "status": "error", "error": "sticky params too large (maxParamBytes is 100)",
            "context": "response"}
        assert c.call("paramsView")["data"] == {"k0": "v", "k1": "v", "k2": "v", "k3": "v"}
        assert c.call("paramDelete k3")["status"] == "OK"
        assert c.call("paramAdd k0=" + "x" * 80)["status"] == "OK"


# Under ASan, freed memory waits in a quarantine before reuse: a small one keeps VmRSS near
# what the gateway holds.
ASAN_ENV = {"ASAN_OPTIONS": "quarantine_size_mb=4"} if gw.is_sanitizer_build() else None


def test_sticky_param_flood_keeps_memory_bounded(make_gateway):
    g = make_gateway(tcp({"general": {"actionTimeout": 10000}}), env=ASAN_ENV)
    value = "v" * 1500
    with g.line_client() as c:
        assert c.call("paramAdd warm=up")["status"] == "OK"
        before = g.rss_kib()
        # 20000 params of 1.5 kB: 30 MB kept per connection without the caps.
        n, batch, answers = 20000, 500, []
        for start in range(0, n, batch):
            c.send("".join("paramAdd k%d=%s\n" % (i, value) for i in range(start, start + batch)))
            answers += [c.read_json() for _ in range(batch)]
        after = g.rss_kib()
        ok = [a for a in answers if a["status"] == "OK"]
        refused = [a for a in answers if a["status"] == "error"]
        assert len(ok) + len(refused) == n
        # maxParamBytes (64 KiB) is reached before maxParams (64).
        assert len(ok) < 64, len(ok)
        assert refused[0]["error"] == "sticky params too large (maxParamBytes is 65536)", refused[0]
        assert len(c.call("paramsView")["data"]) == len(ok) + 1
    assert after - before < 10 * 1024, "RSS grew by %d KiB" % (after - before)
    g.assert_serving()


# -- TCP: half-close --------------------------------------------------------------------------

def test_tcp_half_close_still_gets_the_answers(make_gateway):
    g = make_gateway(tcp({}))
    with g.line_client() as c:
        c.send('{"action": "sleepTest", "data": {"sleepDuration": 300}, "request_id": 1}\n'
               'paramAdd a=b\n'
               '{"action": "randomNumber", "request_id": 2}\n'
               'half a line, dropped')
        c.sock.shutdown(socket.SHUT_WR)
        answers = [c.read_json(timeout=gw.bound(3.0)) for _ in range(3)]
        assert c.wait_closed(gw.bound(2.0)), "not closed after the answers"
    assert answers[0] == {"status": "OK", "data": None, "context": "response"}, answers
    assert answers[1]["request_id"] == 2 and answers[1]["status"] == 200, answers
    assert answers[2]["request_id"] == 1 and answers[2]["status"] == 200, answers
    assert c.buf == b""


def test_tcp_half_close_with_nothing_in_flight_closes(make_gateway):
    g = make_gateway(tcp({}))
    with g.line_client() as c:
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(gw.bound(2.0))
    g.assert_serving()


# -- TCP: lineTimeout and idleTimeout -------------------------------------------------------

LINE_TIMEOUT = tcp({"servers": {"socket": {"lineTimeout": 500}}})


def test_tcp_half_line_gets_408_and_is_closed(make_gateway):
    g = make_gateway(LINE_TIMEOUT)
    offset = g.log_size()
    with g.line_client() as c:
        assert c.call('{"action": "randomNumber"}')["status"] == 200
        c.send('{"action": "randomNum')
        start = time.monotonic()
        env = c.read_json(timeout=gw.bound(0.5 + 2.0))
        took = time.monotonic() - start
        assert env == {"errors": ["line not completed within lineTimeout"], "data": None,
                       "action": "", "route": "", "status": 408}, env
        assert took >= 0.4, took
        assert c.wait_closed(gw.bound(2.0)), "not closed after the 408"
    g.wait_for_log(r"not completed within lineTimeout", since=offset)
    g.assert_serving()


def test_tcp_line_timeout_counts_from_the_first_byte(make_gateway):
    # A line that keeps moving, one byte at a time, is still bounded.
    g = make_gateway(LINE_TIMEOUT)
    with g.line_client() as c:
        start = time.monotonic()
        got = None
        while got is None and time.monotonic() - start < gw.bound(0.5 + 2.0):
            try:
                c.send(b"x")
            except OSError:
                break
            try:
                got = c.read_json(timeout=0.05)
            except AssertionError:
                if c.eof:
                    break
        if got is None:
            got = c.read_json(timeout=gw.bound(1.0))
        assert got["status"] == 408, got
        assert c.wait_closed(gw.bound(2.0))


def test_tcp_lines_in_pieces_within_the_timeout_are_answered(make_gateway):
    g = make_gateway(tcp({"servers": {"socket": {"lineTimeout": 2000}}}))
    with g.line_client() as c:
        for _ in range(3):
            # Each line starts its own clock: three lines take longer than one lineTimeout.
            c.send('{"action": "echo_params",')
            time.sleep(0.3)
            c.send(' "a": "b"}\n{"action": "ran')
            time.sleep(0.4)
            c.send('domNumber"}\n')
            assert c.read_json()["status"] == 200
            assert c.read_json()["status"] == 200


def test_tcp_idle_timeout_is_off_by_default(make_gateway):
    g = make_gateway(tcp({}))
    with g.line_client() as c:
        assert not c.wait_closed(1.5)
        assert c.call("paramsView")["status"] == "OK"


def test_tcp_idle_client_is_closed(make_gateway):
    g = make_gateway(tcp({"servers": {"socket": {"idleTimeout": 1000}},
                          "general": {"actionTimeout": 5000}}))
    offset = g.log_size()
    with g.line_client() as silent, g.line_client() as talker, g.line_client() as waiter:
        waiter.send_line('{"action": "sleepTest", "data": {"sleepDuration": 2000}}')
        start = time.monotonic()
        # The talker sends a line every 100 ms and is kept.
        while time.monotonic() - start < 1.5:
            assert talker.call("paramsView")["status"] == "OK"
            time.sleep(0.1)
        assert silent.wait_closed(gw.bound(2.0)), "silent client not closed"
        assert silent.buf == b"", silent.buf  # closed without a word
        # The waiter is silent but has an action in flight: it gets its answer.
        assert waiter.read_json(timeout=gw.bound(3.0))["status"] == 200
        assert waiter.wait_closed(gw.bound(2.0)), "idle after its answer, but not closed"
        # Silent since the loop, the talker is idle too now.
        assert talker.wait_closed(gw.bound(2.0)), "talker not closed once silent"
    g.assert_serving()
    g.wait_for_log(r"idle for idleTimeout", since=offset)


# -- a raw WebSocket client: it sends what it is told and answers nothing -------------------

def ws_frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A socket past the WebSocket handshake that answers nothing by itself."""

    def __init__(self, g):
        self.sock = socket.create_connection((g.host, g.port), timeout=5)
        self.sock.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % g.port).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake: %r" % data
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        assert head.split(b"\r\n", 1)[0].split()[1] == b"101", data
        self.closed = False

    def send(self, opcode, payload, fin=True):
        """False when the server has closed the connection."""
        try:
            self.sock.sendall(ws_frame(opcode, payload, fin))
            return True
        except OSError:
            return False

    def _frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            n, at = (struct.unpack("!H", buf[2:4])[0], 4) if len(buf) >= 4 else (1 << 62, 4)
        elif n == 127:
            n, at = (struct.unpack("!Q", buf[2:10])[0], 10) if len(buf) >= 10 else (1 << 62, 10)
        if len(buf) < at + n:
            return None
        self.buf = buf[at + n:]
        return buf[0] & 0x0F, buf[at:at + n]

    def read(self, timeout, until_frame=False, count=None):
        """Frames the server sends until it closes the connection or 'timeout' passes (or, with
        'until_frame', the first frame comes; with 'count', that many): a list of (seconds since
        the call, opcode, payload). self.closed tells whether the server closed."""
        start = time.monotonic()
        frames = []
        while True:
            frame = self._frame()
            while frame:
                frames.append((time.monotonic() - start,) + frame)
                frame = self._frame()
            if self.closed or (until_frame and frames) or (count and len(frames) >= count):
                return frames
            left = start + timeout - time.monotonic()
            if left <= 0:
                return frames
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk

    def finish_close(self, frames):
        """Answer the server's close frame, as a client does; True when the server then closes
        the connection (or had already)."""
        if self.closed:
            return True
        if close_code(frames)[0] is None or not self.send(0x8, b"\x03\xe8"):
            return self.closed
        self.read(gw.bound(2.0))
        return self.closed

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def close_code(frames):
    for _, opcode, payload in frames:
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
    return None, None


# -- WebSocket: pings -----------------------------------------------------------------------

def test_ws_client_that_never_answers_pings_is_closed(make_gateway):
    g = make_gateway({"servers": {"websocket": {"pingInterval": 1000, "pongTimeout": 1000}}})
    with RawWs(g) as ws:
        frames = ws.read(gw.bound(2.0 + 3.0))
    pings = [f for f in frames if f[1] == 0x9]
    assert pings, "no ping in %r" % frames
    assert pings[0][0] >= 0.8, "pinged before pingInterval: %r" % frames
    assert ws.closed, "not closed within pingInterval + pongTimeout: %r" % frames
    g.assert_serving()


def test_ws_short_pong_timeout_still_pings_first(make_gateway):
    # Both round up to whole seconds; the drop still comes after a ping, a second later.
    g = make_gateway({"servers": {"websocket": {"pingInterval": 500, "pongTimeout": 1}}})
    with RawWs(g) as ws:
        frames = ws.read(gw.bound(2.0 + 3.0))
    assert [f[1] for f in frames] == [0x9], frames
    assert ws.closed, frames


def test_ws_client_that_answers_pings_stays_open(make_gateway):
    # The websockets client answers pings by itself (pongTimeout leaves it time on a busy box).
    g = make_gateway({"servers": {"websocket": {"pingInterval": 1000, "pongTimeout": 3000}}})

    async def go():
        async with g.ws_connect() as ws:
            await asyncio.sleep(3.5)  # three ping intervals, each answered
            await ws.send(json.dumps({"action": "randomNumber"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    assert run(go())["status"] == 200


def test_ws_ping_interval_zero_sends_no_pings(make_gateway):
    g = make_gateway({"servers": {"websocket": {"pingInterval": 0, "pongTimeout": 1000}}})
    with RawWs(g) as ws:
        frames = ws.read(2.5)
    assert not frames and not ws.closed, frames


# -- WebSocket: fragments -------------------------------------------------------------------

FRAGMENTS = {"servers": {"websocket": {"fragmentTimeout": 500, "pingInterval": 0}}}
FIRST = b'{"action": "echo_params", "a": "'


def test_ws_first_fragment_and_nothing_more_closes_with_1008(make_gateway):
    g = make_gateway(FRAGMENTS)
    offset = g.log_size()
    with RawWs(g) as ws:
        ws.send(0x1, FIRST, fin=False)
        frames = ws.read(gw.bound(0.5 + 1.5), until_frame=True)
        assert close_code(frames) == (1008, "message not completed within fragmentTimeout"), frames
        assert frames[0][0] >= 0.4, "closed before fragmentTimeout: %r" % frames
        assert ws.finish_close(frames), "not closed after the close handshake"
    g.wait_for_log(r"not completed within fragmentTimeout", since=offset)
    g.assert_serving()


def test_ws_fragments_that_keep_coming_are_still_bounded(make_gateway):
    # fragmentTimeout counts from the first fragment, not from the last.
    g = make_gateway(FRAGMENTS)
    with RawWs(g) as ws:
        ws.send(0x1, FIRST, fin=False)
        start = time.monotonic()
        frames = []
        while not frames and time.monotonic() - start < gw.bound(0.5 + 1.5):
            if not ws.send(0x0, b"x", fin=False):
                break
            frames = ws.read(0.05, until_frame=True)
        frames += ws.read(gw.bound(1.0), until_frame=True)
        assert close_code(frames)[0] == 1008, frames
        assert ws.finish_close(frames)


def test_ws_fragmented_messages_in_time_are_answered(make_gateway):
    g = make_gateway({"servers": {"websocket": {"fragmentTimeout": 3000, "pingInterval": 0}}})
    with RawWs(g) as ws:
        for opcode, piece, fin in ((0x1, b'{"action": "echo_', False), (0x0, b'params", "a": ', False),
                                   (0x0, b'"slow"}', True)):
            ws.send(opcode, piece, fin)
            time.sleep(0.1)
        # A second message, fragmented too: its time starts at its own first fragment.
        ws.send(0x1, b'{"action": "randomNumber"', fin=False)
        time.sleep(0.1)
        ws.send(0x0, b"}")
        frames = ws.read(gw.bound(3.0), count=2)
    texts = [json.loads(p) for _, op, p in frames if op == 0x1]
    assert [t["status"] for t in texts] == [200, 200], frames
    assert texts[0]["data"]["params"]["a"] == "slow"
    assert not ws.closed


def test_ws_many_small_fragments_over_max_message_size_close_with_1009(make_gateway):
    g = make_gateway({"servers": {"websocket": {"maxMessageSize": 1024, "pingInterval": 0}}})
    with RawWs(g) as ws:
        ws.send(0x1, FIRST, fin=False)
        for _ in range(200):
            if not ws.send(0x0, b"abcdefgh", fin=False):
                break  # closed while we were still sending: what we are checking
        frames = ws.read(gw.bound(2.0), until_frame=True)
        assert close_code(frames)[0] == 1009, frames
        assert ws.finish_close(frames)
    g.assert_serving()
