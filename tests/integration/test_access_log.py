"""Access logs, request ids and trusted proxies (issue 16, docs/operations.md).

Each request's line has method, path, status, duration_ms, bytes (the body's length),
remoteIP, requestId and pid; in JSON lines numbers are JSON numbers. A client's
X-Request-Id (1-200 visible ASCII characters) is kept, anything else replaced by 32 hex
digits; either is echoed in the answer and is connection.requestId. With
servers.web.trustedProxies, a trusted peer's X-Forwarded-For names the client (the
right-most address that is not itself trusted) for remoteIP, logs, requesterInformation
and the metrics allow-list; an untrusted peer's header is ignored."""

import asyncio
import json
import re

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

HEX32 = re.compile(r"[0-9a-f]{32}")


def action_line(g, offset, action, fmt="json"):
    assert g.wait_for_log(r'"action":"%s"' % action if fmt == "json" else r"action=%s " % action,
                          since=offset), g.describe()
    lines = [l for l in g.log_since(offset).splitlines()
             if (('"action":"%s"' % action) if fmt == "json" else ("action=%s " % action)) in l]
    assert len(lines) == 1, lines
    return json.loads(lines[0]) if fmt == "json" else lines[0]


def test_json_line_has_typed_fields(make_gateway):
    g = make_gateway({"logging": {"format": "json"}})
    offset = g.log_size()
    r = g.request("GET", "/api/randomNumber?x=1")
    assert r.status == 200
    line = action_line(g, offset, "randomNumber")
    assert line["method"] == "GET" and line["path"] == "/api/randomNumber", line
    assert line["status"] == 200 and isinstance(line["status"], int)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["bytes"] == len(r.body)
    assert line["remoteIP"] == "127.0.0.1"
    assert line["pid"] == g.pid
    assert HEX32.fullmatch(line["requestId"]) and line["requestId"] == r.headers["X-Request-Id"]

    offset = g.log_size()
    r = g.request("GET", "/api/fail_string")
    assert r.status == 400
    line = action_line(g, offset, "fail_string")
    assert (line["status"], line["error"], line["bytes"]) == (400, "broken", len(r.body))


def test_text_line_has_the_fields(make_gateway):
    g = make_gateway()
    offset = g.log_size()
    r = g.request("POST", "/api/randomNumber", {"a": 1}, headers={"X-Request-Id": "trace-42"})
    line = action_line(g, offset, "randomNumber", fmt="text")
    for part in ("type=web", "status=200", "method=POST", "path=/api/randomNumber",
                 "bytes=%d" % len(r.body), "requestId=trace-42", "remoteIP=127.0.0.1",
                 "pid=%d" % g.pid):
        assert " " + part + " " in line, (part, line)
    assert re.search(r" duration_ms=\d+\.\d ", line), line


def test_errors_without_an_action_are_logged_too(make_gateway):
    g = make_gateway({"logging": {"format": "json"}})
    offset = g.log_size()
    r = g.request("GET", "/nowhere", headers={"X-Request-Id": "r-1"})
    assert r.status == 404 and r.headers["X-Request-Id"] == "r-1"
    assert g.wait_for_log(r'"path":"/nowhere"', since=offset)
    (line,) = [json.loads(l) for l in g.log_since(offset).splitlines() if "/nowhere" in l]
    assert (line["status"], line["method"], line["requestId"], line["remoteIP"]) == \
        (404, "GET", "r-1", "127.0.0.1"), line


def test_request_id_kept_echoed_and_on_the_connection(make_gateway):
    g = make_gateway()
    given = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    r = g.request("GET", "/api/connection_info", headers={"X-Request-Id": given})
    assert r.status == 200
    assert r.headers["X-Request-Id"] == given
    assert r.json()["requestId"] == given
    longest = "x" * 200
    assert g.request("GET", "/api/randomNumber", headers={"X-Request-Id": longest}).headers["X-Request-Id"] == longest


@pytest.mark.parametrize("bad", ["x" * 201, "has space", "tab\there", "caf\u00e9", ""])
def test_request_id_replaced_when_not_acceptable(make_gateway, bad):
    g = make_gateway()
    r = g.raw(b"GET /api/connection_info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"X-Request-Id: " + bad.encode("utf-8") + b"\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    m = re.search(rb"\r\nX-Request-Id: ([^\r]*)\r\n", head)
    assert m and HEX32.fullmatch(m.group(1).decode()), head
    assert json.loads(body)["requestId"] == m.group(1).decode()


def test_made_ids_are_unique(make_gateway):
    g = make_gateway()
    c = g.client()
    try:
        ids = {c.request("GET", "/api/randomNumber").headers["X-Request-Id"] for _ in range(200)}
    finally:
        c.close()
    assert len(ids) == 200 and all(HEX32.fullmatch(i) for i in ids)


def test_action_header_does_not_duplicate_it(make_gateway, tmp_path):
    actions = tmp_path / "rid_actions"
    actions.mkdir()
    (actions / "own_rid.lua").write_text(
        'return { name = "ownRid", description = "d", run = function(api, data, next)\n'
        '  data.headers["X-Request-Id"] = "from-the-action"; next() end }\n')
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, str(actions)]}})
    r = g.raw(b"GET /api/ownRid HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: mine\r\n\r\n")
    head = r.partition(b"\r\n\r\n")[0]
    assert head.count(b"X-Request-Id") == 1 and b"X-Request-Id: mine\r\n" in head, head


# -- trusted proxies ------------------------------------------------------------------

def remote_ip(g, xff=None):
    headers = {"X-Forwarded-For": xff} if xff is not None else None
    r = g.request("GET", "/api/connection_info", headers=headers)
    assert r.status == 200, r
    body = r.json()
    assert body["requesterInformation"]["remoteIP"] == body["remoteIP"]
    return body["remoteIP"]


def test_forwarded_for_ignored_without_trusted_proxies(make_gateway):
    g = make_gateway()
    assert remote_ip(g, "203.0.113.7") == "127.0.0.1"


def test_forwarded_for_ignored_from_an_untrusted_peer(make_gateway):
    g = make_gateway({"servers": {"web": {"trustedProxies": ["10.0.0.0/8", "::1"]}}})
    assert remote_ip(g, "203.0.113.7") == "127.0.0.1"


@pytest.mark.parametrize("xff,client", [
    ("203.0.113.7", "203.0.113.7"),
    ("198.51.100.1, 203.0.113.7", "203.0.113.7"),       # the right-most untrusted
    ("198.51.100.1, 10.1.2.3", "198.51.100.1"),         # a trusted hop is skipped
    ("198.51.100.1,10.1.2.3 ,  10.9.9.9", "198.51.100.1"),
    ("10.1.2.3, 10.4.5.6", "10.1.2.3"),                 # all trusted: the left-most
    ("spoofed, 10.1.2.3", "10.1.2.3"),                  # garbage stops the walk
    ("203.0.113.7, garbage", "127.0.0.1"),              # garbage right-most: the peer
    ("", "127.0.0.1"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8:0:0::7, 10.1.2.3", "2001:db8::7"),       # written as inet_ntop writes it
    ("::ffff:203.0.113.9", "203.0.113.9"),
])
def test_forwarded_for_from_a_trusted_peer(make_gateway, xff, client):
    g = make_gateway({"servers": {"web": {"trustedProxies": ["127.0.0.1", "10.0.0.0/8"]}}})
    assert remote_ip(g, xff) == client
    assert remote_ip(g) == "127.0.0.1"  # no header: the peer


def test_repeated_forwarded_for_headers_are_one_list(make_gateway):
    g = make_gateway({"servers": {"web": {"trustedProxies": ["127.0.0.0/8", "10.0.0.0/8"]}}})
    r = g.raw(b"GET /api/connection_info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\r\n")
    assert json.loads(r.partition(b"\r\n\r\n")[2])["remoteIP"] == "203.0.113.7"


def test_forwarded_client_in_the_log_and_the_metrics_allow_list(make_gateway):
    g = make_gateway({"logging": {"format": "json"},
                      "servers": {"web": {"trustedProxies": ["127.0.0.1"]}}})
    offset = g.log_size()
    g.request("GET", "/api/randomNumber", headers={"X-Forwarded-For": "203.0.113.7"})
    assert action_line(g, offset, "randomNumber")["remoteIP"] == "203.0.113.7"
    # The allow-list (loopback) sees the client behind the proxy, not the proxy.
    assert g.request("GET", "/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status == 403
    assert g.request("GET", "/metrics", headers={"X-Forwarded-For": "127.0.0.5"}).status == 200
    assert g.request("GET", "/metrics").status == 200


def test_websocket_upgrade_behind_a_proxy(make_gateway):
    g = make_gateway({"servers": {"web": {"trustedProxies": ["127.0.0.1"]}}})
    data = asyncio.run(ws_info(g, {"X-Forwarded-For": "198.51.100.23", "X-Request-Id": "ws-up-1"}))
    assert data["remoteIP"] == "198.51.100.23", data
    assert data["requestId"] == "ws-up-1", data
    plain = make_gateway()
    data = asyncio.run(ws_info(plain, {"X-Forwarded-For": "198.51.100.23"}))
    assert data["remoteIP"] == "127.0.0.1", data
    assert HEX32.fullmatch(data["requestId"]), data


async def ws_info(g, headers):
    async with g.ws_connect(extra_headers=headers) as ws:
        await ws.send(json.dumps({"action": "connection_info"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]
