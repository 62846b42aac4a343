"""TLS on the web listener (servers.web.tls, docs/http.md "TLS"): HTTPS with real clients
(curl --cacert, Python's ssl), wss:// on the default path and a consumer's, the plain
redirect listener, config errors under --check, certificate rotation on SIGHUP, several
workers, and the abuse a TLS port gets (silence, plain HTTP, garbage, a cut ClientHello).

The certificate is made at test time with the openssl command line (self-signed, for
localhost and 127.0.0.1)."""

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
TLS_ACTIONS = os.path.join(HERE, "tls_actions")
WAIT = 5.0

# Every test here runs against the sanitizer build too (the abuse ones are the point of it).
pytestmark = [pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None,
                                 reason="needs the openssl and curl commands"),
              pytest.mark.asan]


def make_cert(folder, name="cert", cn="localhost"):
    """A self-signed P-256 certificate and key for localhost/127.0.0.1: (cert, key) paths."""
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + "-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key


def client_context(cafile, alpn=None, maximum=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def tls_config(workdir, redis_url, cert, key, **tls):
    os.makedirs(str(workdir), exist_ok=True)
    config = gw.default_config(str(workdir), redis_url, actions=[TLS_ACTIONS])
    config["servers"]["web"]["tls"] = dict({"cert": cert, "key": key}, **tls)
    return config


def curl(*args, timeout=20):
    res = subprocess.run(["curl", "-sS", "--max-time", "15"] + list(args), capture_output=True,
                         timeout=timeout)
    return res


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("certs"))
    return make_cert(folder)


@pytest.fixture(scope="module")
def g(certs, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = certs
    config = tls_config(workdir, redis_url, cert, key, redirectPort=0)
    config["servers"]["web"]["headerTimeout"] = 1000
    with open(os.path.join(str(workdir), "public", "hello.txt"), "w") as f:
        f.write("hello over TLS\n")
    with open(os.path.join(str(workdir), "public", "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    with gw.serving(workdir, config) as g:
        g.public = os.path.join(str(workdir), "public")
        deadline = time.monotonic() + gw.bound(5)
        while g.redirect_port is None and time.monotonic() < deadline:
            time.sleep(0.02)
        yield g


def https(g, certs):
    return http.client.HTTPSConnection("127.0.0.1", g.port, timeout=WAIT,
                                       context=client_context(certs[0]))


def alive(g, certs):
    c = https(g, certs)
    try:
        c.request("GET", "/api/scheme")
        r = c.getresponse()
        return r.status == 200 and json.loads(r.read())["secure"] is True
    finally:
        c.close()


# -- HTTPS with real clients -----------------------------------------------------------------

def test_listening_line_says_https(g):
    assert g.scheme == "https"
    assert "listening web https://127.0.0.1:%d" % g.port in g.stdout_text()


def test_curl_get_and_post(g, certs):
    base = "https://127.0.0.1:%d" % g.port
    res = curl("--cacert", certs[0], base + "/api/scheme")
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["secure"] is True and body["type"] == "web", body
    res = curl("--cacert", certs[0], "-H", "Content-Type: application/json", "--data",
               json.dumps({"pad": "p" * 50000}), base + "/api/scheme")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["padLength"] == 50000


def test_curl_keeps_the_connection_alive(g, certs):
    base = "https://localhost:%d/api/scheme" % g.port
    res = curl("--cacert", certs[0], "-w", "\n%{num_connects}\n", base, base, base, base)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().split("\n")
    connects = [int(x) for x in lines if x.strip().isdigit()]
    assert connects == [1, 0, 0, 0], res.stdout  # one handshake, four requests


def test_keep_alive_many_requests_on_one_connection(g, certs):
    c = https(g, certs)
    try:
        for i in range(30):
            c.request("POST", "/api/scheme", body=json.dumps({"pad": "x" * i}),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 200
            assert json.loads(r.read())["padLength"] == i
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        c.close()


def test_a_large_response(g, certs):
    res = curl("--cacert", certs[0], "https://127.0.0.1:%d/api/scheme?size=3000000" % g.port)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["big"] == "x" * 3000000


def test_static_files(g, certs):
    base = "https://127.0.0.1:%d/public/" % g.port
    res = curl("--cacert", certs[0], base + "hello.txt")
    assert res.returncode == 0 and res.stdout == b"hello over TLS\n", res
    res = curl("--cacert", certs[0], base + "big.bin")
    assert res.returncode == 0, res.stderr
    with open(os.path.join(g.public, "big.bin"), "rb") as f:
        assert res.stdout == f.read()


def test_openapi_servers_say_https(g, certs):
    c = https(g, certs)
    try:
        c.request("GET", "/api/openapi.json")
        doc = json.loads(c.getresponse().read())
    finally:
        c.close()
    assert doc["servers"] == [{"url": "https://127.0.0.1:%d" % g.port}], doc["servers"]


def test_alpn_offers_h2_then_http11(g, certs):
    # "h2" when offered (servers.web.http2.enabled; test_http2.py serves it); a client that
    # then speaks HTTP/1.1 anyway is still served as HTTP/1.1.
    for offered, selected in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1"), (None, None)):
        with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as raw:
            with client_context(certs[0], alpn=offered).wrap_socket(raw, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == selected, offered
                s.sendall(b"GET /api/scheme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200 "), data[:200]


def test_connection_close_ends_with_close_notify(g, certs):
    """A client reading to the end sees a clean TLS close, not a cut."""
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as raw:
        with client_context(certs[0]).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /api/scheme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)  # raises SSLEOFError on a close without close_notify
                if not chunk:
                    break
                data += chunk
            assert b"Connection: close" in data


# -- wss:// ----------------------------------------------------------------------------------

async def ws_talk(g, certs, path, messages):
    import websockets
    out = []
    async with websockets.connect("wss://localhost:%d%s" % (g.port, path), ssl=client_context(certs[0]),
                                  ping_interval=None, open_timeout=WAIT, close_timeout=3,
                                  max_size=2 ** 24) as ws:
        for m in messages:
            await ws.send(json.dumps(m))
            out.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    return out


def test_wss_on_the_default_path(g, certs):
    pytest.importorskip("websockets")
    big = "y" * 600000  # more than the tunnel holds at once, both ways
    answers = asyncio.run(asyncio.wait_for(ws_talk(g, certs, "/ws", [
        {"action": "scheme", "request_id": 1},
        {"action": "scheme", "data": {"pad": big, "size": 700000}, "request_id": 2},
        {"action": "scheme", "request_id": 3},
    ]), 30))
    assert [a["request_id"] for a in answers] == [1, 2, 3]
    assert answers[0]["data"]["secure"] is True and answers[0]["data"]["type"] == "websocket", answers[0]
    assert answers[1]["data"]["padLength"] == 600000 and len(answers[1]["data"]["big"]) == 700000


def test_wss_on_a_consumers_path(g, certs):
    pytest.importorskip("websockets")
    [a] = asyncio.run(asyncio.wait_for(ws_talk(g, certs, "/ws/tls/7/", [{"action": "whoami"}]), 20))
    assert a["status"] == 200, a
    assert a["data"] == {"n": "7", "secure": True, "type": "websocket"}, a


def test_wss_many_connections_closed_by_either_side(g, certs):
    pytest.importorskip("websockets")
    import websockets

    async def go():
        conns = []
        for _ in range(20):
            conns.append(await websockets.connect("wss://localhost:%d/ws" % g.port, ssl=client_context(certs[0]),
                                                  ping_interval=None, open_timeout=WAIT, close_timeout=3))
        for i, ws in enumerate(conns):
            await ws.send(json.dumps({"action": "scheme", "request_id": i}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["request_id"] == i
        for ws in conns[:10]:
            await ws.close()
        for ws in conns[10:]:  # cut without a close frame
            ws.transport.abort()
    asyncio.run(asyncio.wait_for(go(), 30))
    assert alive(g, certs)


def test_shutdown_closes_open_wss_connections_with_1001(certs, make_gateway, redis_url, tmp_path):
    pytest.importorskip("websockets")
    import websockets
    g = make_gateway(config=tls_config(tmp_path / "w", redis_url, *certs), workdir=tmp_path / "w")

    async def go():
        async with websockets.connect("wss://localhost:%d/ws" % g.port, ssl=client_context(certs[0]),
                                      ping_interval=None, open_timeout=WAIT, close_timeout=3) as ws:
            await ws.send(json.dumps({"action": "scheme"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["data"]["secure"] is True
            g.signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), gw.bound(8))
            return closed.value.code
    assert asyncio.run(asyncio.wait_for(go(), 30)) == 1001
    assert g.wait(gw.bound(8)) == 0


def test_wss_client_that_does_not_read_is_dropped_not_buffered(certs, make_gateway, redis_url, tmp_path):
    """The tunnel stops reading lws's end while the client's queue is full, so lws's own
    queue fills and general.maxOutputBuffer drops the client, as on ws://."""
    pytest.importorskip("websockets")
    import websockets
    config = tls_config(tmp_path / "w", redis_url, *certs)
    config["general"]["maxOutputBuffer"] = 1048576
    g = make_gateway(config=config, workdir=tmp_path / "w")

    async def go():
        ws = await websockets.connect("wss://localhost:%d/ws" % g.port, ssl=client_context(certs[0]),
                                      ping_interval=None, open_timeout=WAIT, close_timeout=3,
                                      max_size=2 ** 24, max_queue=1, read_limit=2 ** 16)
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        ws.transport.pause_reading()
        try:
            for i in range(150):  # paced: lws writes each answer out before the next comes
                await ws.send(json.dumps({"action": "scheme", "data": {"size": 200000}, "request_id": i}))
                await asyncio.sleep(0.02)
            await asyncio.sleep(gw.bound(2))
        except (websockets.exceptions.ConnectionClosed, ConnectionResetError):
            return 0  # dropped already
        ws.transport.resume_reading()
        got = 0
        try:
            while True:
                await asyncio.wait_for(ws.recv(), gw.bound(5))
                got += 1
        except websockets.exceptions.ConnectionClosed:
            pass
        return got
    got = asyncio.run(asyncio.wait_for(go(), 60))
    assert got < 150, "30 MB of answers were buffered for a client that did not read"
    assert g.wait_for_log(r"maxOutputBuffer|output buffer", timeout=gw.bound(3)), g.describe()
    assert alive(g, certs)


# -- the redirect listener ---------------------------------------------------------------------

def raw_http(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def raw_head(port, data):
    """Send 'data', return the answer's head (the connection may stay open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_redirect_listener_answers_308(g):
    assert g.redirect_port, g.stdout_text()
    conn = http.client.HTTPConnection("127.0.0.1", g.redirect_port, timeout=WAIT)
    try:
        for method, target, host, want in (
                ("GET", "/api/x?y=1&z=%20", "example.com:8080", "https://example.com:%d/api/x?y=1&z=%%20"),
                ("POST", "/public/a.txt", "[::1]:80", "https://[::1]:%d/public/a.txt"),
                ("GET", "/", "localhost", "https://localhost:%d/")):
            conn.request(method, target, body=b"{}" if method == "POST" else None, headers={"Host": host})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 308, body
            assert r.getheader("Location") == want % g.port
            assert json.loads(body) == {"location": want % g.port}
    finally:
        conn.close()


def test_redirect_refuses_a_bad_or_missing_host(g):
    out = raw_http(g.redirect_port, b"GET / HTTP/1.1\r\nHost: evil.com/x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"invalid Host header" in out, out
    out = raw_http(g.redirect_port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"missing Host header" in out, out


def test_curl_follows_the_redirect(g, certs):
    res = curl("-L", "--cacert", certs[0], "http://127.0.0.1:%d/api/scheme" % g.redirect_port)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["secure"] is True


def test_a_websocket_upgrade_on_the_redirect_port_is_redirected(g):
    out = raw_head(g.redirect_port, b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 308 "), out
    assert b"Location: https://localhost:%d/ws\r\n" % g.port in out


# -- abuse (a TLS port costs no more than a plain one) ------------------------------------------

@pytest.mark.asan
def test_plain_http_on_the_tls_port_gets_a_plaintext_400(g, certs):
    out = raw_http(g.port, b"GET /api/scheme HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out
    assert b"plain HTTP request sent to the HTTPS port" in out
    assert alive(g, certs)


@pytest.mark.asan
def test_a_silent_client_is_closed_by_the_header_timeout(g, certs):
    """headerTimeout is 1 s here: a TCP connection that never says hello is closed, silently."""
    with socket.create_connection(("127.0.0.1", g.port), timeout=gw.bound(6)) as s:
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < gw.bound(4)
    assert alive(g, certs)


@pytest.mark.asan
def test_a_cut_client_hello_is_closed_by_the_header_timeout(g, certs):
    hello = bytearray()

    # A real ClientHello, of which only the first bytes are sent.
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(certs[0]).wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello += out.read()
    assert len(hello) > 20
    with socket.create_connection(("127.0.0.1", g.port), timeout=gw.bound(6)) as s:
        s.sendall(bytes(hello[:20]))
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < gw.bound(4)
    assert alive(g, certs)


@pytest.mark.asan
def test_a_handshake_then_silence_is_closed_by_the_header_timeout(g, certs):
    with socket.create_connection(("127.0.0.1", g.port), timeout=gw.bound(6)) as raw:
        with client_context(certs[0]).wrap_socket(raw, server_hostname="localhost") as s:
            started = time.monotonic()
            try:
                assert s.recv(100) == b""
            except (ssl.SSLEOFError, ConnectionResetError):
                pass
            assert time.monotonic() - started < gw.bound(4)


@pytest.mark.asan
def test_garbage_and_broken_client_hellos_are_closed_at_once(g, certs):
    cases = [
        os.urandom(3000),
        b"\x16\x03\x01\x00\x30" + os.urandom(0x30),            # a handshake record of noise
        b"\x16\x03\x01\xff\xff" + b"\x01\x00\xff\xfb" + os.urandom(200),  # a record longer than sent
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",           # a ClientHello of one byte
        b"\x15\x03\x03\x00\x02\x02\x28",                      # an alert first
        b"\x17\x03\x03\x00\x10" + b"\x00" * 16,               # application data before a handshake
    ]
    for data in cases:
        with socket.create_connection(("127.0.0.1", g.port), timeout=gw.bound(6)) as s:
            s.sendall(data)
            started = time.monotonic()
            try:
                while s.recv(65536):
                    pass  # an alert, then the close
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < gw.bound(4), data[:16]
    assert alive(g, certs)


@pytest.mark.asan
def test_clients_that_go_away_mid_answer_or_mid_handshake(g, certs):
    for i in range(10):
        with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as raw:
            if i % 2:
                raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # then gone
                continue
            s = client_context(certs[0]).wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"GET /api/scheme?size=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(100)
            # closed with most of the answer unread
    assert alive(g, certs)


@pytest.mark.asan
def test_tls12_client_refused_when_min_version_is_13(certs, make_gateway):
    g = make_gateway(config=tls_config(os.path.join(os.path.dirname(certs[0]), "g13"), None, *certs,
                                       minVersion="1.3"), workdir=os.path.join(os.path.dirname(certs[0]), "g13"))
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as raw:
        with pytest.raises(ssl.SSLError):
            client_context(certs[0], maximum=ssl.TLSVersion.TLSv1_2).wrap_socket(raw, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", g.port), timeout=WAIT) as raw:
        with client_context(certs[0]).wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == "TLSv1.3"


# -- config errors -------------------------------------------------------------------------------

def check(tmp_path, tls, redis_url=None):
    config = gw.default_config(str(tmp_path), redis_url, actions=[TLS_ACTIONS])
    config["servers"]["web"]["tls"] = tls
    path = gw.write_config(os.path.join(str(tmp_path), "gateway.lua"), config)
    return gw.run_cli(["--check", "--config", path])


def test_check_names_the_key_and_the_file(certs, tmp_path):
    cert, key = certs
    other_cert, other_key = make_cert(str(tmp_path), "other")
    notpem = os.path.join(str(tmp_path), "notpem.txt")
    with open(notpem, "w") as f:
        f.write("hello\n")
    unreadable = os.path.join(str(tmp_path), "secret.pem")
    shutil.copy(key, unreadable)
    os.chmod(unreadable, 0)
    missing = os.path.join(str(tmp_path), "missing.pem")
    cases = [
        ({"cert": missing, "key": key}, "servers.web.tls.cert: cannot read \"%s\": No such file" % missing),
        ({"cert": cert, "key": missing}, "servers.web.tls.key: cannot read \"%s\"" % missing),
        ({"cert": notpem, "key": key}, "servers.web.tls.cert: \"%s\" is not a PEM certificate" % notpem),
        ({"cert": cert, "key": notpem}, "servers.web.tls.key: \"%s\" is not an unencrypted PEM private key" % notpem),
        ({"cert": cert, "key": other_key}, "servers.web.tls.key: \"%s\" does not match the certificate in \"%s\""
         % (other_key, cert)),
        ({"cert": cert}, "servers.web.tls.key: required with servers.web.tls.cert"),
        ({"key": key}, "servers.web.tls.cert: required with servers.web.tls.key"),
        ({"cert": cert, "key": key, "minVersion": "1.1"}, "servers.web.tls.minVersion: must be \"1.2\" or \"1.3\""),
        ({"redirectPort": 8443}, "servers.web.tls.redirectPort: needs servers.web.tls.cert and key"),
        ({"cert": cert, "key": key, "port": 1}, "servers.web.tls.port: unknown key"),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append(({"cert": cert, "key": unreadable}, "servers.web.tls.key: cannot read \"%s\": Permission denied"
                      % unreadable))
    for tls, message in cases:
        res = check(tmp_path, tls)
        assert res.returncode == 1, (tls, res.stdout)
        assert message in res.stderr, (tls, res.stderr)
    res = check(tmp_path, {"cert": cert, "key": key, "minVersion": "1.3", "redirectPort": 0})
    assert res.returncode == 0, res.stderr


def test_startup_fails_on_a_bad_certificate(certs, make_gateway, tmp_path):
    missing = os.path.join(str(tmp_path), "nope.pem")
    g = make_gateway(config=tls_config(tmp_path / "w", None, missing, certs[1]), start=False,
                     workdir=tmp_path / "w", expect_exit=1)
    with pytest.raises(AssertionError):
        g.start()
    assert "servers.web.tls.cert: cannot read" in g.log_text()


# -- reload and workers --------------------------------------------------------------------------

def peer_cn(port, cafile):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        ctx = ssl.create_default_context(cafile=cafile)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def test_sighup_reads_the_certificate_again(make_gateway, redis_url, tmp_path):
    folder = str(tmp_path)
    cert, key = make_cert(folder, "live", cn="first")
    g = make_gateway(config=tls_config(tmp_path / "w", redis_url, cert, key), workdir=tmp_path / "w")
    assert peer_cn(g.port, cert) == "first"
    # An open keep-alive connection keeps working across the rotation.
    kept = http.client.HTTPSConnection("127.0.0.1", g.port, timeout=WAIT, context=client_context(cert))
    kept.request("GET", "/api/scheme")
    assert kept.getresponse().read()
    first = open(cert, "rb").read()
    new_cert, new_key = make_cert(folder, "next", cn="second")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    since = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r"TLS certificate and key read again", timeout=gw.bound(5), since=since), g.describe()
    assert peer_cn(g.port, new_cert) == "second"
    kept.request("GET", "/api/scheme")
    assert json.loads(kept.getresponse().read())["secure"] is True
    kept.close()
    # A broken file on the next reload: logged, and the certificate in use stays.
    with open(key, "w") as f:
        f.write("broken\n")
    since = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r"still serving the certificate loaded before", timeout=gw.bound(5), since=since)
    assert peer_cn(g.port, new_cert) == "second"
    with open(cert, "wb") as f:
        f.write(first)


def test_several_workers_serve_https_and_wss(certs, make_gateway, redis_url, tmp_path):
    config = tls_config(tmp_path / "w", redis_url, *certs, redirectPort=0)
    config["workers"] = 2
    g = make_gateway(config=config, workdir=tmp_path / "w")
    for _ in range(20):  # fresh connections, spread over the workers by the kernel
        assert alive(g, certs)
    deadline = time.monotonic() + gw.bound(5)
    while g.redirect_port is None and time.monotonic() < deadline:
        time.sleep(0.02)
    out = raw_http(g.redirect_port, b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert b"Location: https://localhost:%d/a\r\n" % g.port in out, out
    pytest.importorskip("websockets")
    [a] = asyncio.run(asyncio.wait_for(ws_talk(g, certs, "/ws", [{"action": "scheme"}]), 20))
    assert a["data"]["secure"] is True


def test_plain_http_connections_say_not_secure(make_gateway):
    g = make_gateway({"paths": {"actions": [TLS_ACTIONS]}})
    status, body = g.get("/api/scheme")
    assert status == 200 and body["secure"] is False and body["type"] == "web", body
