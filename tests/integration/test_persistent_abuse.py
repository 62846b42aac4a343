"""Misbehaving WebSocket and TCP clients (SPEC §8; wire contract of issue 3): abrupt disconnects
in the middle of actions, many connections at once, half-sent handshakes and frames, and clients
that do not read their answers (general.maxOutputBuffer).

The disconnect and leak tests are marked `asan`: `make test-asan` runs them again on the
sanitizer build, where a use-after-free on these paths, or a leak at exit, shows in the log
(checked at teardown by conftest). Memory (VmRSS) is compared on both builds; under ASan with a
small quarantine so that freed memory is reused."""

import asyncio
import json
import re
import resource
import signal
import socket
import struct
import time

import pytest
import websockets

import gateway as gw

SANITIZED = gw.is_sanitizer_build()
ROUND = 1000 if SANITIZED else 2000  # connections per round
BATCH = 200                          # connections opened at once
SLEEP_MS = 2000                      # the action each client leaves behind
MIB = 1024


def run(coro, timeout=50):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail("RLIMIT_NOFILE hard limit %d < %d: raise it (ulimit -Hn) to run this test"
                    % (hard, need), pytrace=False)
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def http_count(g):
    status, body = g.get("/api/connection_count")
    assert status == 200, body
    return body["count"]


def wait_count(g, want, timeout=15.0):
    """Wait (bounded) until api.connections.count() seen over HTTP is 'want'; return the last
    value seen."""
    deadline = time.monotonic() + timeout
    while True:
        n = http_count(g)
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def assert_balanced(g, offset, ctypes=("websocket", "socket"), timeout=10.0):
    """Every persistent connection created since 'offset' was destroyed (connection middleware
    lines of the test middleware connLogger)."""
    deadline = time.monotonic() + timeout
    while True:
        text = g.log_since(offset)
        created = set(re.findall(r"connLogger create id=(\S+) ctype=(?:%s)\b" % "|".join(ctypes),
                                 text))
        destroyed = set(re.findall(r"connLogger destroy id=(\S+) ctype=(?:%s)\b"
                                   % "|".join(ctypes), text))
        if created and created <= destroyed:
            return len(created)
        if time.monotonic() > deadline:
            raise AssertionError("%d of %d persistent connections never destroyed"
                                 % (len(created - destroyed), len(created)))
        time.sleep(0.1)


def rst(sock):
    """Make the next close of 'sock' send a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def abuse_config(**extra):
    over = {"general": {"actionTimeout": 10000, "shutdownTimeout": 3000}}
    return gw.deep_merge(over, extra)


# -- many clients leaving in the middle of an action ----------------------------------------

async def _ws_round(g, n):
    """Open n WebSockets (in batches), each with a sleepTest pending, then drop them all without
    a close handshake: half by reset, half by a plain close of the socket."""
    conns = []

    async def one(i):
        ws = await g.ws_connect(open_timeout=20)
        await ws.send(json.dumps({"action": "sleepTest", "data": {"sleepDuration": SLEEP_MS}}))
        # The next answer proves the gateway has read the sleepTest before it.
        await ws.send(json.dumps({"action": "randomNumber", "request_id": i}))
        env = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert env["status"] == 200 and env["request_id"] == i, env
        return ws

    for start in range(0, n, BATCH):
        conns += await asyncio.gather(*(one(i) for i in range(start, min(n, start + BATCH))))
    for i, ws in enumerate(conns):
        if i % 2:
            rst(ws.transport.get_extra_info("socket"))
        ws.transport.abort()
    await asyncio.sleep(0)
    return len(conns)


async def _tcp_round(g, n):
    """The same over the TCP socket server; a third also leave half a line behind."""
    conns = []

    async def one(i):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(g.socket_host, g.socket_port), 20)
        writer.write(b'{"action": "sleepTest", "data": {"sleepDuration": %d}}\n'
                     b'{"action": "randomNumber", "request_id": %d}\n' % (SLEEP_MS, i))
        line = await asyncio.wait_for(reader.readline(), 20)
        env = json.loads(line)
        assert env["status"] == 200 and env["request_id"] == i, env
        if i % 3 == 0:
            writer.write(b'{"action": "echo_params", "a": "never fini')
            await writer.drain()
        return writer

    for start in range(0, n, BATCH):
        conns += await asyncio.gather(*(one(i) for i in range(start, min(n, start + BATCH))))
    for i, writer in enumerate(conns):
        if i % 2:
            rst(writer.transport.get_extra_info("socket"))
        writer.transport.abort()
    await asyncio.sleep(0)
    return len(conns)


def _abort_rounds(g, round_fn, ctype, rounds=3):
    """Run 'rounds' rounds of dropped clients; after each, the connection count is back to its
    baseline and every connection was destroyed. Returns VmRSS before and after each round."""
    raise_nofile(ROUND * 2 + 1000)
    baseline = http_count(g)
    g.assert_serving()
    rss = [g.rss_kib()]
    t_last = None
    for _ in range(rounds):
        offset = g.log_size()
        t_last = time.monotonic()
        opened = run(round_fn(g, ROUND))
        assert opened == ROUND
        left = wait_count(g, baseline)
        assert left == baseline, "api.connections.count() is %d after dropping %d %s " \
            "clients, baseline %d" % (left, ROUND, ctype, baseline)
        destroyed = assert_balanced(g, offset, (ctype,))
        assert destroyed == ROUND, "destroy middleware ran for %d of %d" % (destroyed, ROUND)
        g.assert_serving()
        rss.append(g.rss_kib())
    # Let the abandoned sleeps run out: a reply to a dropped client must not touch freed memory.
    time.sleep(max(0.0, SLEEP_MS / 1000.0 + 0.3 - (time.monotonic() - t_last)))
    g.assert_serving()
    assert http_count(g) == baseline
    return rss


# Under ASan, freed memory waits in a quarantine before reuse; a small one keeps VmRSS
# comparable between rounds (the default, 256 MiB, would hide any leak of this size).
ASAN_ENV = {"ASAN_OPTIONS": "quarantine_size_mb=4"} if SANITIZED else None
# VmRSS slack: the warm-up round may keep what its peak needed; later rounds must not grow.
WARM_SLACK, ROUND_SLACK, TREND_SLACK = ((120, 16, 8) if SANITIZED else (40, 8, 4))


def _assert_memory_settles(rss, what):
    """The first round is a warm-up (the allocator keeps what the peak needed); later rounds
    must reuse it rather than grow."""
    base, warm, *later = rss
    assert warm < base + WARM_SLACK * MIB, "VmRSS %d KiB after %d dropped %s, baseline %d KiB" \
        % (warm, ROUND, what, base)
    assert max(later) < warm + ROUND_SLACK * MIB, "VmRSS grew over rounds of %d dropped %s: " \
        "%r KiB" % (ROUND, what, rss)
    assert later[-1] - later[0] < TREND_SLACK * MIB, "VmRSS still growing after the warm-up " \
        "round: %r KiB" % (rss,)


@pytest.mark.asan
def test_ws_clients_abort_mid_action(make_gateway):
    g = make_gateway(abuse_config(), env=ASAN_ENV)
    _assert_memory_settles(_abort_rounds(g, _ws_round, "websocket", rounds=4), "WebSockets")


@pytest.mark.asan
def test_tcp_clients_abort_mid_action(make_gateway):
    g = make_gateway(abuse_config(servers={"socket": {"enabled": True, "port": 0}}), env=ASAN_ENV)
    _assert_memory_settles(_abort_rounds(g, _tcp_round, "socket", rounds=4), "sockets")


@pytest.mark.asan
@pytest.mark.parametrize("transport", ["websocket", "socket"])
def test_disconnect_cancels_pending_waits(make_gateway, transport):
    """A client that goes away while its action sleeps: the connection is destroyed at once,
    not when the sleep ends, and the abandoned action never completes successfully."""
    g = make_gateway(abuse_config(servers={"socket": {"enabled": True, "port": 0}}))
    baseline = http_count(g)
    # "At once" has a bound scaled for a slow build; the sleep is longer than that bound.
    at_once = gw.bound(1.0)
    sleep_ms = int((at_once + 1.0) * 1000)
    slow = json.dumps({"action": "sleepTest", "data": {"sleepDuration": sleep_ms}})
    info = json.dumps({"action": "connection_info"})

    async def go():
        if transport == "websocket":
            ws = await g.ws_connect()
            await ws.send(slow)
            await ws.send(info)
            data = json.loads(await asyncio.wait_for(ws.recv(), 5))["data"]
            ws.transport.abort()
        else:
            reader, writer = await asyncio.open_connection(g.socket_host, g.socket_port)
            writer.write((slow + "\n" + info + "\n").encode())
            data = json.loads(await asyncio.wait_for(reader.readline(), 5))["data"]
            # A reset: a plain close (FIN) is a half-close to the server, whose answers the
            # client may still read (test_persistent_limits.py), so it lets them finish.
            rst(writer.transport.get_extra_info("socket"))
            writer.transport.abort()
        assert data["pendingActions"] == 2, data  # the sleep, and connection_info itself
        return data["id"]

    t0 = time.monotonic()
    cid = run(go())
    destroyed = g.wait_for_log(r"connLogger destroy id=%s\b" % re.escape(cid), timeout=5)
    took = time.monotonic() - t0
    assert destroyed, "destroy middleware never ran"
    assert took < at_once, "the connection was destroyed only %.2f s later: its pending " \
        "sleep was not cancelled" % took
    assert wait_count(g, baseline, timeout=5) == baseline
    # Past the end of the sleep (the point of this one): it must never complete.
    time.sleep(max(0.0, sleep_ms / 1000 + 0.3 - (time.monotonic() - t0)))
    lines = [line for line in g.log_lines() if cid in line and "action=sleepTest" in line]
    assert not any("status=200" in line for line in lines), \
        "the abandoned action completed after its client left: %r" % lines
    g.assert_serving()


# -- clients that leave half-way through something ------------------------------------------

def _ws_frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04", declared=None):
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def _upgrade_request(g):
    return ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % g.port).encode()


def _raw_ws(g):
    """A raw socket that has completed the WebSocket handshake."""
    s = socket.create_connection((g.host, g.port), timeout=5)
    s.sendall(_upgrade_request(g))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake: %r" % data
        data += chunk
    assert data.split(b"\r\n", 1)[0].split()[1] == b"101", data
    return s


def _close(s, reset=False):
    if reset:
        rst(s)
    s.close()


@pytest.mark.asan
def test_abrupt_disconnects_at_every_stage(make_gateway):
    g = make_gateway(abuse_config(servers={"socket": {"enabled": True, "port": 0}}))
    baseline = http_count(g)
    offset = g.log_size()
    msg = json.dumps({"action": "sleepTest", "data": {"sleepDuration": 300}}).encode()
    for reset in (False, True):
        # Half a handshake.
        s = socket.create_connection((g.host, g.port), timeout=5)
        s.sendall(_upgrade_request(g)[:60])
        _close(s, reset)
        # Right after the 101.
        _close(_raw_ws(g), reset)
        # Half a frame header; a frame that announces more than it sends.
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x1, msg)[:1])
        _close(s, reset)
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x1, msg[:10], declared=len(msg)))
        _close(s, reset)
        # A first fragment, never the rest.
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x1, msg[:10], fin=False))
        _close(s, reset)
        # A whole message (the action starts), gone at once.
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x1, msg) * 3)
        _close(s, reset)
        # A close frame, then gone without waiting for the answer.
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x1, msg) + _ws_frame(0x8, struct.pack("!H", 1000)))
        _close(s, reset)
        # A ping, then gone.
        s = _raw_ws(g)
        s.sendall(_ws_frame(0x9, b"x" * 100))
        _close(s, reset)
        # TCP: half a line, a line in flight, a long line.
        for data in (b'{"action": "sleepTest"', msg + b"\n" + msg + b"\n", b"p" * 100000):
            s = socket.create_connection((g.socket_host, g.socket_port), timeout=5)
            try:
                s.sendall(data)
            except OSError:
                pass
            _close(s, reset)
    time.sleep(0.5)  # the 300 ms sleeps run out with their clients gone (the point of it)
    g.assert_serving()
    assert wait_count(g, baseline) == baseline
    assert_balanced(g, offset)
    # Still answers both transports properly.
    with g.line_client() as c:
        assert c.call('{"action": "randomNumber"}')["status"] == 200

    async def ws_ok():
        async with g.ws_connect() as ws:
            await ws.send('{"action": "randomNumber"}')
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    assert run(ws_ok())["status"] == 200


@pytest.mark.asan
def test_client_gone_while_answer_pending_and_server_pushes(make_gateway):
    """A push to a connection that has just gone, and answers to a client that went away while
    its actions were running, are dropped without harm."""
    g = make_gateway(abuse_config())

    async def go():
        victim = await g.ws_connect()
        await victim.send(json.dumps({"action": "connection_info"}))
        vid = json.loads(await asyncio.wait_for(victim.recv(), 5))["data"]["id"]
        for i in range(4):
            await victim.send(json.dumps({"action": "sleepTest", "data": {"sleepDuration": 200}}))
        # Answered while the four sleep (the fifth action allowed at once): they are running.
        await victim.send(json.dumps({"action": "connection_info"}))
        pending = json.loads(await asyncio.wait_for(victim.recv(), 5))["data"]["pendingActions"]
        victim.transport.abort()
        async with g.ws_connect() as pusher:
            async def push(n):
                await pusher.send(json.dumps({"action": "push_to",
                                              "data": {"to": vid, "message": {"n": n}}}))
                return json.loads(await asyncio.wait_for(pusher.recv(), 5))

            # Pushes racing the gateway noticing the close, then one once it has.
            results = []
            for i in range(20):
                results.append(await push(i))
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(
                g.wait_for_log, r"connLogger destroy id=%s\b" % re.escape(vid), 5), g.describe()
            last = await push(20)
        return pending, results, last

    pending, results, last = run(go())
    assert pending == 5, pending
    for env in results:
        assert env["status"] == 200, env
    # Once it is gone from this worker, the push goes to the cluster: published, dropped by
    # every worker (docs/realtime.md).
    assert last["status"] == 200 and last["data"] == {"sent": True}, \
        "push to a dropped connection: %r" % last
    time.sleep(0.3)  # the 200 ms sleeps end with their client gone (the point of it)
    g.assert_serving()


# -- clients that do not read ---------------------------------------------------------------

MAX_OUT = 262144
BIG = 65536


def _slow_socket(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.settimeout(5)
    s.connect((host, port))
    return s


@pytest.mark.asan
def test_ws_client_that_does_not_read_is_disconnected(make_gateway):
    g = make_gateway(abuse_config(general={"maxOutputBuffer": MAX_OUT}))

    async def go():
        sock = _slow_socket(g.host, g.port)
        sock.setblocking(False)
        slow = await g.ws_connect(sock=sock, max_queue=1)
        slow.transport.pause_reading()
        async with g.ws_connect() as good:
            async def good_call(msg):
                await good.send(json.dumps(msg))
                return json.loads(await asyncio.wait_for(good.recv(), 5))

            before = (await good_call({"action": "connection_count"}))["data"]["count"]
            sent = 0
            dropped_after = None
            t0 = time.monotonic()
            send_failed = False
            while sent < 600 and time.monotonic() - t0 < 20:
                try:
                    for _ in range(20):
                        await slow.send(json.dumps({"action": "big_response", "request_id": sent,
                                                    "data": {"kb": BIG // 1024}}))
                        sent += 1
                except websockets.ConnectionClosed:
                    send_failed = True  # the gateway has dropped it already (a reset)
                env = await good_call({"action": "randomNumber"})
                assert env["status"] == 200, "another client was held up: %r" % env
                count = (await good_call({"action": "connection_count"}))["data"]["count"]
                if count == before - 1:
                    dropped_after = sent
                    break
                if send_failed:
                    await asyncio.sleep(0.1)  # wait for the count to follow
                    if time.monotonic() - t0 > 10:
                        break
                await asyncio.sleep(0.02)
            still = await good_call({"action": "randomNumber"})
        slow.transport.resume_reading()
        got = []
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                left = max(0.1, deadline - time.monotonic())
                got.append(await asyncio.wait_for(slow.recv(), left))
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
        closed = slow.closed or slow.state.name in ("CLOSING", "CLOSED")
        slow.transport.abort()
        return sent, dropped_after, still, got, closed

    sent, dropped_after, still, got, closed = run(go())
    assert dropped_after is not None, "a WebSocket client that never reads %d answers of %d " \
        "bytes (maxOutputBuffer %d) was not disconnected" % (sent, BIG, MAX_OUT)
    assert still["status"] == 200
    assert closed, "the slow client's connection is still open"
    assert len(got) < sent, "every answer was delivered (%d), nothing was dropped" % len(got)
    g.assert_serving()


@pytest.mark.asan
def test_slow_ws_reader_under_the_limit_gets_everything(make_gateway):
    """The control for the test above: with the default maxOutputBuffer (8 MiB), 60 answers of
    64 KiB that the client reads late are queued, not dropped."""
    g = make_gateway(abuse_config())
    n = 60

    async def go():
        sock = _slow_socket(g.host, g.port)
        sock.setblocking(False)
        slow = await g.ws_connect(sock=sock, max_queue=None)
        slow.transport.pause_reading()
        offset = g.log_size()
        for i in range(n):
            await slow.send(json.dumps({"action": "big_response", "request_id": i,
                                        "data": {"kb": BIG // 1024}}))

        def all_answered():  # by the gateway, none read yet: they wait in its queue
            deadline = time.monotonic() + 20
            while g.log_since(offset).count("action=big_response") < n:
                assert time.monotonic() < deadline, g.describe()
                time.sleep(0.05)

        await asyncio.to_thread(all_answered)
        slow.transport.resume_reading()
        got = [json.loads(await asyncio.wait_for(slow.recv(), 10)) for _ in range(n)]
        await slow.close()
        return got

    got = run(go())
    assert sorted(e["request_id"] for e in got) == list(range(n))
    assert all(e["status"] == 200 and len(e["data"]["blob"]) == BIG for e in got)
    g.assert_serving()


@pytest.mark.asan
def test_tcp_client_that_does_not_read_is_disconnected(make_gateway):
    g = make_gateway(abuse_config(general={"maxOutputBuffer": MAX_OUT},
                                  servers={"socket": {"enabled": True, "port": 0}}))
    slow = _slow_socket(g.socket_host, g.socket_port)
    slow.sendall(b"paramAdd kb=%d\n" % (BIG // 1024))
    with g.line_client() as good:
        before = good.call("connection_count")["data"]["count"]
        sent = 0
        dropped_after = None
        t0 = time.monotonic()
        while sent < 600 and time.monotonic() - t0 < 20:
            try:
                slow.sendall(b"big_response\n" * 20)
            except OSError:
                dropped_after = sent
                break
            sent += 20
            env = good.call('{"action": "randomNumber"}')
            assert env["status"] == 200, "another client was held up: %r" % env
            if good.call("connection_count")["data"]["count"] == before - 1:
                dropped_after = sent
                break
            time.sleep(0.02)
        assert good.call('{"action": "randomNumber"}')["status"] == 200
    assert dropped_after is not None, "a TCP client that never reads %d answers of %d bytes " \
        "(maxOutputBuffer %d) was not disconnected" % (sent, BIG, MAX_OUT)
    received = 0
    ended = False
    slow.settimeout(1.0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = slow.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            ended = True
            break
        if not chunk:
            ended = True
            break
        received += len(chunk)
    slow.close()
    assert ended, "the slow TCP client's connection was not closed by the gateway"
    assert received < sent * BIG, "every answer was delivered"
    g.assert_serving()


# -- many idle connections, opened and closed cleanly ----------------------------------------

@pytest.mark.asan
def test_many_clean_closes_leave_nothing_behind(make_gateway):
    n = 1000
    raise_nofile(n * 2 + 1000)
    g = make_gateway(abuse_config(servers={"socket": {"enabled": True, "port": 0}}))
    baseline = http_count(g)
    offset = g.log_size()

    async def go():
        conns = []
        for start in range(0, n, BATCH):
            conns += await asyncio.gather(*(g.ws_connect(open_timeout=20)
                                            for _ in range(start, min(n, start + BATCH))))
        tcp = []
        for start in range(0, n, BATCH):
            tcp += await asyncio.gather(*(asyncio.open_connection(g.socket_host, g.socket_port)
                                          for _ in range(start, min(n, start + BATCH))))
        # Every connection is known before any closes.
        deadline = time.monotonic() + 15
        while http_count(g) < baseline + 2 * n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        peak = http_count(g)
        for start in range(0, n, BATCH):
            await asyncio.gather(*(ws.close() for ws in conns[start:start + BATCH]))
        for reader, writer in tcp:
            writer.write(b"quit\n")
        await asyncio.gather(*(asyncio.wait_for(reader.read(), 10) for reader, _ in tcp))
        for _, writer in tcp:
            writer.close()
        return peak, [ws.close_code for ws in conns]

    peak, codes = run(go())
    assert peak == baseline + 2 * n, "count with %d WebSockets and %d sockets open: %d " \
        "(baseline %d)" % (n, n, peak, baseline)
    assert codes.count(1000) == n, "close codes: %r" % sorted(set(codes))
    assert wait_count(g, baseline) == baseline
    assert assert_balanced(g, offset) == 2 * n
    g.assert_serving()


# -- shutting down with many connections open -----------------------------------------------

@pytest.mark.asan
def test_shutdown_with_many_open_connections(make_gateway):
    """SIGTERM with 500 WebSockets and 500 sockets open, 100 of each with an action running:
    the running actions are answered, every connection is closed, the exit status is 0."""
    n, busy = 500, 100
    raise_nofile(n * 4 + 1000)
    # The actions outlast the start of the shutdown even on a slow build.
    sleep_ms = int(gw.bound(1.5) * 1000)
    g = make_gateway(abuse_config(servers={"socket": {"enabled": True, "port": 0}},
                                  general={"shutdownTimeout": sleep_ms + 5000}))
    slow = json.dumps({"action": "sleepTest", "data": {"sleepDuration": sleep_ms}})
    info = json.dumps({"action": "connection_info"})

    async def go():
        wss, tcps = [], []
        for start in range(0, n, BATCH):
            wss += await asyncio.gather(*(g.ws_connect(open_timeout=20)
                                          for _ in range(start, min(n, start + BATCH))))
            tcps += await asyncio.gather(*(asyncio.open_connection(g.socket_host, g.socket_port)
                                           for _ in range(start, min(n, start + BATCH))))
        for ws in wss[:busy]:
            await ws.send(slow)
            await ws.send(info)
        for _, writer in tcps[:busy]:
            writer.write(slow.encode() + b"\ndetailsView\n")
        # Each busy connection answers while its action is pending: they are all running.
        ws_info = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 10) for ws in wss[:busy]))
        tcp_info = await asyncio.gather(*(asyncio.wait_for(r.readline(), 10)
                                          for r, _ in tcps[:busy]))
        assert [json.loads(a)["data"]["pendingActions"] for a in ws_info] == [2] * busy
        assert [json.loads(a)["data"]["pendingActions"] for a in tcp_info] == [1] * busy
        t0 = time.monotonic()
        offset = g.log_size()
        g.signal(signal.SIGTERM)
        assert await asyncio.to_thread(
            g.wait_for_log, r"shutting down: waiting for %d in-flight actions" % (2 * busy), 10,
            offset), g.describe()
        ws_answers = await asyncio.gather(*(asyncio.wait_for(ws.recv(), sleep_ms / 1000 + 10)
                                            for ws in wss[:busy]))
        tcp_answers = await asyncio.gather(*(asyncio.wait_for(r.readline(), sleep_ms / 1000 + 10)
                                             for r, _ in tcps[:busy]))

        async def ws_closed(ws):
            try:
                await asyncio.wait_for(ws.recv(), 5)
                return False
            except websockets.ConnectionClosed:
                return True
            except asyncio.TimeoutError:
                return False

        closed = await asyncio.gather(*(ws_closed(ws) for ws in wss))
        eofs = await asyncio.gather(*(asyncio.wait_for(r.read(), 5) for r, _ in tcps))
        for _, writer in tcps:
            writer.close()
        return t0, ws_answers, tcp_answers, closed, eofs

    t0, ws_answers, tcp_answers, closed, eofs = run(go(), timeout=55)
    assert all(json.loads(a)["status"] == 200 for a in ws_answers), ws_answers[:3]
    assert all(json.loads(a)["status"] == 200 for a in tcp_answers), tcp_answers[:3]
    assert all(closed), "%d of %d WebSockets still open after shutdown" % (
        closed.count(False), n)
    assert all(e == b"" for e in eofs), "a socket got more than its answer at shutdown"
    rc = g.wait(10)
    assert rc == 0, "exit status %r\n%s" % (rc, g.describe())
    assert time.monotonic() - t0 < sleep_ms / 1000 + gw.bound(4.5)
