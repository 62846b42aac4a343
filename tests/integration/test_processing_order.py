"""The processing order of SPEC §3.2 and the reserved params of SPEC §3 / §3.3.

- Which check wins when several fail at once: shutting down (503) > too many pending actions
  (429) > unknown action or version (404) > blocked connection type (400). The pending slots
  are held by the test action `hold`, which stays pending until a flag file exists, so no
  test guesses how long anything takes.
- postProcessors run after a `run` that succeeded and are skipped after one that failed,
  however it failed (test middleware postMarkGlobal and postMarkAction mark the answer).
- An input named action, apiVersion, callback or file is a load-time error (startup,
  --check and SIGHUP reload); scrubbing keeps those params."""

import asyncio
import json
import os
import re
import signal

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

ORDER_ACTIONS = os.path.join(gw.HERE, "order_actions")
ORDER_MIDDLEWARE = os.path.join(gw.HERE, "order_middleware")
RESERVED = ["action", "apiVersion", "callback", "file"]
WAIT = 10.0  # seconds for one answer

PENDING = ["you have too many pending requests"]
UNKNOWN = ["unknown action or invalid apiVersion"]
SHUTTING_DOWN = ["the server is shutting down"]


def blocked(ctype):
    return ["this action does not support the %s connection type" % ctype]


def order_config(workdir, redis_url, **general):
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url), {
        "paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, ORDER_ACTIONS],
                  "middleware": [gw.TEST_MIDDLEWARE, ORDER_MIDDLEWARE]},
        "servers": {"socket": {"enabled": True, "port": 0}},
        "general": {"simultaneousActions": 2, "actionTimeout": 25000, "shutdownTimeout": 25000},
    })
    config["general"].update(general)
    return config


@pytest.fixture(scope="module")
def ogw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("order")
    with gw.serving(workdir, order_config(workdir, redis_url)) as g:
        yield g


@pytest.fixture
def g(ogw):
    assert ogw.alive(), "the module's gateway died\n" + ogw.describe()
    return ogw


def assert_error(env, status, errors, request_id):
    assert env.get("request_id") == request_id, env
    assert env["status"] == status, env
    assert env["errors"] == errors, env
    assert env["data"] is None, env


def hold_message(key, flag, request_id):
    return {"action": "hold", "data": {"key": key, "flag": str(flag)}, "request_id": request_id}


def wait_holds(g, keys, offset):
    """Both holds are running (pending) once each has logged its start."""
    for key in keys:
        assert g.wait_for_log(r"hold start key=%s\b" % re.escape(key), timeout=WAIT, since=offset), \
            "hold %s never started\n%s" % (key, g.log_since(offset))


def assert_held_until_released(answers, keys):
    by_id = {a.get("request_id"): a for a in answers}
    assert sorted(by_id) == sorted(keys), answers
    for key in keys:
        a = by_id[key]
        assert a["status"] == 200 and a["errors"] == [], a
        assert a["data"] == {"key": key, "released": True}, a


# -- 503 > 429 > 404 > 400 ---------------------------------------------------------------------

def test_tcp_429_beats_404_and_400(g, tmp_path):
    flag = tmp_path / "release-tcp"
    offset = g.log_size()
    with g.line_client(timeout=WAIT) as c:
        for key in ("tcpA", "tcpB"):
            c.send_line(json.dumps(hold_message(key, flag, key)))
        wait_holds(g, ["tcpA", "tcpB"], offset)

        # Both slots are taken: each of these is also unknown or blocked, and gets 429.
        assert_error(c.call(json.dumps({"action": "no_such_action", "request_id": "u"})),
                     429, PENDING, "u")
        assert_error(c.call(json.dumps({"action": "blocked_socket", "request_id": "b"})),
                     429, PENDING, "b")
        assert_error(c.call(json.dumps({"action": "blocked_socket", "request_id": "v",
                                        "data": {"apiVersion": 99}})), 429, PENDING, "v")

        flag.write_text("go")
        assert_held_until_released([c.read_json(WAIT), c.read_json(WAIT)], ["tcpA", "tcpB"])

        # With free slots each condition alone gives its own answer; an unknown version of
        # a blocked action is 404, not 400.
        assert_error(c.call(json.dumps({"action": "no_such_action", "request_id": "u2"})),
                     404, UNKNOWN, "u2")
        assert_error(c.call(json.dumps({"action": "blocked_socket", "request_id": "b2"})),
                     400, blocked("socket"), "b2")
        assert_error(c.call(json.dumps({"action": "blocked_socket", "request_id": "v2",
                                        "data": {"apiVersion": 99}})), 404, UNKNOWN, "v2")


def test_websocket_429_beats_404_and_400(g, tmp_path):
    flag = tmp_path / "release-ws"
    offset = g.log_size()

    async def recv(ws):
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        except asyncio.TimeoutError:
            raise AssertionError("no WebSocket answer within %.0f s" % WAIT)

    async def call(ws, msg):
        await ws.send(json.dumps(msg))
        return await recv(ws)

    async def go():
        async with g.ws_connect() as ws:
            for key in ("wsA", "wsB"):
                await ws.send(json.dumps(hold_message(key, flag, key)))
            await asyncio.get_running_loop().run_in_executor(
                None, wait_holds, g, ["wsA", "wsB"], offset)
            full = [await call(ws, {"action": "no_such_action", "request_id": "u"}),
                    await call(ws, {"action": "blocked_websocket", "request_id": "b"})]
            flag.write_text("go")
            held = [await recv(ws), await recv(ws)]
            free = [await call(ws, {"action": "no_such_action", "request_id": "u2"}),
                    await call(ws, {"action": "blocked_websocket", "request_id": "b2"}),
                    await call(ws, {"action": "blocked_websocket", "request_id": "v2",
                                    "apiVersion": 99})]
            return full, held, free

    full, held, free = asyncio.run(asyncio.wait_for(go(), 6 * WAIT))
    assert_error(full[0], 429, PENDING, "u")
    assert_error(full[1], 429, PENDING, "b")
    assert_held_until_released(held, ["wsA", "wsB"])
    assert_error(free[0], 404, UNKNOWN, "u2")
    assert_error(free[1], 400, blocked("websocket"), "b2")
    assert_error(free[2], 404, UNKNOWN, "v2")


def test_web_404_beats_400(g):
    # A web request has one action at a time, so only 404 against 400 can be set up here.
    r = g.request("GET", "/api/blocked_web?apiVersion=99")
    assert r.status == 404, r.body
    assert r.json()["errors"] == UNKNOWN
    r = g.request("GET", "/api/blocked_web")
    assert r.status == 400, r.body
    assert r.json()["errors"] == blocked("web")


def test_tcp_503_beats_429_404_and_400(make_gateway, redis_url, tmp_path):
    workdir = tmp_path / "gw503"
    workdir.mkdir()
    g = make_gateway(config=order_config(workdir, redis_url), workdir=workdir)
    flag = tmp_path / "release-503"
    offset = g.log_size()
    with g.line_client(timeout=WAIT) as full, g.line_client(timeout=WAIT) as idle:
        assert idle.call("paramsView")["status"] == "OK"  # open and served before the signal
        for key in ("downA", "downB"):
            full.send_line(json.dumps(hold_message(key, flag, key)))
        wait_holds(g, ["downA", "downB"], offset)

        g.signal(signal.SIGTERM)
        assert g.wait_for_log(r"shutting down: waiting for 2 in-flight actions", timeout=WAIT,
                              since=offset), g.log_since(offset)

        # Shutting down, slots full, unknown: 503. Shutting down, slots full, blocked: 503.
        assert_error(full.call(json.dumps({"action": "no_such_action", "request_id": "fu"})),
                     503, SHUTTING_DOWN, "fu")
        assert_error(full.call(json.dumps({"action": "blocked_socket", "request_id": "fb"})),
                     503, SHUTTING_DOWN, "fb")
        # On a connection with free slots: 503 against 404 and against 400.
        assert_error(idle.call(json.dumps({"action": "no_such_action", "request_id": "iu"})),
                     503, SHUTTING_DOWN, "iu")
        assert_error(idle.call(json.dumps({"action": "blocked_socket", "request_id": "ib"})),
                     503, SHUTTING_DOWN, "ib")
        assert_error(idle.call(json.dumps({"action": "blocked_socket", "request_id": "iv",
                                           "data": {"apiVersion": 99}})),
                     503, SHUTTING_DOWN, "iv")

        # The holds were pending all along (their answers come after every 503 above), and
        # they still finish: in-flight actions are let through.
        flag.write_text("go")
        assert_held_until_released([full.read_json(WAIT), full.read_json(WAIT)],
                                   ["downA", "downB"])
    assert g.wait(gw.bound(10)) == 0, g.describe()


# -- postProcessors are skipped when run fails ----------------------------------------------

POST_CASES = {
    # mode: (status, error text or None when run succeeds)
    "next": (200, None),
    "return_table": (200, None),
    "later_next": (200, None),
    "next_err": (400, "failed by next"),
    "next_err_table": (402, "failed with a table"),
    "return_err": (400, "failed by return"),
    "raise": (500, "The server experienced an internal error"),
    "raise_table": (418, "raised a table"),
    "later_err": (400, "failed later"),
    "invalid": (422, "mode is invalid"),  # an input failure: run never starts
}


@pytest.mark.parametrize("mode", list(POST_CASES))
def test_post_processors_run_only_after_run_succeeds(g, mode):
    status, error = POST_CASES[mode]
    r = g.request("GET", "/api/post_probe?mode=" + mode)
    assert r.status == status, r.body
    body = r.json()
    conn = body["requesterInformation"]["id"]
    # The log lines come before the answer is rendered, so they are there by now if at all.
    text = g.log_text()
    ran_global = "postMarkGlobal ran connection=%s" % conn in text
    ran_action = "postMarkAction ran connection=%s" % conn in text
    if error is None:
        assert body.get("ran") is True, body
        assert r.headers.get("X-Post-Global") == "ran", dict(r.headers)
        assert r.headers.get("X-Post-Action") == "ran", dict(r.headers)
        assert ran_global and ran_action, "both postProcessors must run\n" + text[-3000:]
    else:
        assert gw.error_text(body) == error, body
        assert "ran" not in body, body
        assert r.headers.get("X-Post-Global") is None, dict(r.headers)
        assert r.headers.get("X-Post-Action") is None, dict(r.headers)
        assert not ran_global and not ran_action, "a postProcessor ran after a failed run"


def test_post_processors_over_tcp(g):
    # Persistent connections skip them the same way (counted in the log: one connection).
    offset = g.log_size()
    with g.line_client(timeout=WAIT) as c:
        modes = ["next_err", "raise", "next", "return_err", "return_table"]
        answers = [c.call(json.dumps({"action": "post_probe", "data": {"mode": m},
                                      "request_id": m})) for m in modes]
    assert [a["status"] for a in answers] == [400, 500, 200, 400, 200], answers
    text = g.log_since(offset)
    assert text.count("postMarkGlobal ran") == 2, text
    assert text.count("postMarkAction ran") == 2, text


# -- reserved params ------------------------------------------------------------------------

def reserved_action(name):
    return ('return {\n  name = "reserved_%s",\n  description = "declares a reserved input",\n'
            '  inputs = { %s = {} },\n  run = function(api, data, next) next() end,\n}\n'
            % (name, name))


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_input_fails_check(gateway_bin, tmp_path, name):
    actions = tmp_path / "actions"
    actions.mkdir()
    path = actions / ("reserved_%s.lua" % name)
    path.write_text(reserved_action(name))
    config = gw.write_config(str(tmp_path / "gateway.lua"),
                             gw.default_config(str(tmp_path), actions=[gw.EXAMPLE_ACTIONS,
                                                                       str(actions)]))
    res = gw.run_cli(["--config", config, "--check"], timeout=gw.bound(10))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    reason = 'Action reserved_%s: input "%s" is a reserved param name' % (name, name)
    lines = [line for line in out.splitlines() if reason in line]
    assert lines, out
    assert str(path) in lines[0], "the line must name the file: %r" % lines[0]


def test_reserved_input_refused_on_reload(make_gateway, tmp_path):
    actions = tmp_path / "reload_actions"
    actions.mkdir()
    good = ('return { name = "%s", description = "d", '
            'run = function(api, data, next) data.response.v = "%s"; next() end }\n')
    (actions / "kept.lua").write_text(good % ("kept", "one"))
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, str(actions)]}})
    for name in RESERVED:
        # A good change and a bad file in one reload: the reload is refused as a whole.
        (actions / "kept.lua").write_text(good % ("kept", "two"))
        bad = actions / ("reserved_%s.lua" % name)
        bad.write_text(reserved_action(name))
        offset = g.log_size()
        g.signal(signal.SIGHUP)
        m = g.wait_for_log(r"reload failed, keeping the loaded actions: .*reserved_%s\.lua.*"
                           r'input "%s" is a reserved param name' % (name, name),
                           timeout=gw.bound(5), since=offset)
        assert m, "the refused reload must say why\n" + g.log_since(offset)
        status, body = g.get("/api/kept")
        assert status == 200 and body["v"] == "one", body
        assert g.get("/api/reserved_%s" % name)[0] == 404
        bad.unlink()
        (actions / "kept.lua").write_text(good % ("kept", "one"))
    # Without the bad file the same reload goes through.
    (actions / "kept.lua").write_text(good % ("kept", "three"))
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r"reload done", timeout=gw.bound(5), since=offset), g.log_since(offset)
    status, body = g.get("/api/kept")
    assert status == 200 and body["v"] == "three", body


RESERVED_PARAMS = {"callback": "cb", "file": "f.txt", "apiVersion": 1, "zzz": "scrubbed",
                   "a": "declared"}


def assert_reserved_kept(params):
    assert params["action"] == "echo_params", params
    assert params["apiVersion"] == 1, params
    assert params["callback"] == "cb" and params["file"] == "f.txt", params
    assert params["a"] == "declared", params
    assert "zzz" not in params, params


def test_scrubbing_keeps_reserved_params_web(g):
    # In a body, `callback` is a param like the others (JSONP reads it from the query only).
    status, body = g.json("POST", "/api/echo_params", RESERVED_PARAMS)
    assert status == 200, body
    assert_reserved_kept(body["params"])


@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_scrubbing_keeps_reserved_params_persistent(g, transport):
    # As on the web, params.action names the action the message runs, whatever `action`
    # the data carried.
    plain = dict(RESERVED_PARAMS)
    other = dict(RESERVED_PARAMS, action="somethingElse")
    envs = gw.exchange(g, transport, [{"action": "echo_params", "data": plain},
                                      {"action": "echo_params", "data": other}])
    for env in envs:
        assert env["status"] == 200, env
        assert_reserved_kept(env["data"]["params"])


def test_tcp_verb_action_sets_params_action(g):
    with g.line_client() as c:
        assert c.call("paramAdd a=declared")["status"] == "OK"
        env = c.call("echo_params")
    assert env["status"] == 200, env
    assert env["data"]["params"]["action"] == "echo_params", env
