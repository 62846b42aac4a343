"""HTTP/2 on the web listener (issue 16, docs/http.md "HTTP/2"): cleartext with prior knowledge,
driven by real clients: curl --http2-prior-knowledge, nghttp and h2load (Debian's
nghttp2-client), and Python's h2 (Debian's python3-h2) for what a well-behaved client does not
do (resets, oversized header blocks, too many streams, garbage)."""

import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess

import pytest

import gateway as gw

h2 = pytest.importorskip("h2")
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402
import h2.errors  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def curl(g, path, *args, timeout=10.0):
    """curl --http2-prior-knowledge: (status, headers dict, body bytes, http_version)."""
    out = subprocess.run(
        ["curl", "-s", "-S", "--http2-prior-knowledge", "-D", "-", "-o", "-",
         "-w", "\n%{http_version}", "--max-time", str(gw.bound(timeout))] + list(args)
        + ["http://%s:%d%s" % (g.host, g.port, path)],
        capture_output=True, timeout=gw.bound(timeout + 5))
    assert out.returncode == 0, out.stderr
    raw, _, version = out.stdout.rpartition(b"\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/2 "), lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().decode().lower()] = v.strip().decode()
    return int(lines[0].split()[1]), headers, body, version.decode()


class Client:
    """A plain-socket HTTP/2 client on python3-h2, for exact frames."""

    def __init__(self, g, timeout=5.0, **settings):
        self.sock = socket.create_connection((g.host, g.port), timeout=gw.bound(timeout))
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.conn.update_settings(settings) if settings else None
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, method="GET", headers=(), body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")]
        self.conn.send_headers(sid, hs + list(headers), end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def read(self, until, limit=200):
        """Read events until until(events) is true (or the server closes)."""
        for _ in range(limit):
            if until(self.events):
                return self.events
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                self.closed = True
                break
            try:
                self.events.extend(self.conn.receive_data(data))
            except h2.exceptions.ProtocolError:
                break
            self.flush()
        return self.events

    def answer(self, sid):
        """(status, headers, body) of stream 'sid', read to its end."""
        ended = lambda ev: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                               and e.stream_id == sid for e in ev)
        self.read(ended)
        status, headers, body = None, {}, b""
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = dict(e.headers)
                status = int(headers[":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
                self.conn.acknowledge_received_data(e.flow_controlled_length, sid)
        self.flush()
        return status, headers, body

    def reset_code(self, sid):
        for e in self.events:
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                return e.error_code
        return None

    def close(self):
        self.sock.close()


def read_frames(sock, timeout=3.0):
    """Raw frames (type, flags, stream, payload) until the server closes."""
    sock.settimeout(gw.bound(timeout))
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        ftype, flags, sid = data[3], data[4], struct.unpack(">I", data[5:9])[0] & 0x7FFFFFFF
        frames.append((ftype, flags, sid, data[9:9 + length]))
        data = data[9 + length:]
    return frames


def goaway_code(frames):
    for ftype, _, _, payload in frames:
        if ftype == 7:
            return struct.unpack(">I", payload[4:8])[0]
    return None


# --- curl ----------------------------------------------------------------------------


def test_get_action(gateway):
    status, headers, body, version = curl(gateway, "/api/randomNumber")
    assert version == "2"
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert int(headers["content-length"]) == len(body)
    assert "randomNumber" in json.loads(body)


def test_post_json_body(gateway):
    status, _, body, _ = curl(gateway, "/api/echo_params", "-H", "Content-Type: application/json",
                              "--data-binary", '{"a":"b","n":3}')
    assert status == 200, body
    params = json.loads(body)["params"]
    assert params["a"] == "b" and params["n"] == 3


def test_not_found(gateway):
    status, _, body, _ = curl(gateway, "/api/noSuchAction")
    assert status == 404
    assert json.loads(body)["error"]


def test_static_file_and_head(gateway):
    data = os.urandom(300000)  # several chunks of the file streamer, past the stream window
    with open(os.path.join(gateway.workdir, "public", "h2.bin"), "wb") as f:
        f.write(data)
    status, headers, body, _ = curl(gateway, "/public/h2.bin")
    assert status == 200
    assert body == data
    assert headers["content-length"] == str(len(data))
    status, headers, _, _ = curl(gateway, "/public/h2.bin", "-I")  # (-I prints the head as body)
    assert status == 200 and headers["content-length"] == str(len(data))
    status, _, _, _ = curl(gateway, "/public/h2.bin", "-H", "If-None-Match: " + headers["etag"])
    assert status == 304


def test_health_and_ready(gateway):
    status, headers, body, _ = curl(gateway, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["cache-control"] == "no-store"


def test_request_headers_reach_ctx(gateway):
    status, headers, body, _ = curl(gateway, "/api/connection_info", "-H", "X-Custom: one",
                                    "-H", "X-Request-Id: h2-req-1", "-H", "Cookie: a=1",
                                    "-H", "Cookie: b=2")
    assert status == 200, body
    got = json.loads(body)
    seen = got["headers"]
    assert seen["x-custom"] == "one"
    assert seen["host"] == "%s:%d" % (gateway.host, gateway.port)  # from :authority
    assert seen["cookie"] == "a=1; b=2"  # RFC 9113 §8.2.3
    assert got["remoteIP"] == "127.0.0.1"
    assert headers["x-request-id"] == "h2-req-1"


def test_response_headers(gateway):
    status, headers, body, _ = curl(gateway, "/api/set_headers")
    assert status == 200, body
    assert headers["x-kept"] == "yes"
    # What HTTP/2 forbids or frames itself is not sent as the action set it.
    assert "connection" not in headers and "transfer-encoding" not in headers
    assert headers["content-length"] == str(len(body))


def curl_h2c(g, path, *args):
    """curl --http2 on http:// (Upgrade: h2c): (status, http_version, body)."""
    out = subprocess.run(["curl", "-s", "-S", "--http2", "-w", "\n%{http_code} %{http_version}",
                          "--max-time", str(gw.bound(10))] + list(args)
                         + ["http://%s:%d%s" % (g.host, g.port, path)],
                         capture_output=True, timeout=gw.bound(15))
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    status, version = tail.decode().split()
    return int(status), version, body


def test_upgrade_h2c(gateway):
    # The request that asks is answered on stream 1 after the 101; the next ones on the same
    # connection are HTTP/2 streams.
    status, version, body = curl_h2c(gateway, "/api/randomNumber")
    assert (status, version) == (200, "2") and b"randomNumber" in body
    with open(os.path.join(gateway.workdir, "public", "up.txt"), "w") as f:
        f.write("upgraded\n")
    status, version, body = curl_h2c(gateway, "/public/up.txt")
    assert (status, version, body) == (200, "2", b"upgraded\n")
    out = subprocess.run(["curl", "-s", "-S", "--http2", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{http_version} ",
                          "--max-time", str(gw.bound(10)),
                          "http://%s:%d/api/randomNumber" % (gateway.host, gateway.port),
                          "http://%s:%d/health" % (gateway.host, gateway.port)],
                         capture_output=True, timeout=gw.bound(15))
    assert out.stdout == b"200 2 200 2 ", out
    # A request with a body is not upgraded (its body would come before the switch).
    status, version, body = curl_h2c(gateway, "/api/echo_params", "-H", "Content-Type: application/json",
                                     "--data-binary", '{"a":"b"}')
    assert (status, version) == (200, "1.1") and json.loads(body)["params"]["a"] == "b"


@pytest.mark.asan
def test_upgrade_h2c_bad_settings(gateway):
    raw = gateway.raw(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      b"Upgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 101 "), raw
    frames = []
    data = raw.split(b"\r\n\r\n", 1)[1]
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        frames.append((data[3], 0, 0, data[9:9 + length]))
        data = data[9 + length:]
    assert goaway_code(frames) == 1, raw
    gateway.assert_serving()


def test_http11_still_served(gateway):
    assert gateway.get("/api/randomNumber")[0] == 200


# --- several streams on one connection --------------------------------------------------


def test_concurrent_streams_one_connection(gateway):
    # never_next answers only at actionTimeout (1 s in the test config): the streams opened
    # after it on the same connection are answered meanwhile.
    c = Client(gateway)
    try:
        slow = c.request("/api/never_next")
        fast = [c.request("/api/randomNumber?i=%d" % i) for i in range(5)]
        for sid in fast:
            status, _, body = c.answer(sid)
            assert status == 200 and b"randomNumber" in body
        ends = [e.stream_id for e in c.events if isinstance(e, h2.events.StreamEnded)]
        assert slow not in ends, ends
        status, _, body = c.answer(slow)
        assert status == 504, body
    finally:
        c.close()


def test_nghttp_many_streams(gateway):
    urls = ["http://%s:%d/api/sleep_then?i=%d" % (gateway.host, gateway.port, i) for i in range(8)]
    out = subprocess.run(["nghttp", "-n", "-s", "-t", str(int(gw.bound(10)))] + urls,
                         capture_output=True, timeout=gw.bound(20))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(b" 200 ") == 8, out.stdout


def test_h2load(gateway):
    out = subprocess.run(["h2load", "-n", "300", "-c", "2", "-m", "10",
                          "http://%s:%d/api/randomNumber" % (gateway.host, gateway.port)],
                         capture_output=True, timeout=gw.bound(30))
    assert out.returncode == 0, out.stderr
    assert b"300 succeeded, 0 failed" in out.stdout, out.stdout


# --- cancel, limits, abuse --------------------------------------------------------------


@pytest.mark.asan
def test_stream_reset_cancels_the_action(gateway):
    offset = gateway.log_size()
    c = Client(gateway)
    try:
        sid = c.request("/api/never_next")
        assert gateway.wait_for_log(r"connLogger create id=", timeout=gw.bound(3), since=offset)
        c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        m = gateway.wait_for_log(r"action=never_next type=web status=(\d+)", timeout=gw.bound(3),
                                 since=offset)
        assert m and m.group(1) == "499", gateway.log_since(offset)
        # The connection goes on.
        status, _, _ = c.answer(c.request("/api/randomNumber"))
        assert status == 200
    finally:
        c.close()


@pytest.mark.asan
def test_huge_header_block_gets_431(gateway):
    c = Client(gateway)
    try:
        sid = c.request("/api/randomNumber", headers=[("x-big", "a" * 20000)])
        status, _, body = c.answer(sid)
        assert status == 431, body
        assert json.loads(body)["error"] == "request headers are too large"
        many = [("x-h%d" % i, "v") for i in range(150)]
        status, _, body = c.answer(c.request("/api/randomNumber", headers=many))
        assert status == 431 and json.loads(body)["error"] == "too many request headers"
        status, _, _ = c.answer(c.request("/api/randomNumber"))
        assert status == 200
    finally:
        c.close()
    gateway.assert_serving()


@pytest.mark.asan
def test_body_over_max_body_size_gets_413(make_gateway):
    g = make_gateway({"servers": {"web": {"maxBodySize": 1000}}})
    c = Client(g)
    try:
        sid = c.request("/api/echo_params", method="POST",
                        headers=[("content-type", "application/json")], body=b"x" * 5000)
        status, _, body = c.answer(sid)
        assert status == 413, body
        # Announced too large: refused from the head alone.
        sid = c.request("/api/echo_params", method="POST",
                        headers=[("content-length", "100000")], end=False)
        status, _, _ = c.answer(sid)
        assert status == 413
    finally:
        c.close()
    g.assert_serving()


@pytest.mark.asan
def test_too_many_streams_refused(make_gateway):
    g = make_gateway({"servers": {"web": {"http2": {"maxConcurrentStreams": 4}}}})
    c = Client(g)
    try:
        c.read(lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
        # Ignore the advertised limit: open 6 streams whose requests never end.
        c.conn.remote_settings._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = \
            collections.deque([100])
        sids = [c.request("/api/echo_params", method="POST", end=False) for _ in range(6)]
        c.read(lambda ev: any(isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated))
                              for e in ev))
        resets = {e.stream_id: e.error_code for e in c.events if isinstance(e, h2.events.StreamReset)}
        terminated = [e for e in c.events if isinstance(e, h2.events.ConnectionTerminated)]
        assert resets or terminated, c.events
        if resets:
            assert set(resets) <= set(sids[4:]), resets
            assert all(code in (h2.errors.ErrorCodes.REFUSED_STREAM, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                       for code in resets.values()), resets
    finally:
        c.close()
    g.assert_serving()


@pytest.mark.asan
def test_garbage_after_preface_goaway(gateway):
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as s:
        s.sendall(PREFACE + b"\xff" * 64)
        frames = read_frames(s)
    assert goaway_code(frames) == 1, frames  # PROTOCOL_ERROR
    gateway.assert_serving()


@pytest.mark.asan
def test_bad_frames_and_early_close(gateway):
    # A DATA frame on stream 0, then a HEADERS frame with an HPACK block that does not decode.
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as s:
        s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                  + b"\x00\x00\x04\x00\x01\x00\x00\x00\x00" + b"abcd")
        assert goaway_code(read_frames(s)) == 1
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as s:
        s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                  + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff\xff\xff\xff\xff")
        assert goaway_code(read_frames(s)) == 9  # COMPRESSION_ERROR
    # A preface cut short, then the close: closed at once.
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as s:
        s.sendall(PREFACE[:10])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(gw.bound(2))
        assert s.recv(100) == b""
    c = Client(gateway)
    c.request("/api/sleep_then")
    c.close()  # while the action runs
    gateway.assert_serving()


def test_preface_split_across_reads(gateway):
    with socket.create_connection((gateway.host, gateway.port), timeout=5) as s:
        s.sendall(PREFACE[:5])
        s.sendall(PREFACE[5:20])
        s.sendall(PREFACE[20:] + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        s.settimeout(gw.bound(3))
        head = s.recv(9)
        assert head[3] == 4, head  # the server's SETTINGS


def test_disabled_is_http11(make_gateway):
    # Read as an HTTP/1.1 request with an unknown method, as before HTTP/2 was served.
    g = make_gateway({"servers": {"web": {"http2": {"enabled": False}}}})
    raw = g.raw(PREFACE)
    assert raw.startswith(b"HTTP/1.1 501"), raw


def test_goaway_on_shutdown_after_answers(make_gateway):
    # SIGTERM: GOAWAY (NO_ERROR, naming stream 1) at once, stream 1 still answered, then the
    # close. Read as raw frames: python3-h2 stops reading frames once it has seen a GOAWAY.
    g = make_gateway()
    c = Client(g)
    try:
        c.read(lambda ev: any(isinstance(e, h2.events.SettingsAcknowledged) for e in ev))
        sid = c.request("/api/sleepTest?sleepDuration=800")  # still running at the SIGTERM
        assert g.wait_for_log(r"connLogger create id=", timeout=gw.bound(3))
        g.signal(signal.SIGTERM)
        frames = read_frames(c.sock, timeout=5.0)
    finally:
        c.close()
    kinds = [(ftype, sid_) for ftype, _, sid_, _ in frames]
    goaway = kinds.index((7, 0))
    assert struct.unpack(">II", frames[goaway][3][:8]) == (sid, 0), frames
    data = [f for f in frames if f[0] == 0 and f[2] == sid]
    assert data and data[-1][1] & 1 and b'"sleepDuration":800' in b"".join(f[3] for f in data), frames
    assert kinds.index((0, sid)) > goaway, kinds
    assert g.wait(timeout=gw.bound(10)) == 0


@pytest.mark.skipif(not shutil.which("h2load"), reason="h2load")
def test_tools_present():
    assert shutil.which("nghttp")


@pytest.mark.asan
def test_stalled_body_gets_408_and_idle_connection_goaway(make_gateway):
    g = make_gateway({"servers": {"web": {"bodyTimeout": 1000, "keepAliveTimeout": 1500}}})
    c = Client(g, timeout=8.0)
    try:
        sid = c.request("/api/echo_params", method="POST", body=b'{"a":', end=False)
        status, _, body = c.answer(sid)
        assert status == 408, body
        assert json.loads(body)["error"] == "request body timeout"
        # No stream left: after keepAliveTimeout, GOAWAY and the close.
        frames = read_frames(c.sock, timeout=6.0)
        assert goaway_code(frames) == 0, frames
    finally:
        c.close()
    g.assert_serving()


@pytest.mark.asan
def test_closed_window_answer_reset_after_send_timeout(make_gateway):
    # The client opens no window for the body of a file: its stream is reset after sendTimeout.
    g = make_gateway({"servers": {"web": {"sendTimeout": 1000}}})
    with open(os.path.join(g.workdir, "public", "w.bin"), "wb") as f:
        f.write(b"w" * 200000)
    c = Client(g, timeout=8.0)
    try:
        c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        c.flush()
        sid = c.request("/public/w.bin")
        c.read(lambda ev: any(isinstance(e, h2.events.StreamReset) and e.stream_id == sid for e in ev))
        assert c.reset_code(sid) == h2.errors.ErrorCodes.INTERNAL_ERROR, c.events
        c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
        c.flush()
        status, _, body = c.answer(c.request("/api/randomNumber"))
        assert status == 200 and b"randomNumber" in body
    finally:
        c.close()
    g.assert_serving()


def send_body(c, sid, n):
    """Send n bytes on stream sid as the flow control windows open; returns what was sent
    before the stream was reset or closed."""
    sent = 0
    for _ in range(1000):
        if c.reset_code(sid) is not None or sent >= n:
            break
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size, n - sent)
        if room > 0:
            c.conn.send_data(sid, b"x" * room)
            c.flush()
            sent += room
            continue
        data = c.sock.recv(65536)  # the window is shut: wait for a WINDOW_UPDATE (or a reset)
        if not data:
            break
        c.events.extend(c.conn.receive_data(data))
        c.flush()
    return sent


@pytest.mark.asan
def test_bodies_held_by_one_connection_are_bounded(make_gateway):
    # Each stream may send maxBodySize; together they may hold 4 x maxBodySize (1 MiB at
    # least): the stream whose DATA would pass that is refused (REFUSED_STREAM, retryable).
    g = make_gateway({"servers": {"web": {"maxBodySize": 300000,
                                          "http2": {"initialWindowSize": 1000000}}}})
    c = Client(g, timeout=8.0)
    try:
        sids = [c.request("/api/echo_params", method="POST", end=False) for _ in range(5)]
        for sid in sids[:4]:
            assert send_body(c, sid, 250000) == 250000
        send_body(c, sids[4], 250000)
        c.read(lambda ev: c.reset_code(sids[4]) is not None)
        assert c.reset_code(sids[4]) == h2.errors.ErrorCodes.REFUSED_STREAM, c.events
        c.conn.end_stream(sids[0])
        c.flush()
        status, _, _ = c.answer(sids[0])
        assert status == 200  # the body held to its end is answered
    finally:
        c.close()
    g.assert_serving()


# --- under TLS: ALPN "h2" ---------------------------------------------------------------
# Active once the web listener has TLS (servers.web.tls): skipped by a binary without it.


def _binary_has_tls(folder):
    path = os.path.join(folder, "tls-probe.lua")
    with open(path, "w") as f:
        f.write('return { servers = { web = { tls = { cert = "/nonexistent", key = "/nonexistent" } } } }\n')
    out = subprocess.run([gw.gateway_binary(), "--check", "--config", path], capture_output=True,
                         timeout=gw.bound(30))
    return b"servers.web.tls: unknown key" not in out.stdout + out.stderr


@pytest.fixture(scope="module")
def tls_gateway(redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("h2tls")
    if not shutil.which("openssl") or not _binary_has_tls(str(workdir)):
        pytest.skip("this binary has no TLS listener (servers.web.tls)")
    cert, key = os.path.join(str(workdir), "cert.pem"), os.path.join(str(workdir), "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=gw.bound(30))
    config = gw.default_config(str(workdir), redis_url)
    config["servers"]["web"]["tls"] = {"cert": cert, "key": key}
    with open(os.path.join(str(workdir), "public", "big.bin"), "wb") as f:
        f.write(b"b" * 1000003)
    with gw.serving(workdir, config) as g:
        g.cert = cert
        yield g


@pytest.mark.asan
def test_tls_alpn_h2_with_curl(tls_gateway):
    g = tls_gateway
    base = "https://localhost:%d" % g.port
    common = ["curl", "-sS", "--http2", "--cacert", g.cert, "--resolve", "localhost:%d:127.0.0.1" % g.port,
              "--max-time", str(gw.bound(10))]
    out = subprocess.run(common + ["-w", "\n%{http_code} %{http_version}", base + "/api/connection_info"],
                         capture_output=True, timeout=gw.bound(15))
    body, _, tail = out.stdout.rpartition(b"\n")
    assert tail == b"200 2", out
    assert json.loads(body)["headers"]["host"] == "localhost:%d" % g.port
    out = subprocess.run(common + ["-o", "-", base + "/public/big.bin"], capture_output=True,
                         timeout=gw.bound(15))
    assert out.stdout == b"b" * 1000003, out.stderr


@pytest.mark.asan
def test_tls_many_streams_with_nghttp(tls_gateway):
    g = tls_gateway
    urls = ["https://127.0.0.1:%d/api/sleep_then?i=%d" % (g.port, i) for i in range(6)]
    out = subprocess.run(["nghttp", "-n", "-s", "-t", str(int(gw.bound(10)))] + urls,
                         capture_output=True, timeout=gw.bound(20))
    assert out.returncode == 0, out.stderr  # nghttp does not check the certificate
    assert out.stdout.count(b" 200 ") == 6, out.stdout


@pytest.mark.asan
def test_tls_no_h2c_upgrade(tls_gateway):
    # Under TLS a protocol is chosen by ALPN only: Upgrade: h2c is answered as HTTP/1.1.
    g = tls_gateway
    out = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", g.cert, "--resolve",
                          "localhost:%d:127.0.0.1" % g.port, "-H", "Connection: Upgrade, HTTP2-Settings",
                          "-H", "Upgrade: h2c", "-H", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
                          "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", str(gw.bound(10)),
                          "https://localhost:%d/api/randomNumber" % g.port], capture_output=True,
                         timeout=gw.bound(15))
    assert out.stdout == b"200 1.1", out
