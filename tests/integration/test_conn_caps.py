"""Connection caps (issue 14): general.maxConnections and general.maxConnectionsPerIP count every
client connection of a worker: HTTP, WebSocket and TCP together. Past a cap a new connection is
answered at once and closed: HTTP (a WebSocket upgrade too) with a 503 JSON error and
`Connection: close`, TCP with a status 503 envelope line; the connections already open keep
being served, and a place freed is taken again.
"""

import asyncio
import json
import socket
import time

import pytest
import websockets

import gateway as gw


def caps(**general):
    return {"servers": {"socket": {"enabled": True, "port": 0}}, "general": general}


def connect(host, port, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(gw.bound(5))
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def read_all(s):
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def http_get(g, source=None):
    """One request on a fresh connection; the whole answer, read until the server closes."""
    s = connect(g.host, g.port, source)
    try:
        s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_all(s)
    finally:
        s.close()


def tcp_first_line(g, source=None):
    """Connect to the TCP server, ask for paramsView: the first line answered, and the socket."""
    s = connect(g.socket_host, g.socket_port, source)
    try:
        s.sendall(b"paramsView\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[0], s


def assert_http_refused(raw, message):
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), raw
    assert b"\r\nConnection: close" in head, raw
    assert json.loads(body) == {"error": message, "errors": [message]}, raw


def assert_tcp_refused(line, s, message):
    env = json.loads(line)
    assert env["status"] == 503 and env["errors"] == [message], line
    assert read_all(s) == b""  # then closed
    s.close()


async def assert_ws_refused(g, **kw):
    try:
        async with g.ws_connect(**kw):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == 503, e
    else:
        raise AssertionError("WebSocket upgrade past the cap was accepted")


async def ws_call(ws, action):
    await ws.send(json.dumps({"action": action}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), gw.bound(5)))
        if msg.get("action") == action or "randomNumber" in msg.get("data", {}):
            return msg


def wait_served(g, source=None, timeout=5.0):
    """A place freed is taken again: retry (bounded) until a new connection gets a 200."""
    deadline = time.monotonic() + gw.bound(timeout)
    while True:
        raw = http_get(g, source)
        if raw.startswith(b"HTTP/1.1 200 OK\r\n") or time.monotonic() > deadline:
            return raw
        time.sleep(0.05)


@pytest.mark.asan
def test_max_connections_counts_every_transport(make_gateway):
    g = make_gateway(caps(maxConnections=6))
    g.wait_socket_listening()

    async def scenario():
        held_http = [g.client() for _ in range(2)]
        for c in held_http:
            assert c.request("GET", "/api/randomNumber")[0] == 200
        held_ws = [await g.ws_connect().__aenter__() for _ in range(2)]
        held_tcp = [g.line_client() for _ in range(2)]
        for c in held_tcp:
            assert c.call("paramsView")["status"] == "OK"
        # Six open: each kind of newcomer is refused, and told so.
        offset = g.log_size()
        assert_http_refused(http_get(g), "too many connections")
        await assert_ws_refused(g)
        line, s = tcp_first_line(g)
        assert_tcp_refused(line, s, "too many connections")
        assert g.wait_for_log(r"refused a connection: too many connections "
                              r"\(general\.maxConnections is 6\)", since=offset)
        # The held ones are still served.
        for c in held_http:
            assert c.request("GET", "/api/randomNumber")[0] == 200
        for ws in held_ws:
            assert "randomNumber" in (await ws_call(ws, "randomNumber"))["data"]
        for c in held_tcp:
            assert c.call("paramsView")["status"] == "OK"
        # Places freed by each transport are taken again.
        held_http.pop().close()
        assert wait_served(g).startswith(b"HTTP/1.1 200 OK\r\n")
        await held_ws.pop().close()
        async with g.ws_connect() as ws:
            assert "randomNumber" in (await ws_call(ws, "randomNumber"))["data"]
        held_tcp.pop().close()
        deadline = time.monotonic() + gw.bound(5)
        while True:
            line, s = tcp_first_line(g)
            s.close()
            if json.loads(line).get("status") == "OK" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert json.loads(line)["status"] == "OK", line
        for c in held_http + held_tcp:
            c.close()
        for ws in held_ws:
            await ws.close()

    asyncio.run(asyncio.wait_for(scenario(), 40))
    g.assert_serving()


@pytest.mark.asan
def test_max_connections_per_ip(make_gateway):
    g = make_gateway(caps(maxConnectionsPerIP=2))
    g.wait_socket_listening()

    async def scenario():
        held = [g.client() for _ in range(2)]
        for c in held:
            assert c.request("GET", "/api/randomNumber")[0] == 200
        message = "too many connections from this address"
        assert_http_refused(http_get(g), message)
        await assert_ws_refused(g)
        line, s = tcp_first_line(g)
        assert_tcp_refused(line, s, message)
        # Another address is served, on every transport.
        assert http_get(g, source="127.0.0.2").startswith(b"HTTP/1.1 200 OK\r\n")
        line, s = tcp_first_line(g, source="127.0.0.2")
        s.close()
        assert json.loads(line)["status"] == "OK", line
        # The address's own place, freed, is taken again.
        held.pop().close()
        assert wait_served(g).startswith(b"HTTP/1.1 200 OK\r\n")
        for c in held:
            c.close()

    asyncio.run(asyncio.wait_for(scenario(), 40))
    g.assert_serving()


@pytest.mark.asan
def test_refused_flood_keeps_serving(make_gateway):
    # Many connections past the cap at once, some sending a request, some nothing: every one
    # gets its 503 and is closed; the gateway serves on once they are gone.
    g = make_gateway(caps(maxConnections=4))
    held = [g.client() for _ in range(4)]
    for c in held:
        assert c.request("GET", "/api/randomNumber")[0] == 200
    socks = [connect(g.host, g.port) for _ in range(200)]
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
    for s in socks:
        assert_http_refused(read_all(s), "too many connections")
        s.close()
    for c in held:
        assert c.request("GET", "/api/randomNumber")[0] == 200
        c.close()
    assert wait_served(g).startswith(b"HTTP/1.1 200 OK\r\n")
