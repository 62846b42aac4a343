"""The HTTP/1.1 layer (issue #12): core/gw_http1.c (bytes in, requests out, limits and error
statuses) and core/gw_http.c (keep-alive, pipelining, Expect, chunked bodies, the WebSocket
handover), driven with raw sockets where the framing is the point.

Every exchange is bounded in time; every answer is checked for its exact status and body.
Marked `asan`: `make test-asan` runs the parser and the connection code again under the
sanitizer, where a bad read of a split or pipelined request shows up in the log.
"""

import asyncio
import json
import os
import socket
import struct
import threading
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

JSON_TYPE = "application/json; charset=utf-8"
WAIT = 5.0  # seconds for one answer
NOT_FOUND = "unknown action or invalid apiVersion"
ROUTING = os.path.join(gw.HERE, "routing")


def http_config(workdir, redis_url, **web):
    """The default test config without response metadata, so an answer's body (and its
    length) depends only on the request."""
    config = gw.default_config(str(workdir), redis_url)
    config["servers"]["web"].update({"metadata": False}, **web)
    return config


@pytest.fixture(scope="module")
def hgw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("http")
    with gw.serving(workdir, http_config(workdir, redis_url)) as g:
        yield g


@pytest.fixture
def g(hgw):
    assert hgw.alive(), "the module's gateway died\n" + hgw.describe()
    yield hgw
    assert hgw.alive(), "the gateway died during this test\n" + hgw.describe()


# -- a raw HTTP/1.1 client ------------------------------------------------------------------

class Conn:
    """One TCP connection to the gateway: send raw bytes (whole, or in pieces, each its own
    write) and read answers one at a time, every read bounded by 'timeout'."""

    def __init__(self, g, timeout=WAIT):
        self.timeout = timeout
        self.sock = socket.create_connection((g.host, g.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data, piece=None, pause=0.002):
        """Send 'data'; with 'piece', in writes of that many bytes, 'pause' s apart."""
        if not piece:
            self.sock.sendall(data)
            return
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])
            time.sleep(pause)

    def _fill(self, deadline):
        if deadline <= time.monotonic():
            raise AssertionError("no complete answer within %.1f s (have %r)"
                                 % (self.timeout, self.buf[:500]))
        chunk = gw.recv_by(self.sock, deadline)
        if chunk == b"":
            raise AssertionError("connection closed before a complete answer (have %r)"
                                 % self.buf[:500])
        self.buf += chunk or b""

    def read_exact(self, n):
        deadline = time.monotonic() + self.timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head=False):
        """The next answer: (status, {lower-case name: value}, body). 'head': it answers a
        HEAD request (no body whatever Content-Length says)."""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            assert sep, "bad header line %r" % line
            k = k.lower()
            assert k not in headers, "header %s sent twice: %r" % (k, raw)
            headers[k] = v.strip()
        status = int(status)
        if head or status in (100, 101, 204, 304):
            return status, headers, b""
        assert "content-length" in headers, "an answer without Content-Length: %r" % raw
        return status, headers, self.read_exact(int(headers["content-length"]))

    def json(self, expect_status=200):
        status, headers, body = self.response()
        assert status == expect_status, (status, body[:500])
        assert headers.get("content-type") == JSON_TYPE, headers
        return json.loads(body)

    def closed(self):
        """True when the gateway closes the connection (EOF or reset) within the timeout with
        nothing more sent; an answer arriving instead fails."""
        deadline = time.monotonic() + self.timeout
        while True:
            chunk = gw.recv_by(self.sock, deadline)
            if chunk is None:
                return False
            if not chunk:
                break
            self.buf += chunk
        assert self.buf == b"", "bytes after the last answer: %r" % self.buf[:500]
        return True

    def silent(self, seconds=0.3):
        """Nothing arrives for 'seconds' and the connection stays open."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        raise AssertionError("expected silence, got %r" % chunk[:500])

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(path, version=b"1.1", extra=b""):
    return b"GET " + path + b" HTTP/" + version + b"\r\nHost: x\r\n" + extra + b"\r\n"


def post(path, body, ctype=b"application/json", extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def chunked(path, pieces, ctype=b"application/json", extensions=(), trailers=b""):
    """A POST with a chunked body: one chunk per piece (the size in hex, an extension when
    given), the last chunk, then 'trailers' (whole header lines)."""
    out = [b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype
           + b"\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i, p in enumerate(pieces):
        ext = extensions[i] if i < len(extensions) else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(p), ext, p))
    out.append(b"0\r\n" + trailers + b"\r\n")
    return b"".join(out)


def echo(conn, expect_status=200):
    """The params echo_params answered (metadata is off: the body is {"params": ...})."""
    body = conn.json(expect_status)
    assert list(body) == ["params"], body
    return body["params"]


def params(**kw):
    return dict(kw, action="echo_params", apiVersion=1)


def assert_error(conn, status, message, closes=True):
    """The next answer is the gateway's JSON error; with 'closes', then the connection ends."""
    got, headers, body = conn.response()
    assert got == status, (got, body[:500])
    assert headers.get("content-type") == JSON_TYPE, headers
    assert headers.get("access-control-allow-origin") == "*", headers
    assert json.loads(body) == {"error": message, "errors": [message]}, body
    if closes:
        assert headers.get("connection") == "close", headers
        assert conn.closed(), "the gateway kept the connection open after %d" % status


def headers_seen(conn):
    """connection.rawConnection.headers as connection_info reports them."""
    body = conn.json()
    return body["headers"]


# -- request headers --------------------------------------------------------------------------

def test_any_header_reaches_lua_lower_cased(g):
    with Conn(g) as c:
        c.send(get(b"/api/connection_info", extra=(
            b"X-Custom-Thing: one\r\n"
            b"Weird_Name.With~Chars!: two\r\n"
            b"ACCEPT-LANGUAGE: fr\r\n"
            b"X-Empty:\r\n"
            b"X-Lead:    spaced\r\n")))
        assert headers_seen(c) == {
            "host": "x", "x-custom-thing": "one", "weird_name.with~chars!": "two",
            "accept-language": "fr", "x-empty": "", "x-lead": "spaced"}


def test_repeated_header_joined(g):
    with Conn(g) as c:
        c.send(get(b"/api/connection_info",
                   extra=b"X-Multi: a\r\nx-multi: b\r\nX-MULTI: c, d\r\nAccept: */*\r\n"))
        assert headers_seen(c) == {"host": "x", "x-multi": "a, b, c, d", "accept": "*/*"}


def test_header_value_loses_trailing_whitespace(g):
    # RFC 9112 §5: a field value excludes the whitespace around it, at either end, also when
    # the value arrives in several reads.
    req = get(b"/api/connection_info", extra=b"X-Pad: \t padded \t \r\nX-Inner:  a  b  \r\n"
              b"X-Last: z" + b" " * 20 + b"\r\n")
    for piece in (None, 3):
        with Conn(g) as c:
            c.send(req, piece=piece, pause=0.001)
            assert headers_seen(c) == {"host": "x", "x-pad": "padded", "x-inner": "a  b",
                                       "x-last": "z"}


def test_header_value_split_across_writes(g):
    with Conn(g) as c:
        c.send(get(b"/api/connection_info", extra=b"X-Long-Name-Here: " + b"v" * 300
                   + b"\r\nX-Other: w\r\n"), piece=7, pause=0.001)
        assert headers_seen(c) == {"host": "x", "x-long-name-here": "v" * 300, "x-other": "w"}


def _many_headers(n):
    """A GET with exactly 'n' header fields, Host included."""
    return get(b"/api/echo_params?a=1",
               extra=b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(n - 1)))


def test_100_headers_are_served(g):
    with Conn(g) as c:
        c.send(_many_headers(100))
        assert echo(c) == params(a="1")
        c.send(_many_headers(100))  # the connection goes on
        assert echo(c) == params(a="1")


def test_101_headers_are_431(g):
    with Conn(g) as c:
        c.send(_many_headers(101))
        assert_error(c, 431, "too many request headers")
    g.assert_serving()


def _head_of_size(size, path=b"/api/echo_params?a=1"):
    """A GET whose request line and header section (final blank line included) are exactly
    'size' bytes."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Fill: "
    fill = size - len(start) - len(b"\r\n\r\n")
    assert fill > 0
    return start + b"f" * fill + b"\r\n\r\n"


def test_header_bytes_up_to_max_header_size(g):
    with Conn(g) as c:
        c.send(_head_of_size(16384))
        assert echo(c) == params(a="1")
        c.send(_head_of_size(16384), piece=1000, pause=0.001)
        assert echo(c) == params(a="1")


@pytest.mark.parametrize("size", [16385, 17000, 200000])
def test_header_bytes_over_max_header_size_are_431(g, size):
    with Conn(g) as c:
        try:
            c.send(_head_of_size(size))
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the rest was read
        assert_error(c, 431, "request headers are too large")
    g.assert_serving()


@pytest.mark.parametrize("piece", [None, 1000])
def test_long_header_name_is_431_not_414(g, piece):
    # The request line is short: only a header is too large, even when the first header's
    # name is what runs over.
    with Conn(g) as c:
        try:
            c.send(b"GET /api/echo_params HTTP/1.1\r\nX-" + b"n" * 20000 + b": v\r\n\r\n",
                   piece=piece, pause=0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_error(c, 431, "request headers are too large")


@pytest.mark.parametrize("piece", [None, 1000])
def test_long_url_in_pieces_is_414(g, piece):
    with Conn(g) as c:
        try:
            c.send(get(b"/api/echo_params?a=" + b"u" * 20000), piece=piece, pause=0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_error(c, 414, "request URL is too long")


@pytest.mark.parametrize("url_len", [16384, 100000])
def test_url_over_the_limit_is_414(g, url_len):
    path = b"/api/echo_params?a=" + b"u" * (url_len - 19)
    with Conn(g) as c:
        try:
            c.send(get(path))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_error(c, 414, "request URL is too long")
    g.assert_serving()


def test_long_url_under_the_limit(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=" + b"u" * 16000))
        assert echo(c) == params(a="u" * 16000)


def test_smaller_limits_from_config(make_gateway):
    small = make_gateway({"servers": {"web": {"metadata": False, "maxHeaderSize": 1024,
                                              "maxHeaders": 5}}})
    with Conn(small) as c:
        c.send(_many_headers(5))
        assert echo(c) == params(a="1")
        c.send(_head_of_size(1024))
        assert echo(c) == params(a="1")
    with Conn(small) as c:
        c.send(_many_headers(6))
        assert_error(c, 431, "too many request headers")
    with Conn(small) as c:
        c.send(_head_of_size(1025))
        assert_error(c, 431, "request headers are too large")
    with Conn(small) as c:
        c.send(get(b"/api/echo_params?a=" + b"u" * 1100))
        assert_error(c, 414, "request URL is too long")
    small.assert_serving()


# -- chunked request bodies -----------------------------------------------------------------

def test_chunked_json_body_in_pieces(g):
    body = b'{"a": "chunked json", "b": "two"}'
    req = chunked(b"/api/echo_params", [body[:5], body[5:6], body[6:20], body[20:]],
                  extensions=[b";name=value", b";x", b';q="quoted;str"', b""],
                  trailers=b"X-Trailer: t\r\nX-Other: u\r\n")
    with Conn(g) as c:
        c.send(req, piece=9)
        assert echo(c) == params(a="chunked json", b="two")
        c.send(get(b"/api/echo_params?a=next"))  # the connection goes on
        assert echo(c) == params(a="next")


def test_chunked_form_body_in_pieces(g):
    form = b"a=hello+world&b=%41%42%2F"
    req = chunked(b"/api/echo_params", [form[:3], form[3:11], form[11:]],
                  ctype=b"application/x-www-form-urlencoded")
    with Conn(g) as c:
        c.send(req, piece=4)
        assert echo(c) == params(a="hello world", b="AB/")


def test_chunked_sizes_upper_case_and_zero_padded(g):
    body = b'{"a": "' + b"z" * 40 + b'"}'
    req = (b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           + b"000A\r\n" + body[:10] + b"\r\n" + b"%X\r\n" % (len(body) - 10) + body[10:]
           + b"\r\n000\r\n\r\n")
    with Conn(g) as c:
        c.send(req)
        assert echo(c) == params(a="z" * 40)


def test_trailers_are_not_headers(g):
    # RFC 9110 §6.5.1: trailer fields are not merged into the header section (a proxy in
    # front vets the headers, not what follows the body).
    with Conn(g) as c:
        c.send(b"POST /api/connection_info HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: t\r\nHost: other\r\n\r\n")
        assert headers_seen(c) == {"host": "x", "transfer-encoding": "chunked"}


def test_trailer_on_a_file_request(g):
    # A trailer that reads like a conditional header: the file request does not see it.
    with Conn(g) as c:
        c.send(b"GET /public/none.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\nIf-None-Match: \"abc\"\r\n\r\n")
        not_file = "That file is not found"
        assert c.json(404) == {"error": not_file, "errors": [not_file]}
        c.send(get(b"/api/echo_params?a=1"))
        assert echo(c) == params(a="1")


@pytest.mark.xfail(strict=True, reason="Debian's http_parser is built without "
                   "HTTP_PARSER_STRICT: any two bytes after a chunk's data pass for its CRLF")
def test_chunk_data_not_followed_by_crlf_is_400(g):
    # RFC 9112 §7.1: chunk-data CRLF. A parser that takes other bytes there frames the body
    # differently from a strict one in front of it (request smuggling).
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n")
        assert_error(c, 400, "invalid chunked body")


def test_chunked_body_over_max_body_size_is_413(make_gateway):
    small = make_gateway({"servers": {"web": {"metadata": False, "maxBodySize": 100}}})
    with Conn(small) as c:
        c.send(chunked(b"/api/echo_params", [b'{"a": "', b"x" * 60, b"y" * 60, b'"}']))
        assert_error(c, 413, "request body is larger than maxBodySize")
    small.assert_serving()


# -- pipelining -----------------------------------------------------------------------------

def test_pipelined_get_and_post_with_body(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=1") + post(b"/api/echo_params", b'{"a": "2"}'))
        assert echo(c) == params(a="1")
        assert echo(c) == params(a="2")


def test_pipelined_posts(g):
    with Conn(g) as c:
        c.send(post(b"/api/echo_params", b'{"a": "1", "b": "x"}')
               + post(b"/api/echo_params", b"a=2&b=y", ctype=b"application/x-www-form-urlencoded"))
        assert echo(c) == params(a="1", b="x")
        assert echo(c) == params(a="2", b="y")


def _mixed(i):
    """Request i of a pipelined batch, and whether it is a HEAD."""
    kind = i % 4
    if kind == 0:
        return get(b"/api/echo_params?a=%d" % i), False
    if kind == 1:
        return post(b"/api/echo_params", b'{"a": "%d"}' % i), False
    if kind == 2:
        return chunked(b"/api/echo_params", [b'{"a": ', b'"%d"}' % i]), False
    return b"HEAD /api/echo_params?a=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i, True


def test_twenty_mixed_requests_in_one_write(g):
    reqs = [_mixed(i) for i in range(20)]
    with Conn(g) as c:
        c.send(b"".join(r for r, _ in reqs))
        for i, (_, head) in enumerate(reqs):
            if head:
                status, headers, body = c.response(head=True)
                assert status == 200 and body == b""
                expect = json.dumps({"params": params(a=str(i))}, separators=(",", ":"))
                assert int(headers["content-length"]) == len(expect), (i, headers)
            else:
                assert echo(c) == params(a=str(i)), i
        c.send(get(b"/api/echo_params?a=after"))
        assert echo(c) == params(a="after")


def test_pipelined_requests_split_byte_by_byte(g):
    data = (get(b"/api/echo_params?a=1") + post(b"/api/echo_params", b'{"a": "2"}')
            + chunked(b"/api/echo_params", [b'{"a":', b' "3"}']))
    with Conn(g) as c:
        c.send(data, piece=1, pause=0.001)
        assert echo(c) == params(a="1")
        assert echo(c) == params(a="2")
        assert echo(c) == params(a="3")


def test_pipelined_behind_a_waiting_action(g):
    # The first action yields (api.sleep); the two behind it wait for its answer.
    with Conn(g) as c:
        c.send(get(b"/api/sleepTest?sleepDuration=150") + get(b"/api/echo_params?a=2")
               + post(b"/api/echo_params", b'{"a": "3"}'))
        body = c.json()
        assert body["sleepDuration"] == 150, body
        assert echo(c) == params(a="2")
        assert echo(c) == params(a="3")


def test_pipelined_past_the_pending_limit(g):
    # More than the 256 KiB a connection holds behind a request in flight: the gateway stops
    # reading, then goes on as the answers drain; all 300 come back, in order.
    pad = b"X-Pad: " + b"p" * 1024 + b"\r\n"
    reqs = [get(b"/api/sleepTest?sleepDuration=100")]
    reqs += [get(b"/api/echo_params?a=%d" % i, extra=pad) for i in range(300)]
    data = b"".join(reqs)
    assert len(data) > 300 * 1024
    with Conn(g) as c:
        sender = threading.Thread(target=c.send, args=(data,), daemon=True)
        sender.start()
        assert c.json()["sleepDuration"] == 100
        for i in range(300):
            assert echo(c) == params(a=str(i))
        sender.join(WAIT)
        assert not sender.is_alive()


def test_get_with_body_then_another_request(g):
    # A GET may carry a body (its params come from the query only); the next request starts
    # right after that body.
    with Conn(g) as c:
        c.send(b"GET /api/echo_params?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: 10\r\n\r\n{\"b\": \"x\"}" + get(b"/api/echo_params?a=2"))
        assert echo(c) == params(a="1")
        assert echo(c) == params(a="2")


# -- Expect: 100-continue -------------------------------------------------------------------

def test_expect_100_continue(g):
    body = b'{"a": "after 100"}'
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        assert c.read_exact(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.silent(0.2)  # nothing else until the body comes
        c.send(body)
        assert echo(c) == params(a="after 100")
        c.send(get(b"/api/echo_params?a=next"))
        assert echo(c) == params(a="next")


def test_expect_100_continue_chunked(g):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n")
        assert c.read_exact(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"6\r\n{\"a\": \r\n5\r\n\"ch\"}\r\n0\r\n\r\n")
        assert echo(c) == params(a="ch")


def test_expect_100_continue_without_body_gets_no_100(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=1", extra=b"Expect: 100-continue\r\n"))
        assert echo(c) == params(a="1")


def test_expect_100_continue_too_large_is_413_without_100(g):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1048577\r\nExpect: 100-continue\r\n\r\n")
        assert_error(c, 413, "request body is larger than maxBodySize")


@pytest.mark.parametrize("value", [b"something-else", b"100-continue-please"])
def test_other_expectation_is_417(g, value):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\nExpect: " + value + b"\r\n\r\n{}")
        assert_error(c, 417, "unsupported Expect header")


# -- escapes in path and query --------------------------------------------------------------

@pytest.mark.parametrize("path", [b"/api/echo_params%zz", b"/api/echo%zz_params",
                                  b"/api/echo_params%", b"/api/echo_params%4",
                                  b"/api/echo_params%G1", b"/public/%zz.txt"])
def test_malformed_escape_in_path_is_400(g, path):
    with Conn(g) as c:
        c.send(get(path + b"?a=1"))
        assert_error(c, 400, "invalid path")
    g.assert_serving()


def test_nul_in_path_is_not_found(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params%00"))
        assert c.json(404) == {"error": NOT_FOUND, "errors": [NOT_FOUND]}
        c.send(get(b"/public/a%00b.txt"))
        not_file = "That file is not found"
        assert c.json(404) == {"error": not_file, "errors": [not_file]}
        c.send(get(b"/api/echo_params?a=ok"))  # the connection goes on
        assert echo(c) == params(a="ok")


def test_escapes_in_the_query_kept_or_decoded(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=%zz%2F%&b=x%00y%2Fz"))
        assert echo(c) == params(a="%zz/%", b="x\x00y/z")


def test_encoded_name_of_an_action(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo%5Fparams?a=1"))
        assert echo(c) == params(a="1")


def test_encoded_slash_stays_inside_a_route_param(make_gateway):
    rg = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS,
                                             os.path.join(ROUTING, "actions")],
                                 "routes": os.path.join(ROUTING, "routes.lua")},
                       "servers": {"web": {"metadata": False}}})
    with Conn(rg) as c:
        c.send(get(b"/api/things/a%2Fb%20c?q=%zz"))
        body = c.json()
        assert body["action"] == "routeGet", body
        assert body["params"] == {"id": "a/b c", "q": "%zz", "action": "routeGet",
                                  "apiVersion": 1}, body
        c.send(get(b"/api/things/a/b"))  # a real '/' is two segments: no route takes it
        assert c.json(404) == {"error": NOT_FOUND, "errors": [NOT_FOUND]}


@pytest.mark.parametrize("target,a", [
    (b"http://example.com/api/echo_params?a=1", "1"),
    (b"HTTPS://example.com:8443/api/echo_params?a=2#frag", "2"),
    (b"http://user@example.com/api/echo%5Fparams?a=3", "3")])
def test_absolute_form_target(g, target, a):
    # RFC 9112 §3.2.2: a server must accept the absolute-form; the path is what follows the
    # authority.
    with Conn(g) as c:
        c.send(get(target))
        assert echo(c) == params(a=a)


def test_absolute_form_without_a_path_is_the_root(g):
    with Conn(g) as c:
        c.send(get(b"http://example.com?a=1") + get(b"http://example.com"))
        assert c.json(404) == {"error": NOT_FOUND, "errors": [NOT_FOUND]}
        assert c.json(404) == {"error": NOT_FOUND, "errors": [NOT_FOUND]}


def test_other_target_forms_are_400(g):
    with Conn(g) as c:
        c.send(get(b"ftp://example.com/api/echo_params"))
        assert_error(c, 400, "invalid request target")


# -- Content-Length and Transfer-Encoding ----------------------------------------------------

def test_zero_padded_content_length(g):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 00010\r\n\r\n{\"a\": \"5\"}" + get(b"/api/echo_params?a=next"))
        assert echo(c) == params(a="5")
        assert echo(c) == params(a="next")


@pytest.mark.parametrize("lengths", [b"Content-Length: 10\r\nContent-Length: 10\r\n",
                                     b"Content-Length: 10\r\nContent-Length: 12\r\n",
                                     b"Content-Length: 10, 10\r\n"],
                         ids=["same", "different", "list"])
def test_duplicate_content_length_is_400(g, lengths):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + lengths + b"\r\n{\"a\": \"1\"}" + get(b"/api/echo_params?a=2"))
        assert_error(c, 400, "invalid Content-Length")


@pytest.mark.parametrize("headers", [
    b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 15\r\n"], ids=["length-first", "te-first"])
def test_content_length_with_transfer_encoding_is_400(g, headers):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + headers + b"\r\n5\r\n{\"a\":\r\n0\r\n\r\n" + get(b"/api/echo_params?a=2"))
        assert_error(c, 400, "Content-Length with Transfer-Encoding")


@pytest.mark.parametrize("coding", [b"gzip", b"chunked, gzip", b"identity"])
def test_transfer_encoding_not_ending_in_chunked_is_400(g, coding):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: " + coding + b"\r\n\r\n{\"a\": \"1\"}")
        assert_error(c, 400, "invalid Transfer-Encoding")


# -- connection persistence ------------------------------------------------------------------

def test_http10_without_keep_alive_closes(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=1", version=b"1.0"))
        status, headers, body = c.response()
        assert status == 200 and json.loads(body) == {"params": params(a="1")}
        assert headers.get("connection") == "close", headers
        assert c.closed()


def test_http10_keep_alive_stays_open(g):
    # An HTTP/1.0 client keeps the connection only when the answer says keep-alive.
    with Conn(g) as c:
        for i in range(3):
            c.send(get(b"/api/echo_params?a=%d" % i, version=b"1.0",
                       extra=b"Connection: keep-alive\r\n"))
            status, headers, body = c.response()
            assert status == 200 and json.loads(body) == {"params": params(a=str(i))}
            assert headers.get("connection", "").lower() == "keep-alive", headers
        c.send(get(b"/api/echo_params?a=last", version=b"1.0"))
        status, headers, body = c.response()
        assert status == 200 and headers.get("connection") == "close", headers
        assert c.closed()


def test_connection_close_closes_after_the_answer(g):
    with Conn(g) as c:
        # The request behind the one saying close is never answered.
        c.send(get(b"/api/echo_params?a=1", extra=b"Connection: close\r\n")
               + get(b"/api/echo_params?a=2"))
        status, headers, body = c.response()
        assert status == 200 and json.loads(body) == {"params": params(a="1")}
        assert headers.get("connection") == "close", headers
        assert c.closed()


def test_http11_answer_keeps_the_connection(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=1"))
        status, headers, _ = c.response()
        assert status == 200 and "connection" not in headers, headers
        c.silent(0.2)
        c.send(get(b"/api/echo_params?a=2"))
        assert echo(c) == params(a="2")


def test_http11_without_host_is_400(g):
    # RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
    with Conn(g) as c:
        c.send(b"GET /api/echo_params?a=1 HTTP/1.1\r\n\r\n")
        assert_error(c, 400, "missing Host header")
    with Conn(g) as c:
        c.send(b"GET /api/echo_params?a=1 HTTP/1.0\r\n\r\n")  # HTTP/1.0 has no Host to send
        assert echo(c) == params(a="1")


@pytest.mark.parametrize("version,extra,connection", [
    (b"1.0", b"", "close"), (b"1.0", b"Connection: keep-alive\r\n", "keep-alive"),
    (b"1.1", b"Connection: close\r\n", "close"), (b"1.1", b"", None)])
def test_file_answer_says_what_becomes_of_the_connection(g, version, extra, connection):
    public = g.config["paths"]["public"]
    os.makedirs(public, exist_ok=True)
    with open(os.path.join(public, "conn.txt"), "w") as f:
        f.write("file")
    with Conn(g) as c:
        c.send(get(b"/public/conn.txt", version=version, extra=extra))
        status, headers, body = c.response()
        assert (status, body) == (200, b"file")
        assert headers.get("connection") == connection, headers
        if connection == "close":
            assert c.closed()
        else:
            c.send(get(b"/api/echo_params?a=2", version=version, extra=extra))
            assert echo(c) == params(a="2")


@pytest.mark.parametrize("status", [100, 101, 199])
def test_an_informational_status_from_an_action_is_500(g, status):
    # A 1xx is not a final answer: sent as one, it would leave the client waiting for another.
    with Conn(g) as c:
        c.send(get(b"/api/status_code?status=%d" % status))
        got, _, _ = c.response()
        assert got == 500
        c.send(get(b"/api/echo_params?a=1"))
        assert echo(c) == params(a="1")


def test_framing_headers_from_an_action_are_dropped(g):
    # The answer's framing is this layer's: an action cannot add a second length, a chunked
    # coding, a Connection or a second Date.
    with Conn(g) as c:
        c.send(get(b"/api/set_headers"))
        status, headers, body = c.response()
        assert status == 200, body
        assert headers.get("x-kept") == "yes", headers
        assert "transfer-encoding" not in headers, headers
        assert headers.get("content-length") == str(len(body)), headers
        assert "connection" not in headers, headers
        assert headers.get("date") != "Thu, 01 Jan 1970 00:00:00 GMT", headers
        c.send(get(b"/api/echo_params?a=1"))
        assert echo(c) == params(a="1")


# -- bodies that are not sent ------------------------------------------------------------------

def test_head_has_the_length_of_get_and_no_body(g):
    with Conn(g) as c:
        c.send(get(b"/api/status_code?status=201"))
        gstatus, gheaders, gbody = c.response()
        c.send(b"HEAD /api/status_code?status=201 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = c.response(head=True)
        assert (gstatus, status) == (201, 201)
        assert body == b""
        assert int(headers["content-length"]) == len(gbody), (headers, gbody)
        assert headers["x-test"] == "yes" and headers["content-type"] == JSON_TYPE
        # No stray body bytes: the next answer starts right here.
        c.send(get(b"/api/echo_params?a=1"))
        assert echo(c) == params(a="1")


@pytest.mark.parametrize("request_line", [b"GET /api/status_code?status=204",
                                          b"GET /api/no_render",
                                          b"OPTIONS /api/echo_params",
                                          b"GET /api/status_code?status=304"])
def test_no_body_statuses(g, request_line):
    # RFC 9110 §8.6: no Content-Length on a 204; on a 304 only the length a 200 would have
    # (the gateway cannot know it for an action, so none), and no body on either.
    with Conn(g) as c:
        c.send(request_line + b" HTTP/1.1\r\nHost: x\r\n\r\n" + get(b"/api/echo_params?a=1"))
        status, headers, body = c.response()
        assert status in (204, 304), status
        assert "content-length" not in headers, headers
        assert headers["access-control-allow-origin"] == "*"
        assert echo(c) == params(a="1")  # right behind: nothing was sent as a body


# -- WebSocket handover ------------------------------------------------------------------------

WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3's example


def upgrade(path=b"/ws"):
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + WS_KEY
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def ws_frame(message):
    """One masked text frame (a client's) carrying 'message' as JSON."""
    payload = json.dumps(message).encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_ws_message(conn):
    """The next server frame: a whole, unmasked text frame, parsed as JSON."""
    b0, b1 = conn.read_exact(2)
    assert b0 == 0x81, "expected a final text frame, got opcode byte %#x" % b0
    assert not b1 & 0x80, "server frames are not masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.read_exact(8))[0]
    return json.loads(conn.read_exact(n))


def assert_switched(conn):
    status, headers, _ = conn.response()
    assert status == 101, (status, headers)
    assert headers["sec-websocket-accept"] == WS_ACCEPT, headers
    assert headers["upgrade"].lower() == "websocket", headers


def assert_random_numbers(conn, ids):
    for i in ids:
        env = read_ws_message(conn)
        assert env["status"] == 200 and env["action"] == "randomNumber", env
        assert env["request_id"] == i, env
        assert 0 <= env["data"]["randomNumber"] < 1, env


def test_websocket_client_library_upgrade(g):
    async def go():
        async with g.ws_connect() as ws:
            await ws.send(json.dumps({"action": "randomNumber", "request_id": "lib"}))
            return json.loads(await asyncio.wait_for(ws.recv(), WAIT))

    env = asyncio.run(asyncio.wait_for(go(), 3 * WAIT))
    assert env["status"] == 200 and env["request_id"] == "lib", env


def test_upgrade_logs_no_error(g):
    # lws 4.1 logs every adoption with a read buffer at error level; gw_server.c drops it.
    offset = g.log_size()
    with Conn(g) as c:
        c.send(upgrade() + ws_frame({"action": "randomNumber", "request_id": "log"}))
        assert_switched(c)
        assert_random_numbers(c, ["log"])
    errors = [line for line in g.log_since(offset).splitlines() if " error " in line]
    assert errors == [], errors


def test_upgrade_with_frames_in_the_same_write(g):
    frames = b"".join(ws_frame({"action": "randomNumber", "request_id": i}) for i in range(3))
    with Conn(g) as c:
        c.send(upgrade() + frames)
        assert_switched(c)
        assert_random_numbers(c, range(3))
        c.send(ws_frame({"action": "randomNumber", "request_id": "later"}))
        assert_random_numbers(c, ["later"])


def test_upgrade_split_across_writes_then_frames(g):
    frames = b"".join(ws_frame({"action": "randomNumber", "request_id": i}) for i in range(2))
    with Conn(g) as c:
        c.send(upgrade(b"/ws?client=split") + frames, piece=5, pause=0.001)
        assert_switched(c)
        assert_random_numbers(c, range(2))


def test_upgrade_with_an_absolute_form_target(g):
    with Conn(g) as c:
        c.send(upgrade(b"http://example.com/ws?x=1")
               + ws_frame({"action": "randomNumber", "request_id": "abs"}))
        assert_switched(c)
        assert_random_numbers(c, ["abs"])


def test_upgrade_with_many_frames_behind(g):
    # More bytes behind the upgrade than one small read buffer holds.
    frames = b"".join(ws_frame({"action": "randomNumber", "request_id": i}) for i in range(200))
    frames += ws_frame({"action": "echo_params", "a": "x" * 70000, "request_id": "big"})
    with Conn(g) as c:
        c.send(upgrade() + frames)
        assert_switched(c)
        assert_random_numbers(c, range(200))
        env = read_ws_message(c)
        assert env["request_id"] == "big" and env["data"]["params"]["a"] == "x" * 70000, \
            {k: v for k, v in env.items() if k != "data"}


def test_get_then_upgrade_in_one_write(g):
    with Conn(g) as c:
        c.send(get(b"/api/echo_params?a=1") + upgrade()
               + ws_frame({"action": "randomNumber", "request_id": 7}))
        assert echo(c) == params(a="1")
        assert_switched(c)
        assert_random_numbers(c, [7])


def test_slow_get_then_upgrade_in_one_write(g):
    with Conn(g) as c:
        c.send(get(b"/api/sleepTest?sleepDuration=100") + upgrade()
               + ws_frame({"action": "randomNumber", "request_id": 8}))
        assert c.json()["sleepDuration"] == 100
        assert_switched(c)
        assert_random_numbers(c, [8])


@pytest.mark.parametrize("path", [b"/nows", b"/ws/more", b"/api/randomNumber/x"])
def test_upgrade_on_another_path_is_plain_http(g, path):
    with Conn(g) as c:
        c.send(upgrade(path))
        assert c.json(404) == {"error": NOT_FOUND, "errors": [NOT_FOUND]}
        c.send(get(b"/api/echo_params?a=1"))  # still HTTP
        assert echo(c) == params(a="1")


def test_upgrade_to_another_protocol_is_plain_http(g):
    # (Upgrade: h2c is taken: test_http2.py.)
    with Conn(g) as c:
        c.send(b"GET /api/echo_params?a=1 HTTP/1.1\r\nHost: x\r\nUpgrade: TLS/1.2\r\n"
               b"Connection: Upgrade\r\n\r\n")
        assert echo(c) == params(a="1")


def test_refused_handshake_leaves_other_sockets_alone(make_gateway):
    # An upgrade without Sec-WebSocket-Key is refused (400, then closed), which lws used to
    # do itself, closing the socket later from its libuv close callback. Connections
    # accepted in the same loop turn (queued while an action holds the loop) must keep
    # their sockets: a second close of that descriptor would hit whichever of them reused
    # its number.
    busy = make_gateway({"general": {"cpuTimeout": 300},
                         "servers": {"web": {"metadata": False}}})
    with Conn(busy) as a, Conn(busy) as blocker:
        a.send(get(b"/api/echo_params?a=a"))  # accepted and reading before the loop is held
        assert echo(a) == params(a="a")
        offset = busy.log_size()
        blocker.send(get(b"/api/cpu_loop"))
        assert busy.wait_for_log(r"connLogger create", timeout=gw.bound(3), since=offset)
        a.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
        others = [Conn(busy) for _ in range(6)]
        try:
            for i, o in enumerate(others):
                o.send(get(b"/api/echo_params?a=%d" % i))
            assert blocker.response()[0] == 500
            for i, o in enumerate(others):
                assert echo(o) == params(a=str(i)), i
                o.send(get(b"/api/echo_params?a=again%d" % i))
                assert echo(o) == params(a="again%d" % i), i
        finally:
            for o in others:
                o.close()
        status, _, body = a.response()
        assert status == 400 and b"missing Sec-WebSocket-Key" in body, (status, body)
        assert a.closed()
    busy.assert_serving()


# -- clients that go away mid-request ----------------------------------------------------------

@pytest.mark.parametrize("partial", [
    b"GET /api/echo_params?a=1 HTTP/1.1\r\nHo",
    b"GET /api/echo_params?a=" + b"q" * 5000,
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\": ",
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue"
    b"\r\n\r\n",
    get(b"/api/sleepTest?sleepDuration=300") + b"GET /api/echo_params HTTP/1.1\r\nHo",
    upgrade()[:40],
], ids=["half-header", "half-url", "half-body", "half-chunk", "waiting-for-100",
        "pipelined-half", "half-upgrade"])
def test_client_closes_mid_request(g, partial):
    with Conn(g) as c:
        c.send(partial)
        time.sleep(0.05)
    # Others are served meanwhile and afterwards; the gateway let go of the connection.
    with Conn(g) as other:
        other.send(get(b"/api/echo_params?a=other"))
        assert echo(other) == params(a="other")
    assert g.wait_clients_closed(), "connections left open: %s" % g.client_sockets()
    g.assert_serving()


def test_client_resets_mid_request(g):
    with Conn(g) as c:
        c.send(b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        time.sleep(0.05)
        # SO_LINGER 0: the close is a reset, not a FIN.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert g.wait_clients_closed(), "connections left open: %s" % g.client_sockets()
    g.assert_serving()


# -- the benchmark probe ---------------------------------------------------------------------

def test_bench_probe_fixed_answer(make_gateway):
    probe = make_gateway(env={"GATEWAY_BENCH_PROBE": "fixed"})
    with Conn(probe) as c:
        c.send(get(b"/anything") + get(b"/api/echo_params?a=1")
               + post(b"/whatever", b'{"a": 1}'))
        for _ in range(3):
            status, headers, body = c.response()
            assert status == 200 and body == b'{"ok":true}', (status, body)
            assert headers["content-type"] == JSON_TYPE, headers
        c.send(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = c.response(head=True)
        assert status == 200 and headers["content-length"] == "11", headers
        c.send(get(b"/x", version=b"1.0"))
        status, headers, body = c.response()
        assert body == b'{"ok":true}' and headers.get("connection") == "close", headers
        assert c.closed()
