"""TCP socket server (SPEC §8 "Socket"; wire contract of issue 3): the listening line, JSON lines
with the envelope, the verbs, sticky params, line framing, limits and concurrency."""

import json
import re
import signal
import socket
import time

import pytest

import gateway as gw

ENVELOPE_KEYS = ["errors", "data", "action", "route", "status"]
VERB_KEYS = ["status", "data", "context"]


@pytest.fixture(scope="module")
def sgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module with the socket server on a free port."""
    workdir = tmp_path_factory.mktemp("sgw")
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url),
                           {"servers": {"socket": {"enabled": True, "port": 0}}})
    with gw.serving(workdir, config) as g:
        yield g


@pytest.fixture
def client(sgw):
    assert sgw.alive(), "the module's socket gateway died\n" + sgw.describe()
    c = sgw.line_client()
    yield c
    c.close()


def keys_of(line):
    pairs = json.loads(line, object_pairs_hook=list)
    assert isinstance(pairs, list), line
    return [k for k, _ in pairs]


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


def verb_ok(answer, data=None):
    assert answer == {"status": "OK", "data": data, "context": "response"}, answer


# -- listening and the envelope ------------------------------------------------------------

def test_listening_line(sgw):
    out = sgw.stdout_text()
    assert re.search(r"^listening web http://127\.0\.0\.1:%d$" % sgw.port, out, re.M), out
    m = re.search(r"^listening socket tcp://127\.0\.0\.1:(\d+)$", out, re.M)
    assert m, out
    assert int(m.group(1)) == sgw.socket_port != 0
    assert sgw.socket_port != sgw.port
    with sgw.line_client() as c:
        assert c.call("paramsView")["status"] == "OK"


def test_socket_server_off_by_default(gateway):
    # The listening lines (stdout) and their log lines (stderr, written straight to the file)
    # are printed one after the other before the event loop starts, web first: once the loop
    # has answered a request, a socket listener's lines would already have been written, so
    # their absence from the log is conclusive.
    assert gateway.get("/api/randomNumber")[0] == 200
    log = gateway.log_text()
    assert "web server listening on" in log, log
    assert "socket server listening" not in log, log
    assert "listening socket" not in gateway.stdout_text()


def test_socket_on_a_fixed_port(make_gateway):
    def start():
        port = gw.free_port()
        g = make_gateway({"servers": {"socket": {"enabled": True, "port": port}}}, start=False)
        try:
            g.start()
        except gw.PortInUse:
            g.expect_exit = 1  # another process took the port first: a start error, as it should
            raise
        return g, port

    g, port = gw.retry_port_in_use(start)
    assert g.socket_port == port
    with g.line_client() as c:
        assert_ok(c.call('{"action": "randomNumber"}'), "randomNumber")


def test_json_line_envelope(client):
    client.send_line('{"action": "randomNumber", "request_id": "t1"}')
    line = client.read_line()
    assert keys_of(line) == ENVELOPE_KEYS + ["request_id"], line
    env = json.loads(line)
    assert_ok(env, "randomNumber")
    assert env["route"] == "" and env["request_id"] == "t1"
    assert 0 <= env["data"]["randomNumber"] < 1
    assert client.buf == b"", "one answer, one line: extra %r" % client.buf

    client.send_line('{"action": "randomNumber", "messageId": 9}')
    line = client.read_line()
    assert keys_of(line) == ENVELOPE_KEYS + ["messageId"], line
    assert json.loads(line)["messageId"] == 9

    client.send_line('{"action": "fail_string"}')
    line = client.read_line()
    assert keys_of(line) == ENVELOPE_KEYS, line
    assert_error(json.loads(line), 400, ["broken"])


def test_answers_end_with_newline(sgw):
    with socket.create_connection((sgw.socket_host, sgw.socket_port), timeout=5) as s:
        s.sendall(b"paramsView\n")
        data = b""
        deadline = time.monotonic() + 5
        while not data.endswith(b"\n") and time.monotonic() < deadline:
            data += s.recv(65536)
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    assert not data.endswith(b"\r\n"), "answers end with a bare \\n: %r" % data


def test_json_line_input_failures_and_params(client):
    env = client.call('{"action": "randomNumber", "data": {"multiplier": -1}}')
    assert_error(env, 422, [{"multiplier": ["must be > 0"]}])
    env = client.call('{"action": "required_input"}')
    assert_error(env, 422, [{"name": ["This field is required."]}])
    env = client.call('{"action": "echo_params", "a": "top", "params": {"b": "p"}}')
    assert_ok(env, "echo_params")
    assert env["data"]["params"]["a"] == "top" and env["data"]["params"]["b"] == "p"
    env = client.call('{"action": "noSuchAction"}')
    assert_error(env, 404, ["unknown action or invalid apiVersion"])


@pytest.mark.asan
def test_bad_json_line_is_400(client):
    env = client.call('{"action": "randomNumber"')
    assert_error(env, 400, ["invalid JSON"])
    env = client.call('{"data": {}}')
    assert_error(env, 400, ["action is required"])
    env = client.call('{"action": "echo_params", "data": [1]}')
    assert_error(env, 400, ["data must be a JSON object"])
    client.send_line(b'{"action": "echo_params", "a": "\xff"}')
    assert_error(client.read_json(), 400, ["invalid JSON"])
    # A number beyond a double's range would reach the action as null (and be sent back so).
    env = client.call('{"action": "echo_params", "data": {"a": -1e400}}')
    assert_error(env, 400, ["invalid JSON"])
    assert_ok(client.call('{"action": "randomNumber"}'), "randomNumber")


def test_blocked_connection_type(client):
    env = client.call('{"action": "blocked_socket"}')
    assert_error(env, 400, ["this action does not support the socket connection type"])
    env = client.call("blocked_socket")
    assert_error(env, 400, ["this action does not support the socket connection type"])
    assert_ok(client.call('{"action": "blocked_websocket"}'), "blocked_websocket")


# -- verbs ---------------------------------------------------------------------------------

def test_param_verbs(client):
    client.send_line("paramAdd a=1")
    line = client.read_line()
    assert keys_of(line) == VERB_KEYS, line
    verb_ok(json.loads(line), None)
    verb_ok(client.call("paramView a"), "1")
    verb_ok(client.call("paramAdd b=two"), None)
    verb_ok(client.call("paramView b"), "two")
    verb_ok(client.call("paramsView"), {"a": "1", "b": "two"})
    verb_ok(client.call("paramDelete a"), None)
    verb_ok(client.call("paramView a"), None)
    verb_ok(client.call("paramsView"), {"b": "two"})
    verb_ok(client.call("paramsDelete"), None)
    verb_ok(client.call("paramsView"), {})
    verb_ok(client.call("paramView nothing"), None)
    verb_ok(client.call("paramAdd num=5"), None)
    verb_ok(client.call("paramView num"), "5")  # values are strings


def test_params_view_empty_is_object(client):
    client.send_line("paramsView")
    line = client.read_line()
    assert b'"data":{}' in line.replace(b" ", b""), "empty params must be {} not []: %r" % line


def test_details_view(client):
    verb_ok(client.call("paramAdd k=v"), None)
    ans = client.call("detailsView")
    assert ans["status"] == "OK" and ans["context"] == "response", ans
    d = ans["data"]
    assert set(d) == {"id", "type", "remoteIP", "remotePort", "connectedAt", "params",
                      "pendingActions", "totalActions", "messageCount"}, d
    assert d["type"] == "socket"
    assert d["remoteIP"] == "127.0.0.1"
    assert d["remotePort"] == client.local_port()
    assert d["params"] == {"k": "v"}
    assert isinstance(d["id"], str) and d["id"]
    assert abs(d["connectedAt"] / 1000.0 - time.time()) < 60
    assert d["pendingActions"] == 0
    info = client.call("connection_info")
    assert_ok(info, "connection_info")
    assert info["data"]["id"] == d["id"] and info["data"]["type"] == "socket"
    assert info["data"]["sticky"] == {"k": "v"}
    assert info["data"]["pendingActions"] == 1, "the running action is pending"
    d2 = client.call("detailsView")["data"]
    assert d2["id"] == d["id"] and d2["connectedAt"] == d["connectedAt"]
    assert d2["totalActions"] == d["totalActions"] + 1, (d, d2)
    assert d2["pendingActions"] == 0
    assert d2["messageCount"] > d["messageCount"], (d, d2)


def test_documentation_verb(client):
    ans = client.call("documentation")
    assert ans["status"] == "OK" and ans["context"] == "response", str(ans)[:500]
    doc = ans["data"]
    assert doc["randomNumber"]["1"]["name"] == "randomNumber", str(doc)[:500]
    assert "hidden_doc" not in doc


@pytest.mark.parametrize("verb", ["quit", "exit"])
@pytest.mark.asan
def test_quit_closes(client, verb):
    verb_ok(client.call(verb), "Bye!")
    assert client.wait_closed(3), "the server did not close the connection after %s" % verb


VERB_USAGE = {"paramAdd": "paramAdd needs key=value", "paramView": "paramView needs a key",
              "paramDelete": "paramDelete needs a key"}


@pytest.mark.parametrize("line", ["paramAdd novalue", "paramAdd", "paramAdd =v", "paramView",
                                  "paramDelete"])
@pytest.mark.asan
def test_verb_used_wrongly(client, line):
    client.send_line(line)
    raw = client.read_line()
    assert keys_of(raw) == ["status", "error", "context"], raw
    ans = json.loads(raw)
    assert ans == {"status": "error", "error": VERB_USAGE[line.split()[0]],
                   "context": "response"}, ans
    verb_ok(client.call("paramsView"), {})


def test_unknown_word_is_unknown_action(client):
    env = client.call("noSuchThing")
    assert_error(env, 404, ["unknown action or invalid apiVersion"])
    assert env["action"] == "noSuchThing"


# -- sticky params -------------------------------------------------------------------------

def test_sticky_params_feed_actions(client):
    verb_ok(client.call("paramAdd multiplier=0"), None)
    env = client.call("randomNumber")
    assert_ok(env, "randomNumber")
    assert env["data"]["randomNumber"] == 0, "the sticky multiplier=0 was not used: %r" % env
    verb_ok(client.call("paramAdd multiplier=-1"), None)
    assert_error(client.call("randomNumber"), 422, [{"multiplier": ["must be > 0"]}])
    verb_ok(client.call("paramDelete multiplier"), None)
    env = client.call("randomNumber")
    assert_ok(env, "randomNumber")
    assert 0 <= env["data"]["randomNumber"] < 1


def test_actions_get_a_copy_of_sticky_params(client):
    verb_ok(client.call("paramAdd a=sticky"), None)
    env = client.call("echo_params")
    assert_ok(env, "echo_params")
    assert env["data"]["params"]["a"] == "sticky"
    # The action's scrubbing and inputs work on a copy: the sticky set is unchanged.
    verb_ok(client.call("paramAdd zzz=undeclared"), None)
    client.call("echo_params")
    verb_ok(client.call("paramsView"), {"a": "sticky", "zzz": "undeclared"})


def test_json_lines_do_not_make_params_sticky(client):
    env = client.call('{"action": "echo_params", "data": {"b": "json"}}')
    assert env["data"]["params"]["b"] == "json"
    verb_ok(client.call("paramsView"), {})
    env = client.call("echo_params")
    assert "b" not in env["data"]["params"], env


# -- line framing --------------------------------------------------------------------------

@pytest.mark.asan
def test_partial_line_across_sends(client):
    # The sleeps let the gateway read each piece on its own (the point of the test); were one
    # too short, the pieces would merely arrive together.
    client.send('{"action": "echo_par')
    time.sleep(0.15)
    client.send('ams", "a": "p')
    time.sleep(0.15)
    client.send('art"}\n')
    env = client.read_json()
    assert_ok(env, "echo_params")
    assert env["data"]["params"]["a"] == "part"
    client.send("paramA")
    time.sleep(0.1)
    client.send("dd x=1\nparams")
    verb_ok(client.read_json(), None)
    time.sleep(0.1)
    client.send("View\n")
    verb_ok(client.read_json(), {"x": "1"})


@pytest.mark.asan
def test_several_lines_in_one_send(client):
    client.send('paramAdd a=1\nparamView a\n{"action": "echo_params", "request_id": 3}\n'
                "paramsView\n")
    verb_ok(client.read_json(), None)
    verb_ok(client.read_json(), "1")
    env = client.read_json()
    assert_ok(env, "echo_params")
    assert env["request_id"] == 3
    verb_ok(client.read_json(), {"a": "1"})


@pytest.mark.asan
def test_crlf_and_empty_lines(client):
    client.send("paramAdd a=crlf\r\n\r\n\n\r\nparamView a\r\n")
    verb_ok(client.read_json(), None)
    verb_ok(client.read_json(), "crlf")
    client.send('{"action": "echo_params", "a": "j"}\r\n')
    env = client.read_json()
    assert_ok(env, "echo_params")
    assert env["data"]["params"]["a"] == "j"
    # Empty lines got no answer: the next answer is the next command's.
    verb_ok(client.call("paramsView"), {"a": "crlf"})


@pytest.mark.asan
def test_line_over_max_line_length(make_gateway):
    g = make_gateway({"servers": {"socket": {"enabled": True, "port": 0, "maxLineLength": 256}}})
    with g.line_client() as c:
        line = "paramAdd a=" + "x" * 245
        assert len(line) == 256
        verb_ok(c.call(line), None)
        verb_ok(c.call("paramView a"), "x" * 245)

        c.send_line("paramAdd b=" + "y" * 400)
        raw = c.read_line()
        assert keys_of(raw)[:5] == ENVELOPE_KEYS, raw
        assert_error(json.loads(raw), 413, ["line is longer than maxLineLength"])
        verb_ok(c.call("paramView b"), None)  # the line was dropped

        # A long line that arrives in pieces: one 413, then back to normal.
        for _ in range(5):
            c.send('{"action": "echo_params", "a": "' + "z" * 200)
            time.sleep(0.05)
        c.send('"}\n')
        assert_error(c.read_json(), 413, ["line is longer than maxLineLength"])
        verb_ok(c.call("paramsView"), {"a": "x" * 245})
        assert_ok(c.call('{"action": "randomNumber"}'), "randomNumber")
    g.assert_serving()


# -- concurrency ---------------------------------------------------------------------------

def test_concurrent_json_lines(client):
    durations = [300, 200, 100]
    client.send("".join('{"action": "sleepTest", "data": {"sleepDuration": %d}, "request_id": %d}\n'
                        % (d, i) for i, d in enumerate(durations)))
    t0 = time.monotonic()
    answers = [client.read_json(5) for _ in durations]
    took = time.monotonic() - t0
    for env in answers:
        assert_ok(env, "sleepTest")
        assert env["data"]["sleepDuration"] == durations[env["request_id"]], env
    # The order of completion shows they ran at once (one after another would be 0, 1, 2).
    assert [e["request_id"] for e in answers] == [2, 1, 0], "completion order"
    assert took < gw.bound(0.8), "they ran one after another (%.2f s)" % took


@pytest.mark.asan
def test_too_many_pending_is_429(client):
    line = '{"action": "sleepTest", "data": {"sleepDuration": 300}, "request_id": %d}\n'
    client.send("".join(line % i for i in range(6)))
    answers = [client.read_json(5) for _ in range(6)]
    refused = [e for e in answers if e["status"] == 429]
    assert len(refused) == 1, answers
    assert_error(refused[0], 429, ["you have too many pending requests"])
    assert refused[0]["request_id"] == 5
    assert answers[0] is refused[0], "the 429 is answered at once"
    for e in answers[1:]:
        assert_ok(e, "sleepTest")
    # Plain verbs work while actions are pending; the limit counts actions only.
    client.send("paramAdd sleepDuration=200\n" + "sleepTest\n" * 6)
    verb_ok(client.read_json(), None)
    answers = [client.read_json(5) for _ in range(6)]
    assert sorted(e["status"] for e in answers) == [200] * 5 + [429], answers


# -- connection life -----------------------------------------------------------------------

@pytest.mark.asan
def test_connection_middleware_and_count(sgw):
    offset = sgw.log_size()
    with sgw.line_client() as c:
        cid = c.call("detailsView")["data"]["id"]
        assert sgw.wait_for_log(r"connLogger create id=%s ctype=socket" % re.escape(cid),
                                timeout=3, since=offset), "create middleware did not run"
        before = c.call("connection_count")["data"]["count"]
        with sgw.line_client() as c2:
            c2.call("paramsView")
            during = c.call("connection_count")["data"]["count"]
    assert during == before + 1, (before, during)
    assert sgw.wait_for_log(r"connLogger destroy id=%s ctype=socket" % re.escape(cid),
                            timeout=5, since=offset), "destroy middleware did not run"


@pytest.mark.asan
def test_push_to_socket_connection(sgw, client):
    cid = client.call("detailsView")["data"]["id"]
    with sgw.line_client() as other:
        env = other.call(json.dumps({"action": "push_to",
                                     "data": {"to": cid, "message": {"hi": "socket"}}}))
        assert_ok(env, "push_to")
        assert env["data"] == {"sent": True}
    assert json.loads(client.read_line(3)) == {"hi": "socket"}
    verb_ok(client.call("paramsView"), {})


@pytest.mark.asan
def test_large_answer_is_one_line(client):
    env = client.call('{"action": "big_response", "data": {"kb": 512}}', timeout=10)
    assert_ok(env, "big_response")
    assert env["data"]["blob"] == "x" * 512 * 1024
    text = "h\u00e9llo \u2713 \U0001f389"
    env = client.call(json.dumps({"action": "echo_params", "a": text}, ensure_ascii=False))
    assert env["data"]["params"]["a"] == text


@pytest.mark.asan
def test_action_errors_over_socket(client):
    assert_error(client.call("raise_error"), 500, ["The server experienced an internal error"])
    env = client.call("fail_table")
    assert env["status"] == 402 and env["data"] is None, env
    assert_ok(client.call("randomNumber"), "randomNumber")


@pytest.mark.asan
def test_shutdown_lets_in_flight_socket_action_finish(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000},
                      "servers": {"socket": {"enabled": True, "port": 0}}})
    with g.line_client() as c:
        c.send_line('{"action": "sleepTest", "data": {"sleepDuration": 700}, "request_id": "slow"}')
        # Verbs are answered while an action is pending: this one shows the sleep in flight.
        assert c.call("detailsView")["data"]["pendingActions"] == 1
        t0 = time.monotonic()
        offset = g.log_size()
        g.signal(signal.SIGTERM)
        assert g.wait_for_log(r"shutting down: waiting for 1 in-flight actions", timeout=5,
                              since=offset), g.describe()
        c.send_line('{"action": "randomNumber", "request_id": "late"}')
        answers = {}
        for _ in range(2):
            env = c.read_json(5)
            answers[env.get("request_id")] = env
        closed = c.wait_closed(8)
    assert set(answers) == {"slow", "late"}, answers
    assert_ok(answers["slow"], "sleepTest")
    assert answers["slow"]["data"]["sleepDuration"] == 700
    assert_error(answers["late"], 503, ["the server is shutting down"])
    assert closed, "the gateway did not close the socket connection when shutting down"
    rc = g.wait(10)
    assert rc == 0, "exit status after SIGTERM: %r\n%s" % (rc, g.describe())
    assert time.monotonic() - t0 < gw.bound(6)
