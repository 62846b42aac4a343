"""WebSocket transport (SPEC §3.1, §3.2, §5, §8; wire contract of issue 3): the envelope, params,
errors, concurrency, frames, connection state, server push and many connections.

The client is the asyncio API of `websockets` (10.x); each test runs its own event loop with
asyncio.run and bounds every wait."""

import asyncio
import json
import re
import resource
import signal
import socket
import time

import pytest
import websockets

import gateway as gw

ENVELOPE_KEYS = ["errors", "data", "action", "route", "status"]
WAIT = 5.0  # seconds for one answer


# -- helpers -------------------------------------------------------------------------------

def run(coro, timeout=45):
    """Run a coroutine in a fresh event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def keys_of(raw):
    """Top-level keys of a JSON object text, in the order they were sent."""
    pairs = json.loads(raw, object_pairs_hook=list)
    assert isinstance(pairs, list), raw
    return [k for k, _ in pairs]


async def recv_raw(ws, timeout=WAIT):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("no WebSocket message within %.1f s" % timeout)


async def recv_env(ws, timeout=WAIT):
    raw = await recv_raw(ws, timeout)
    assert isinstance(raw, str), "answers must be text frames, got %r" % (raw[:200],)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise AssertionError("answer is not JSON (%s): %r" % (e, raw[:2000]))


async def send(ws, msg):
    """A dict or list is sent as JSON text; str, bytes and iterables of fragments as they are."""
    await ws.send(json.dumps(msg) if isinstance(msg, (dict, list)) else msg)


async def call(ws, msg, timeout=WAIT):
    await send(ws, msg)
    return await recv_env(ws, timeout)


async def call_raw(ws, msg, timeout=WAIT):
    await send(ws, msg)
    return await recv_raw(ws, timeout)


def assert_ok(env, action=None):
    assert env["status"] == 200, env
    assert env["errors"] == [], env
    assert isinstance(env["data"], dict), env
    if action is not None:
        assert env["action"] == action, env


def assert_error(env, status, errors):
    assert env["status"] == status, env
    assert env["errors"] == errors, env
    assert env["data"] is None, env


async def wait_closed(ws, timeout=WAIT):
    """Read until the server closes (bounded); returns the messages received meanwhile."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection not closed within %.1f s (got %d messages: %r)"
                                 % (timeout, len(got), [m[:200] for m in got]))
        try:
            got.append(await asyncio.wait_for(ws.recv(), left))
        except websockets.ConnectionClosed:
            return got
        except asyncio.TimeoutError:
            pass


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail("RLIMIT_NOFILE hard limit %d < %d: raise it (ulimit -Hn) to run this test"
                    % (hard, need), pytrace=False)
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def raw_upgrade(g, path, timeout=3.0):
    """Send a WebSocket upgrade request for 'path' on a raw socket; return the status line of
    the answer, or None when the server closed without answering."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
           % (path, g.port)).encode()
    with socket.create_connection((g.host, g.port), timeout=timeout) as s:
        s.sendall(req)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in data and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    if not data:
        return None
    return data.split(b"\r\n", 1)[0].decode("latin-1")


# -- the envelope --------------------------------------------------------------------------

def test_envelope_success_key_order_and_request_id(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            raw = await call_raw(ws, {"action": "randomNumber", "request_id": "req-1"})
            raw2 = await call_raw(ws, {"action": "randomNumber", "request_id": 42})
            raw3 = await call_raw(ws, {"action": "randomNumber"})
            return raw, raw2, raw3

    raw, raw2, raw3 = run(go())
    assert keys_of(raw) == ENVELOPE_KEYS + ["request_id"], raw
    env = json.loads(raw)
    assert_ok(env, "randomNumber")
    assert env["route"] == ""
    assert env["request_id"] == "req-1"
    assert 0 <= env["data"]["randomNumber"] < 1
    assert set(env["data"]) == {"randomNumber"}, "data is data.response only: %r" % env["data"]
    env2 = json.loads(raw2)
    assert env2["request_id"] == 42, raw2
    assert keys_of(raw3) == ENVELOPE_KEYS, "no request_id key without one in the request: " + raw3


def test_message_id_alias_is_echoed_under_its_name(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            return await call_raw(ws, {"action": "randomNumber", "messageId": "m-7"})

    raw = run(go())
    assert keys_of(raw) == ENVELOPE_KEYS + ["messageId"], raw
    env = json.loads(raw)
    assert env["messageId"] == "m-7"
    assert_ok(env, "randomNumber")


@pytest.mark.asan
def test_error_envelope_key_order_and_null_data(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            return await call_raw(ws, {"action": "fail_string", "request_id": "e1"})

    raw = run(go())
    assert keys_of(raw) == ENVELOPE_KEYS + ["request_id"], raw
    assert '"data":null' in raw.replace(" ", ""), raw
    env = json.loads(raw)
    assert_error(env, 400, ["broken"])
    assert env["action"] == "fail_string" and env["request_id"] == "e1"


def test_empty_response_is_an_empty_object(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            return await call_raw(ws, {"action": "empty_response"})

    raw = run(go())
    assert '"data":{}' in raw.replace(" ", ""), "an empty response must be {} not []: " + raw
    assert_ok(json.loads(raw), "empty_response")


# -- params --------------------------------------------------------------------------------

def test_data_and_params_alias_and_top_level_params(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            a = await call(ws, {"action": "echo_params", "data": {"a": "from-data"}})
            b = await call(ws, {"action": "echo_params", "params": {"a": "from-params"}})
            c = await call(ws, {"action": "echo_params", "a": "top", "b": "top-b"})
            d = await call(ws, {"action": "echo_params", "a": "top", "b": "top-b",
                                "data": {"a": "inner"}})
            return a, b, c, d

    a, b, c, d = run(go())
    for env in (a, b, c, d):
        assert_ok(env, "echo_params")
    assert a["data"]["params"]["a"] == "from-data"
    assert b["data"]["params"]["a"] == "from-params", "`params` is an alias of `data`"
    assert c["data"]["params"]["a"] == "top" and c["data"]["params"]["b"] == "top-b", \
        "other top-level keys are params"
    assert d["data"]["params"]["a"] == "inner", "keys inside data win over top-level ones"
    assert d["data"]["params"]["b"] == "top-b"


def test_params_are_not_sticky(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            first = await call(ws, {"action": "echo_params", "data": {"a": "1", "b": "2"}})
            second = await call(ws, {"action": "echo_params"})
            return first, second

    first, second = run(go())
    assert first["data"]["params"]["a"] == "1"
    assert "a" not in second["data"]["params"] and "b" not in second["data"]["params"], second


@pytest.mark.asan
def test_input_failure_shape(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            neg = await call_raw(ws, {"action": "randomNumber", "data": {"multiplier": -1},
                                      "request_id": 1})
            req = await call(ws, {"action": "required_input", "request_id": 2})
            both = await call(ws, {"action": "two_inputs", "data": {"x": "-3"}})
            return neg, req, both

    neg, req, both = run(go())
    assert keys_of(neg) == ENVELOPE_KEYS + ["request_id"], neg
    env = json.loads(neg)
    assert_error(env, 422, [{"multiplier": ["must be > 0"]}])
    assert env["action"] == "randomNumber" and env["request_id"] == 1
    assert_error(req, 422, [{"name": ["This field is required."]}])
    assert req["request_id"] == 2
    assert_error(both, 422, [{"x": ["must be > 0"], "y": ["This field is required."]}])


def test_unknown_action_and_route(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            unknown = await call(ws, {"action": "noSuchAction", "request_id": "u"})
            routed = await call(ws, {"action": "randomNumber", "route": "items/",
                                     "request_id": "r"})
            ok = await call(ws, {"action": "randomNumber"})
            return unknown, routed, ok

    unknown, routed, ok = run(go())
    assert_error(unknown, 404, ["unknown action or invalid apiVersion"])
    assert unknown["action"] == "noSuchAction" and unknown["request_id"] == "u"
    assert_error(routed, 404, ['route "items/" not found'])
    assert routed["route"] == "items/", "route is echoed"
    assert_ok(ok, "randomNumber")


def test_blocked_connection_type(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            blocked = await call(ws, {"action": "blocked_websocket"})
            web_only_blocked = await call(ws, {"action": "blocked_web"})
            return blocked, web_only_blocked

    blocked, other = run(go())
    assert_error(blocked, 400, ["this action does not support the websocket connection type"])
    assert_ok(other, "blocked_web")
    assert other["data"] == {"ran": True}
    status, body = gateway.get("/api/blocked_websocket")
    assert status == 200 and body["ran"] is True, "blocking websocket leaves the web alone"


@pytest.mark.asan
def test_action_errors_over_websocket(gateway):
    offset = gateway.log_size()

    async def go():
        async with gateway.ws_connect() as ws:
            table = await call(ws, {"action": "fail_table"})
            raised = await call_raw(ws, {"action": "raise_error"})
            unencodable = await call(ws, {"action": "bad_response"})
            denied = await call(ws, {"action": "randomNumber", "deny": "1"})
            t0 = time.monotonic()
            timed_out = await call(ws, {"action": "never_next"}, timeout=5)
            took = time.monotonic() - t0
            after = await call(ws, {"action": "randomNumber"})
            return table, raised, unencodable, denied, timed_out, took, after

    table, raised, unencodable, denied, timed_out, took, after = run(go())
    # An error table: its message is the error; its other fields travel with it (SPEC §3.1),
    # as one object in errors (its status is the envelope's).
    assert_error(table, 402, [{"message": "payment required", "code": "PAY"}])
    assert_error(json.loads(raised), 500, ["The server experienced an internal error"])
    assert "secret internal detail" not in raised, "the Lua error text must not reach the client"
    assert gateway.wait_for_log("secret internal detail", since=offset)
    assert_error(unencodable, 500, ["The server experienced an internal error"])
    assert_error(denied, 400, ["denied by middleware"])
    assert_error(timed_out, 504, ["action timed out"])
    assert 0.9 <= took < gw.bound(2.5), took  # actionTimeout is 1000 ms
    assert_ok(after, "randomNumber")


@pytest.mark.asan
def test_no_render_sends_nothing(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            await send(ws, {"action": "no_render", "request_id": "silent"})
            return await call(ws, {"action": "randomNumber", "request_id": "next"})

    env = run(go())
    assert env["request_id"] == "next", "toRender = false must send nothing, got %r" % env
    assert_ok(env, "randomNumber")


def test_api_versions(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            latest = await call(ws, {"action": "greeting", "data": {"name": "ws"}})
            v1 = await call(ws, {"action": "greeting", "data": {"name": "ws", "apiVersion": 1}})
            v1_top = await call(ws, {"action": "greeting", "apiVersion": 1})
            bad = await call(ws, {"action": "greeting", "apiVersion": 9})
            return latest, v1, v1_top, bad

    latest, v1, v1_top, bad = run(go())
    assert latest["data"] == {"greeting": "Hello, ws!", "version": 2}, latest
    assert v1["data"] == {"greeting": "hello ws"}, v1
    assert v1_top["data"] == {"greeting": "hello world"}, v1_top
    assert_error(bad, 404, ["unknown action or invalid apiVersion"])


@pytest.mark.asan
def test_unicode_and_large_messages(gateway):
    text = "h\u00e9llo \u2713 \U0001f389 \u4e2d\u6587"
    big = "b" * 600000

    async def go():
        async with gateway.ws_connect() as ws:
            uni = await call(ws, {"action": "echo_params", "data": {"a": text}})
            large = await call(ws, {"action": "echo_params", "data": {"a": big}}, timeout=10)
            blob = await call(ws, {"action": "big_response", "data": {"kb": 512}}, timeout=10)
            return uni, large, blob

    uni, large, blob = run(go())
    assert uni["data"]["params"]["a"] == text
    assert large["data"]["params"]["a"] == big, "a 600 kB message (under the 1 MiB default)"
    assert blob["data"]["blob"] == "x" * 512 * 1024


# -- bad input: a 400 envelope, and the connection goes on ----------------------------------

BAD_MESSAGES = [
    ("malformed", '{"action": "randomNumber"', "invalid JSON"),
    ("garbage", "hello there", "invalid JSON"),
    ("array", '[{"action": "randomNumber"}]', "invalid JSON"),
    ("number", "42", "invalid JSON"),
    ("string", '"randomNumber"', "invalid JSON"),
    ("null", "null", "invalid JSON"),
    ("empty", "", "invalid JSON"),
    # A number beyond a double's range would reach the action as null (and be sent back so).
    ("huge-number", '{"action": "echo_params", "data": {"a": 1e999}}', "invalid JSON"),
    ("huge-integer", '{"action": "echo_params", "a": [%s]}' % ("9" * 400), "invalid JSON"),
    ("no-action", '{"data": {"a": 1}}', "action is required"),
    ("number-action", '{"action": 5}', "action is required"),
    ("object-action", '{"action": {"name": "randomNumber"}}', "action is required"),
    ("null-action", '{"action": null}', "action is required"),
    ("data-array", '{"action": "echo_params", "data": [1, 2]}', "data must be a JSON object"),
    ("data-string", '{"action": "echo_params", "data": "a=1"}', "data must be a JSON object"),
    ("data-number", '{"action": "echo_params", "data": 3}', "data must be a JSON object"),
    ("params-array", '{"action": "echo_params", "params": [1]}', "data must be a JSON object"),
]


@pytest.mark.parametrize("text,error", [(t, e) for _, t, e in BAD_MESSAGES],
                         ids=[i for i, _, _ in BAD_MESSAGES])
@pytest.mark.asan
def test_bad_message_is_400_and_connection_goes_on(gateway, text, error):
    async def go():
        async with gateway.ws_connect() as ws:
            bad = await call_raw(ws, text)
            after = await call(ws, {"action": "randomNumber", "request_id": "after"})
            return bad, after

    bad, after = run(go())
    assert keys_of(bad) == ENVELOPE_KEYS, bad
    env = json.loads(bad)
    assert_error(env, 400, [error])
    if error == "invalid JSON" or text.startswith('{"data"'):
        assert env["action"] == "" and env["route"] == "", env
    if error == "data must be a JSON object":
        assert env["action"] == "echo_params", env
    assert_ok(after, "randomNumber")
    assert after["request_id"] == "after"


@pytest.mark.asan
def test_bad_message_with_request_id_echoes_it(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            no_action = await call_raw(ws, {"data": {}, "request_id": "r9"})
            bad_data = await call_raw(ws, {"action": "echo_params", "data": 5, "messageId": 10})
            return no_action, bad_data

    no_action, bad_data = run(go())
    assert keys_of(no_action) == ENVELOPE_KEYS + ["request_id"], no_action
    env = json.loads(no_action)
    assert_error(env, 400, ["action is required"])
    assert env["request_id"] == "r9"
    assert keys_of(bad_data) == ENVELOPE_KEYS + ["messageId"], bad_data
    env = json.loads(bad_data)
    assert_error(env, 400, ["data must be a JSON object"])
    assert env["messageId"] == 10


@pytest.mark.asan
def test_invalid_utf8_text_frame(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            # websockets will not send invalid UTF-8 in a text frame: write the frame by hand.
            await ws.write_frame(True, 0x1, b'{"action": "echo_params", "a": "\xff\xfe"}')
            bad = await recv_env(ws)
            after = await call(ws, {"action": "randomNumber"})
            return bad, after

    bad, after = run(go())
    assert_error(bad, 400, ["invalid JSON"])
    assert_ok(after, "randomNumber")


@pytest.mark.asan
def test_binary_frame_is_refused(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            bad = await call(ws, b'{"action": "randomNumber"}')
            after = await call(ws, {"action": "randomNumber"})
            return bad, after

    bad, after = run(go())
    assert_error(bad, 400, ["binary frames are not supported"])
    assert_ok(after, "randomNumber")


# -- frames and control --------------------------------------------------------------------

def _padded_message(size):
    base = '{"action": "echo_params", "a": ""}'
    msg = base[:-2] + "x" * (size - len(base)) + base[-2:]
    assert len(msg) == size
    return msg


@pytest.mark.asan
def test_max_message_size_closes_with_1009(make_gateway):
    g = make_gateway({"servers": {"websocket": {"maxMessageSize": 1024}}})

    async def go():
        async with g.ws_connect() as ws:
            at_limit = await call(ws, _padded_message(1024))
            await send(ws, _padded_message(1500))
            got = await wait_closed(ws)
            code = ws.close_code
        async with g.ws_connect() as ws:
            # Fragments each under the limit, together over it.
            await ws.send(iter(['{"action": "echo_params", "a": "' + "y" * 600,
                                "y" * 600 + '"}']))
            got2 = await wait_closed(ws)
            code2 = ws.close_code
        async with g.ws_connect() as ws:
            after = await call(ws, {"action": "randomNumber"})
        return at_limit, got, code, got2, code2, after

    at_limit, got, code, got2, code2, after = run(go())
    assert_ok(at_limit, "echo_params")
    assert len(at_limit["data"]["params"]["a"]) == 1024 - len('{"action": "echo_params", "a": ""}')
    assert code == 1009, "message over maxMessageSize: close code %r, messages %r" % (code, got)
    assert code2 == 1009, "fragmented message over maxMessageSize: close code %r, messages %r" % (
        code2, got2)
    assert_ok(after, "randomNumber")
    g.assert_serving()


@pytest.mark.asan
def test_fragmented_message_is_reassembled(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            two = await call(ws, iter(['{"action": "echo_pa', 'rams", "a": "frag"}']))
            many = await call(ws, iter(['{"action":', ' "echo_params", ', '"a": "', "z" * 3000,
                                        '", "request_id": "f"}']))
            return two, many

    two, many = run(go())
    assert_ok(two, "echo_params")
    assert two["data"]["params"]["a"] == "frag"
    assert_ok(many, "echo_params")
    assert many["data"]["params"]["a"] == "z" * 3000 and many["request_id"] == "f"


@pytest.mark.asan
def test_ping_gets_pong(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            waiter = await ws.ping(b"are-you-there")
            await asyncio.wait_for(waiter, WAIT)
            return await call(ws, {"action": "randomNumber"})

    assert_ok(run(go()), "randomNumber")


@pytest.mark.asan
def test_close_handshake(gateway):
    offset = gateway.log_size()

    async def go():
        ws = await gateway.ws_connect()
        env = await call(ws, {"action": "connection_info"})
        await asyncio.wait_for(ws.close(), WAIT)
        return env, ws.close_code, ws.close_rcvd

    env, code, rcvd = run(go())
    assert rcvd is not None, "the server did not answer the close frame"
    assert code == 1000, code
    cid = env["data"]["id"]
    assert gateway.wait_for_log(r"connLogger destroy id=%s\b" % re.escape(str(cid)), timeout=5,
                                since=offset), "destroy middleware did not run after a close"
    gateway.assert_serving()


@pytest.mark.parametrize("path", ["/nope", "/api/randomNumber", "/ws/extra", "/"])
@pytest.mark.asan
def test_upgrade_on_wrong_path_refused(gateway, path):
    assert (raw_upgrade(gateway, "/ws") or "").split()[1:2] == ["101"], "control: /ws upgrades"
    line = raw_upgrade(gateway, path)
    assert line is None or line.split()[1] != "101", "upgrade on %s accepted: %r" % (path, line)

    async def go():
        async with gateway.ws_connect(path):
            pass

    with pytest.raises((websockets.InvalidHandshake, ConnectionError, EOFError)):
        run(go(), timeout=10)
    gateway.assert_serving()


@pytest.mark.parametrize("path, status", [("/nope", 404), ("/ws/extra", 404), ("/", 404),
                                          ("/api/randomNumber", 200)])
def test_upgrade_on_wrong_path_gets_the_plain_http_answer(gateway, path, status):
    # SPEC 6: paths other than the action, file and WebSocket ones are 404; a server may
    # ignore an Upgrade it does not do (RFC 9110 7.8) and answer the request as it is.
    line = raw_upgrade(gateway, path)
    assert line is not None and line.split()[1] == str(status), (path, line)


# -- concurrency ---------------------------------------------------------------------------

@pytest.mark.asan
def test_concurrent_actions_on_one_connection(gateway):
    durations = [300, 250, 200, 150, 100]

    async def go():
        async with gateway.ws_connect() as ws:
            for i, d in enumerate(durations):
                await send(ws, {"action": "sleepTest", "data": {"sleepDuration": d},
                                "request_id": "s%d" % i})
            return [await recv_env(ws) for _ in durations]

    t0 = time.monotonic()
    answers = run(go())
    took = time.monotonic() - t0
    for env in answers:
        assert_ok(env, "sleepTest")
        i = int(env["request_id"][1:])
        assert env["data"]["sleepDuration"] == durations[i], \
            "answer %r carries another message's params" % env
    got = [env["data"]["sleepDuration"] for env in answers]
    assert sorted(env["request_id"] for env in answers) == ["s%d" % i for i in range(5)]
    # The completion order shows they ran at once (one after another: the order sent).
    assert got == sorted(durations), "answers come in completion order: %r" % got
    assert took < gw.bound(1.2), "the five sleeps ran one after another (%.2f s)" % took


@pytest.mark.asan
def test_too_many_pending_is_429(gateway):
    async def go():
        async with gateway.ws_connect() as ws:
            for i in range(6):
                await send(ws, {"action": "sleepTest", "data": {"sleepDuration": 300},
                                "request_id": i})
            t0 = time.monotonic()
            first = await recv_env(ws)
            first_after = time.monotonic() - t0
            rest = [await recv_env(ws) for _ in range(5)]
            after = await call(ws, {"action": "randomNumber"})
            return first, first_after, rest, after

    first, first_after, rest, after = run(go())
    answers = [first] + rest
    refused = [e for e in answers if e["status"] == 429]
    assert len(refused) == 1, answers
    assert_error(refused[0], 429, ["you have too many pending requests"])
    assert refused[0]["request_id"] == 5, "the 6th concurrent action is refused"
    # Before any of the 300 ms sleeps ends: the first answer, and soon.
    assert first is refused[0] and first_after < gw.bound(0.25), "the 429 is answered at once"
    for env in rest:
        assert_ok(env, "sleepTest")
    assert_ok(after, "randomNumber")


def test_simultaneous_actions_setting(make_gateway):
    g = make_gateway({"general": {"simultaneousActions": 2}})

    async def go():
        async with g.ws_connect() as ws:
            for i in range(3):
                await send(ws, {"action": "sleepTest", "data": {"sleepDuration": 200},
                                "request_id": i})
            return [await recv_env(ws) for _ in range(3)]

    answers = run(go())
    assert [e["status"] for e in answers] == [429, 200, 200], answers
    assert answers[0]["request_id"] == 2


def test_concurrency_limit_is_per_connection(gateway):
    async def go():
        async with gateway.ws_connect() as a, gateway.ws_connect() as b:
            for i in range(5):
                msg = {"action": "sleepTest", "data": {"sleepDuration": 200}, "request_id": i}
                await send(a, msg)
                await send(b, msg)
            return ([await recv_env(a) for _ in range(5)], [await recv_env(b) for _ in range(5)])

    ra, rb = run(go())
    for env in ra + rb:
        assert_ok(env, "sleepTest")


# -- connection state ----------------------------------------------------------------------

@pytest.mark.asan
def test_connection_state_persists(gateway):
    before = after = None
    async def go():
        nonlocal before, after
        before = time.time()
        async with gateway.ws_connect() as ws, gateway.ws_connect() as other:
            after = time.time()
            port = ws.local_address[1]
            i1 = await call(ws, {"action": "connection_info"})
            stored = await call(ws, {"action": "remember_user", "data": {"user": "alice"}})
            i2 = await call(ws, {"action": "connection_info"})
            bad = await call(ws, "{oops")
            i3 = await call(ws, {"action": "connection_info"})
            o = await call(other, {"action": "connection_info"})
            return port, i1, stored, i2, bad, i3, o

    port, i1, stored, i2, bad, i3, o = run(go())
    for env in (i1, i2, i3, o):
        assert_ok(env, "connection_info")
    c1, c2, c3, co = i1["data"], i2["data"], i3["data"], o["data"]
    assert c1["type"] == "websocket"
    assert c1["remoteIP"] == "127.0.0.1"
    assert c1["remotePort"] == port
    assert isinstance(c1["id"], str) and c1["id"]
    # ms since the epoch, taken while the connection opened (whole ms, rounded down)
    assert int(before * 1000) - 1 <= c1["connectedAt"] <= after * 1000 + 1, (before, c1, after)
    assert c1["hasRawConnection"] is True and c1["path"] == "/ws", c1
    headers = {k.lower(): v for k, v in c1["headers"].items()}
    assert headers.get("host") == "127.0.0.1:%d" % gateway.port, c1["headers"]
    assert c1["messageCount"] == 1 and c1["totalActions"] == 1 and c1["pendingActions"] == 1, c1
    assert_ok(stored, "remember_user")
    assert c1.get("user") is None
    assert c2["user"] == "alice" and c2["note"] == "remembered alice", c2
    assert c2["id"] == c1["id"] and c2["connectedAt"] == c1["connectedAt"]
    assert c2["messageCount"] == 3 and c2["totalActions"] == 3, c2
    assert_error(bad, 400, ["invalid JSON"])
    assert c3["messageCount"] == 5, "a bad message counts too: %r" % c3
    assert c3["user"] == "alice"
    assert co["id"] != c1["id"] and co.get("user") is None and co["messageCount"] == 1, co


def test_connection_middleware_create_and_destroy(gateway):
    offset = gateway.log_size()

    async def go():
        async with gateway.ws_connect() as ws:
            env = await call(ws, {"action": "connection_info"})
            created = gateway.wait_for_log(r"connLogger create id=%s ctype=websocket"
                                           % re.escape(str(env["data"]["id"])), timeout=3,
                                           since=offset)
            # Served again after that: the connection is still open, and still the same one.
            again = await call(ws, {"action": "connection_info"})
            destroyed_early = "connLogger destroy id=%s" % env["data"]["id"] in \
                gateway.log_since(offset)
            return env, created, again, destroyed_early

    env, created, again, destroyed_early = run(go())
    cid = re.escape(str(env["data"]["id"]))
    assert created, "create middleware did not run for the websocket connection"
    assert again["data"]["id"] == env["data"]["id"], again
    assert not destroyed_early, "destroy ran while the connection was still open"
    assert gateway.wait_for_log(r"connLogger destroy id=%s ctype=websocket" % cid, timeout=5,
                                since=offset), "destroy middleware did not run"
    text = gateway.log_since(offset)
    assert len(re.findall(r"connLogger create id=%s\b" % cid, text)) == 1, \
        "one connection for the whole WebSocket, not one per message"


# -- server push ---------------------------------------------------------------------------

@pytest.mark.asan
def test_server_push_to_another_connection(gateway):
    async def go():
        async with gateway.ws_connect() as a, gateway.ws_connect() as b:
            aid = (await call(a, {"action": "connection_info"}))["data"]["id"]
            table = await call(b, {"action": "push_to", "request_id": 1,
                                   "data": {"to": aid, "message": {"hello": "there", "n": 1}}})
            pushed_table = await recv_raw(a)
            text = await call(b, {"action": "push_to", "request_id": 2,
                                  "data": {"to": aid, "message": "plain words"}})
            pushed_text = await recv_raw(a)
            nobody = await call(b, {"action": "push_to",
                                    "data": {"to": "no-such-connection", "message": "x"}})
            still = await call(a, {"action": "randomNumber"})
        async with gateway.ws_connect() as c:
            gone = await call(c, {"action": "push_to", "data": {"to": aid, "message": "x"}})
        return table, pushed_table, text, pushed_text, nobody, still, gone

    table, pushed_table, text, pushed_text, nobody, still, gone = run(go())
    assert_ok(table, "push_to")
    assert table["data"] == {"sent": True}, table
    assert json.loads(pushed_table) == {"hello": "there", "n": 1}
    assert_ok(text, "push_to")
    assert text["data"] == {"sent": True}
    assert pushed_text == "plain words", "a string is pushed as it is"
    # An id this worker does not hold is published to the cluster (docs/realtime.md): true
    # means published, whether or not a worker holds it (test_cluster.py has the rest).
    assert nobody["data"] == {"sent": True}, nobody
    assert_ok(still, "randomNumber")
    assert gone["data"] == {"sent": True}, "push to a closed connection: %r" % gone


@pytest.mark.asan
def test_connections_count_includes_websockets(gateway):
    async def go():
        async with gateway.ws_connect() as a:
            before = (await call(a, {"action": "connection_count"}))["data"]["count"]
            others = [await gateway.ws_connect() for _ in range(3)]
            during = (await call(a, {"action": "connection_count"}))["data"]["count"]
            await asyncio.gather(*(o.close() for o in others))
            deadline = time.monotonic() + 5
            while True:
                after = (await call(a, {"action": "connection_count"}))["data"]["count"]
                if after == before or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return before, during, after

    before, during, after = run(go())
    assert before >= 1
    assert during == before + 3, (before, during)
    assert after == before, (before, after)


# -- many connections ----------------------------------------------------------------------

@pytest.mark.asan
def test_thousand_concurrent_connections(make_gateway):
    n, batch = 1000, 100
    raise_nofile(n * 2 + 500)
    g = make_gateway()

    async def go():
        conns = []
        for start in range(0, n, batch):
            conns += await asyncio.gather(*(g.ws_connect(open_timeout=15)
                                            for _ in range(start, min(n, start + batch))))
        count = (await call(conns[0], {"action": "connection_count"}))["data"]["count"]
        await asyncio.gather(*(send(ws, {"action": "randomNumber", "request_id": i})
                               for i, ws in enumerate(conns)))
        answers = await asyncio.gather(*(recv_env(ws, 20) for ws in conns))
        await asyncio.gather(*(ws.close() for ws in conns))
        return count, answers

    t0 = time.monotonic()
    count, answers = run(go(), timeout=50)
    assert count == n, "api.connections.count() with %d WebSockets open: %r" % (n, count)
    for i, env in enumerate(answers):
        assert_ok(env, "randomNumber")
        assert env["request_id"] == i, "answer went to the wrong connection"
    assert time.monotonic() - t0 < gw.bound(40)
    g.assert_serving()


# -- shutdown ------------------------------------------------------------------------------

@pytest.mark.asan
def test_shutdown_lets_in_flight_ws_action_finish(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000}})

    async def go():
        async with g.ws_connect() as ws:
            offset = g.log_size()
            await send(ws, {"action": "sleepTest", "data": {"sleepDuration": 700},
                            "request_id": "slow"})
            # Counted as pending (with this one): the sleep is in flight.
            info = await call(ws, {"action": "connection_info"})
            assert info["data"]["pendingActions"] == 2, info
            shutdown_offset = g.log_size()
            g.signal(signal.SIGTERM)
            assert await asyncio.to_thread(
                g.wait_for_log, r"shutting down: waiting for 1 in-flight actions", 5,
                shutdown_offset), g.describe()
            await send(ws, {"action": "randomNumber", "request_id": "late"})
            answers = [await recv_env(ws, 5), await recv_env(ws, 5)]
            rest = await wait_closed(ws, 8)
            return offset, answers, (rest, ws.close_code, ws.close_reason)

    t0 = time.monotonic()
    offset, answers, (rest, code, reason) = run(go())
    # Closed politely, with a close frame saying why.
    assert code == 1001, (code, reason)
    assert reason == "the server is shutting down"
    assert rest == []
    by_id = {e.get("request_id"): e for e in answers}
    assert set(by_id) == {"slow", "late"}, answers
    assert_ok(by_id["slow"], "sleepTest")
    assert by_id["slow"]["data"]["sleepDuration"] == 700
    assert_error(by_id["late"], 503, ["the server is shutting down"])
    rc = g.wait(10)
    assert rc == 0, "exit status after SIGTERM: %r\n%s" % (rc, g.describe())
    assert time.monotonic() - t0 < gw.bound(6)


# -- reload --------------------------------------------------------------------------------

HUP_ACTION = """return {
  name = "hup_ws",
  description = "added by a reload",
  run = function(api, data, next)
    data.response.reloaded = true
    next()
  end,
}
"""


@pytest.mark.asan
def test_sighup_keeps_websocket_connections(make_gateway, tmp_path):
    extra = tmp_path / "hup_actions"
    extra.mkdir()
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, str(extra)],
                                "middleware": [gw.TEST_MIDDLEWARE]},
                      "general": {"actionTimeout": 5000}})

    async def go():
        async with g.ws_connect() as ws:
            before = await call(ws, {"action": "remember_user", "data": {"user": "bob"}})
            missing = await call(ws, {"action": "hup_ws"})
            (extra / "hup_ws.lua").write_text(HUP_ACTION)
            await send(ws, {"action": "sleepTest", "data": {"sleepDuration": 400},
                            "request_id": "inflight"})
            # Counted as pending (with this one): the sleep is in flight across the reload.
            pending = await call(ws, {"action": "connection_info"})
            assert pending["data"]["pendingActions"] == 2, pending
            offset = g.log_size()
            g.signal(signal.SIGHUP)
            assert await asyncio.to_thread(g.wait_for_log, r"reload done", 5, offset), \
                g.describe()
            inflight = await recv_env(ws)
            added = await call(ws, {"action": "hup_ws"})
            info = await call(ws, {"action": "connection_info"})
            return before, missing, inflight, added, info

    before, missing, inflight, added, info = run(go())
    assert_ok(before, "remember_user")
    assert_error(missing, 404, ["unknown action or invalid apiVersion"])
    assert_ok(inflight, "sleepTest")
    assert inflight["request_id"] == "inflight"
    assert_ok(added, "hup_ws")
    assert added["data"] == {"reloaded": True}
    assert info["data"]["user"] == "bob", "the connection and its state survive a reload"
    assert g.alive()
