"""HTTP half-close (issue 14): a client that sends its request(s) and then shuts its write side
(shutdown(SHUT_WR)) still gets every answer, then the connection closes. A client that closes
altogether still has its action cancelled (test_abuse.py: test_client_close_cancels_the_action).
"""

import re
import socket

import pytest

import gateway as gw


def half_close(g, data, timeout=5.0):
    """Send 'data', shut the write side, read until the server closes; return the bytes."""
    with socket.create_connection((g.host, g.port), timeout=gw.bound(timeout)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def final_answers(raw):
    """The status codes of the final (non-1xx) answers in 'raw', in order."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) if not m.startswith(b"1")]


@pytest.mark.asan
def test_half_close_after_request_gets_the_answer(gateway):
    raw = half_close(gateway, b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
    assert final_answers(raw) == [200], raw
    assert b'"randomNumber"' in raw, raw


@pytest.mark.asan
def test_half_close_while_the_action_waits(gateway):
    # The action sleeps 50 ms: the EOF arrives while it runs. The client may see an interim
    # "100 Continue" first (the gateway's probe for a client that closed altogether).
    raw = half_close(gateway, b"GET /api/sleep_then HTTP/1.1\r\nHost: x\r\n\r\n")
    assert final_answers(raw) == [200], raw
    assert b'"slept":true' in raw, raw
    head = raw.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 100 Continue") or head.startswith(b"HTTP/1.1 200"), raw


@pytest.mark.asan
def test_half_close_after_a_pipelined_pair(gateway):
    raw = half_close(gateway, b"GET /api/sleep_then HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
    assert final_answers(raw) == [200, 200], raw
    assert raw.index(b'"slept":true') < raw.index(b'"randomNumber"'), raw


@pytest.mark.asan
def test_half_close_http10_and_post_body(gateway):
    raw = half_close(gateway, b"POST /api/echo_params HTTP/1.0\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 9\r\n\r\n{\"a\":\"b\"}")
    assert final_answers(raw) == [200], raw
    assert b"HTTP/1.1 100" not in raw, raw
    assert b'"a":"b"' in raw, raw


def test_half_close_mid_request_closes_without_answer(gateway):
    # The request can no longer complete: nothing to answer.
    raw = half_close(gateway, b"GET /api/randomNumber HTTP/1.1\r\nHost:")
    assert raw == b"", raw
    gateway.assert_serving()
