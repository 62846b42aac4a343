"""Several requests in one write on one connection (issue #12: one packet froze a worker).

A GET then a POST with a body, sent in a single write, once put the worker in an endless loop
inside libwebsockets: it answered no one again and ignored SIGTERM. Each test here sends its
bytes in one write on a raw socket, reads the answers with bounded waits, then checks that a
fresh client is served and that the gateway stops cleanly on SIGTERM (exit status 0).

The same is checked for WebSocket: an upgrade request with frames right behind it in the same
write, and an upgrade pipelined behind a plain GET. Marked `asan`: `make test-asan` runs them
again on the sanitizer build."""

import base64
import json
import os
import socket
import struct
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

WAIT = 5.0  # seconds for the answers to one write

# -- raw HTTP ------------------------------------------------------------------------------

def get(path, extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def with_body(method, path, body, ctype=b"application/json"):
    return (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def post_json(path, value):
    return with_body(b"POST", path, json.dumps(value).encode())


class Conn:
    """A raw client socket; every read is bounded by WAIT from the call that starts it."""

    def __init__(self, g):
        self.sock = socket.create_connection((g.host, g.port), timeout=WAIT)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes; False once the server closed or the deadline passed."""
        if self.closed:
            return False
        chunk = gw.recv_by(self.sock, deadline)
        if chunk is None:
            return False
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def response(self, timeout=WAIT):
        """The next HTTP response as (status, {lower-case header: value}, body), or None when
        the server closed (or said nothing more) before a whole one arrived."""
        deadline = time.monotonic() + gw.bound(timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status, headers, _ = gw.split_raw_response(head + b"\r\n\r\n")
        assert "content-length" in headers, "pipelined answers need a Content-Length: %r" % head
        length = int(headers["content-length"])
        while len(rest) < length:
            if not self._fill(deadline):
                return None
            rest = self.buf.partition(b"\r\n\r\n")[2]
        self.buf = rest[length:]
        return status, headers, rest[:length]

    def exact(self, n, timeout=WAIT):
        """The next n bytes, or what came before the server closed or the deadline passed."""
        deadline = time.monotonic() + gw.bound(timeout)
        while len(self.buf) < n and self._fill(deadline):
            pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def closed_by_server(self, timeout=WAIT):
        """True once the server closes the connection (with nothing more to read)."""
        deadline = time.monotonic() + gw.bound(timeout)
        while self._fill(deadline):
            pass
        return self.closed and not self.buf

    def close(self):
        self.sock.close()


def echoed(answer):
    """params.a of an echo_params answer."""
    assert answer is not None, "no answer: the connection was closed or the gateway is stuck"
    status, _, body = answer
    assert status == 200, (status, body)
    return json.loads(body)["params"].get("a")


def assert_alive_and_stops(g):
    """A fresh client is served, then SIGTERM stops the gateway with status 0."""
    status, body = g.get("/api/randomNumber", timeout=gw.bound(WAIT))
    assert status == 200 and "randomNumber" in body, body
    assert g.stop() == 0, g.describe()


@pytest.fixture
def g(make_gateway):
    return make_gateway()


# -- HTTP: requests pipelined in one write -------------------------------------------------

# id, the bytes of one write, the 'a' param each request sends back (in order)
PIPELINES = [
    ("get-then-post", get(b"/api/echo_params?a=first") +
     post_json(b"/api/echo_params", {"a": "second"}), ["first", "second"]),
    ("post-then-post", post_json(b"/api/echo_params", {"a": "first"}) +
     post_json(b"/api/echo_params", {"a": "second"}), ["first", "second"]),
    ("get-then-form-post", get(b"/api/echo_params?a=first") +
     with_body(b"POST", b"/api/echo_params", b"a=second",
               b"application/x-www-form-urlencoded"), ["first", "second"]),
    ("get-then-put", get(b"/api/echo_params?a=first") +
     with_body(b"PUT", b"/api/echo_params", b'{"a":"second"}'), ["first", "second"]),
    ("get-with-body-then-get",
     b"GET /api/echo_params?a=first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
     get(b"/api/echo_params?a=second"), ["first", "second"]),
    ("get-then-get-with-body", get(b"/api/echo_params?a=first") +
     b"GET /api/echo_params?a=second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
     ["first", "second"]),
    ("post-then-get", post_json(b"/api/echo_params", {"a": "first"}) +
     get(b"/api/echo_params?a=second"), ["first", "second"]),
    ("get-get-post", get(b"/api/echo_params?a=first") + get(b"/api/echo_params?a=second") +
     post_json(b"/api/echo_params", {"a": "third"}), ["first", "second", "third"]),
]

@pytest.mark.parametrize("data,expected", [
    pytest.param(*p[1:], id=p[0]) for p in PIPELINES])
def test_pipelined_requests_all_answered_in_order(g, data, expected):
    """What SPEC §8 and RFC 9112 §9.3.2 ask: every pipelined request answered, in order, each
    with its own body; the worker keeps serving and stops on SIGTERM."""
    offset = g.log_size()
    c = Conn(g)
    try:
        c.send(data)
        assert [echoed(c.response()) for _ in expected] == expected
    finally:
        c.close()
    assert "invalid JSON body" not in g.log_since(offset), g.log_since(offset)
    assert_alive_and_stops(g)


# A request the gateway refuses (or, for the file, answers 404), pipelined behind a GET: the
# status it gets, after the GET's answer.
REFUSED_BEHIND = [
    ("over-max-body-size", with_body(b"POST", b"/api/echo_params", b"x")
     .replace(b"Content-Length: 1", b"Content-Length: %d" % 10 ** 7), 413),
    ("length-list", with_body(b"POST", b"/api/echo_params", b"x")
     .replace(b"Content-Length: 1", b"Content-Length: 1, 1"), 400),
    ("missing-static-file-with-body",
     b"GET /public/nothing.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 404),
]


@pytest.mark.parametrize("data,status", [p[1:] for p in REFUSED_BEHIND],
                         ids=[p[0] for p in REFUSED_BEHIND])
def test_pipelined_refused_request_never_stalls_the_worker(g, data, status):
    c = Conn(g)
    try:
        c.send(get(b"/api/echo_params?a=first") + data)
        assert echoed(c.response()) == "first"
        answer = c.response()
        assert answer is not None and answer[0] == status, answer
    finally:
        c.close()
    assert_alive_and_stops(g)


def test_pipelined_post_with_slow_body(g):
    """A POST pipelined behind a GET whose body arrives in a later write."""
    body = json.dumps({"a": "second"}).encode()
    whole = get(b"/api/echo_params?a=first") + post_json(b"/api/echo_params", {"a": "second"})
    c = Conn(g)
    try:
        c.send(whole[:-len(body)])
        assert echoed(c.response()) == "first"
        time.sleep(0.1)
        try:
            c.send(body)
        except OSError:
            pass  # already closed: allowed, see test_pipelined_requests_never_stall_the_worker
        answer = c.response()
        if answer is not None:
            assert echoed(answer) == "second"
        else:
            assert c.closed_by_server()
    finally:
        c.close()
    assert_alive_and_stops(g)


def test_post_after_keep_alive_answer_is_read(g):
    """Not pipelined: a POST sent after the previous answer arrived is read and answered on the
    same connection, however many times, also when its body comes in later writes (the fix must
    not close these)."""
    c = Conn(g)
    try:
        for i in range(3):
            c.send(post_json(b"/api/echo_params", {"a": "n%d" % i}))
            assert echoed(c.response()) == "n%d" % i
            c.send(get(b"/api/echo_params?a=g%d" % i))
            assert echoed(c.response()) == "g%d" % i
            post = post_json(b"/api/echo_params", {"a": "s%d" % i})
            head_end = post.index(b"\r\n\r\n") + 4
            for piece in (post[:head_end], post[head_end:head_end + 3], post[head_end + 3:]):
                c.send(piece)
                time.sleep(0.05)
            assert echoed(c.response()) == "s%d" % i
    finally:
        c.close()
    assert_alive_and_stops(g)


def test_pipelined_post_behind_slow_action(g):
    """The second request waits in the buffer while the first one's action sleeps."""
    c = Conn(g)
    try:
        c.send(get(b"/api/sleepTest?sleepDuration=300") + get(b"/api/echo_params?a=second"))
        first = c.response()
        assert first is not None and first[0] == 200, first
        assert echoed(c.response()) == "second"
    finally:
        c.close()
    assert_alive_and_stops(g)


# -- WebSocket: frames in the same write as the upgrade ------------------------------------

def upgrade_request(path=b"/ws"):
    key = base64.b64encode(os.urandom(16))
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
            b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def frame(opcode, payload, fin=True):
    """One masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(msg):
    return frame(0x1, json.dumps(msg).encode())


def read_frame(c, timeout=WAIT):
    """(opcode, payload) of the next server frame, or None."""
    head = c.exact(2, timeout)
    if len(head) < 2:
        return None
    assert not head[1] & 0x80, "server frames are not masked"
    n = head[1] & 0x7f
    if n == 126:
        n = struct.unpack("!H", c.exact(2, timeout))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.exact(8, timeout))[0]
    payload = c.exact(n, timeout)
    if len(payload) < n:
        return None
    return head[0] & 0x0f, payload


def ws_answers(c, want_ids, want_pong=None):
    """Read frames until every envelope with a request_id in want_ids (and the pong, if asked
    for) arrived; returns {request_id: envelope}. Fails on a close or a stall."""
    envs, pong = {}, None
    while set(envs) != set(want_ids) or (want_pong is not None and pong is None):
        f = read_frame(c)
        assert f is not None, "stalled or closed with %r still missing" % (
            sorted(set(want_ids) - set(envs)) + (["pong"] if pong is None and want_pong else []))
        op, payload = f
        assert op != 0x8, "closed by the server: %r" % payload
        if op == 0xA:
            pong = payload
        elif op == 0x1:
            env = json.loads(payload)
            envs[env.get("request_id")] = env
    if want_pong is not None:
        assert pong == want_pong
    return envs


def frames_behind(ids):
    """Text frames for the ids (randomNumber and echo_params alternately) and a ping."""
    out = b""
    for i in ids:
        if i % 2:
            out += text({"action": "randomNumber", "request_id": i})
        else:
            out += text({"action": "echo_params", "data": {"a": "m%d" % i}, "request_id": i})
    return out + frame(0x9, b"are you there")


def check_envelopes(envs):
    for i, env in envs.items():
        assert env["status"] == 200 and env["errors"] == [], env
        if i % 2:
            assert "randomNumber" in env["data"], env
        else:
            assert env["data"]["params"]["a"] == "m%d" % i, env


def switched(c, timeout=WAIT):
    """Read the 101 answer to an upgrade request; what follows it stays in c.buf."""
    deadline = time.monotonic() + gw.bound(timeout)
    while b"\r\n\r\n" not in c.buf and c._fill(deadline):
        pass
    head, sep, c.buf = c.buf.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 101"), head


def ws_close(c):
    c.send(frame(0x8, struct.pack("!H", 1000)))
    f = read_frame(c)
    assert f is not None and f[0] == 0x8, f


@pytest.mark.parametrize("count", [2, 4, 200], ids=["two", "past-384-bytes", "past-4KiB"])
def test_websocket_frames_in_the_upgrade_write(g, count):
    """Messages and a ping right behind the upgrade request, in the same write (past byte 384,
    where lws used to build its 101 over them, and 200 of them: more than 4 KiB): every frame is
    answered, the worker serves on and stops on SIGTERM."""
    c = Conn(g)
    try:
        ids = list(range(1, count + 1))
        c.send(upgrade_request() + frames_behind(ids))
        switched(c)
        check_envelopes(ws_answers(c, ids, want_pong=b"are you there"))
        ws_close(c)
    finally:
        c.close()
    assert_alive_and_stops(g)


@pytest.mark.parametrize("count", [3, 200])
def test_websocket_upgrade_pipelined_behind_get(g, count):
    """The GET is answered by the HTTP layer; the upgrade and its frames are handed to
    libwebsockets together: every frame is answered."""
    c = Conn(g)
    try:
        ids = list(range(1, count + 1))
        c.send(get(b"/api/echo_params?a=first") + upgrade_request() + frames_behind(ids))
        assert echoed(c.response()) == "first"
        switched(c)
        check_envelopes(ws_answers(c, ids, want_pong=b"are you there"))
        ws_close(c)
    finally:
        c.close()
    assert_alive_and_stops(g)
