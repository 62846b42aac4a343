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


def test_sticky_param_flood_keeps_memory_bounded(make_gateway):
    g = make_gateway(tcp({"general": {"actionTimeout": 10000}}))
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
    g = make_gateway(tcp({"servers": {"socket": {"idleTimeout": 600}},
                          "general": {"actionTimeout": 5000}}))
    offset = g.log_size()
    with g.line_client() as silent, g.line_client() as talker, g.line_client() as waiter:
        waiter.send_line('{"action": "sleepTest", "data": {"sleepDuration": 1500}}')
        start = time.monotonic()
        # The talker sends a line every 200 ms and is kept.
        while time.monotonic() - start < 1.2:
            assert talker.call("paramsView")["status"] == "OK"
            time.sleep(0.2)
        assert silent.wait_closed(gw.bound(2.0)), "silent client not closed"
        assert silent.buf == b"", silent.buf  # closed without a word
        # The waiter is silent but has an action in flight: it gets its answer.
        assert waiter.read_json(timeout=gw.bound(3.0))["status"] == 200
        assert waiter.wait_closed(gw.bound(2.0)), "idle after its answer, but not closed"
        # Silent since the loop, the talker is idle too now.
        assert talker.wait_closed(gw.bound(2.0)), "talker not closed once silent"
    g.assert_serving()
    g.wait_for_log(r"idle for idleTimeout", since=offset)
