"""Message routes and handlers (SPEC §6 "Message routes and handlers", issue 4 contract) over
WebSocket and TCP, and handler routes over HTTP under /api/ with the method mapping.

Fixtures: msg_handlers/actions/ (h1_kw.lua .. h5_shadow.lua, loaded in name order), loaded only
by the gateway of this module. Generics are not used (they need Redis)."""

import asyncio
import json
import os
import signal
import time

import pytest

import gateway as gw

HANDLERS = os.path.join(gw.HERE, "msg_handlers", "actions")
ENVELOPE_KEYS = ["errors", "data", "action", "route", "status"]
TRANSPORTS = ["ws", "tcp"]

# Every test here runs again on the sanitizer build (make test-asan).
pytestmark = pytest.mark.asan


@pytest.fixture(scope="module")
def hgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module: the handlers, WebSocket and the TCP socket server."""
    workdir = tmp_path_factory.mktemp("hgw")
    config = gw.default_config(str(workdir), redis_url,
                               actions=[gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, HANDLERS])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["general"]["simultaneousActions"] = 3
    with gw.serving(workdir, config) as g:
        yield g


@pytest.fixture
def g(hgw):
    assert hgw.alive(), "the module's handler gateway died\n" + hgw.describe()
    return hgw


def one(g, transport, msg, timeout=5.0):
    return gw.exchange(g, transport, [msg], timeout)[0]


def assert_ok(env, action, route, status=200):
    assert env["status"] == status, env
    assert env["errors"] == [], env
    assert env["action"] == action, env
    assert env["route"] == route, env


def assert_error(env, status, errors):
    assert env["status"] == status, env
    assert env["errors"] == errors, env
    assert env["data"] is None, env


# -- matching and params -------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_named_group_becomes_param(g, transport):
    env = one(g, transport, {"action": "show", "route": "kw/2/", "data": {}})
    assert_ok(env, "show", "kw/2/")
    assert env["data"]["child_id"] == "2", env
    assert env["data"]["childType"] == "string", env


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_route_match_is_a_search(g, transport):
    env = one(g, transport, {"action": "show", "route": "parent/kw/abc-1/"})
    assert_ok(env, "show", "parent/kw/abc-1/")
    assert env["data"]["child_id"] == "abc-1", env


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_query_string_in_route_becomes_params(g, transport):
    route = "kw/7/?sort=desc&page=3"
    env = one(g, transport, {"action": "detail", "route": route, "data": {"extra": "x"}})
    assert_ok(env, "detail", route)
    p = env["data"]["params"]
    assert p["sort"] == "desc" and p["page"] == "3", "query params are strings: %r" % p
    assert p["extra"] == "x", p
    assert p["child_id"] == "7", "the query string is not part of the matched route: %r" % p


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_named_group_beats_data_param(g, transport):
    env = one(g, transport, {"action": "detail", "route": "kw/7/", "data": {"child_id": "9"}})
    assert_ok(env, "detail", "kw/7/")
    assert env["data"]["params"]["child_id"] == "7", env


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_first_matching_handler_in_load_order_wins(g, transport):
    first, second, notallowed = gw.exchange(g, transport, [
        {"action": "who", "route": "dup/x"},
        {"action": "who", "route": "only-second/"},
        {"action": "secondOnly", "route": "dup/x"},
    ])
    assert_ok(first, "who", "dup/x")
    assert first["data"] == {"handler": "first"}, first
    assert_ok(second, "who", "only-second/")
    assert second["data"] == {"handler": "second"}, second
    # h3 matched "dup/x" first and has no secondOnly: 405, no fall-through to h4.
    assert_error(notallowed, 405, ['Action "secondOnly" not allowed.'])


# -- 404 / 405 --------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_route_404(g, transport):
    a, b = gw.exchange(g, transport, [
        {"action": "show", "route": "nowhere/"},
        {"action": "show", "route": "nowhere/?x=1", "request_id": 7},
    ])
    assert_error(a, 404, ['route "nowhere/" not found'])
    assert a["action"] == "show" and a["route"] == "nowhere/", a
    assert_error(b, 404, ['route "nowhere/?x=1" not found'])
    assert b["route"] == "nowhere/?x=1" and b["request_id"] == 7, b


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_action_not_in_handler_405(g, transport):
    a, b = gw.exchange(g, transport, [
        {"action": "nope", "route": "kw/2/"},
        {"action": "list", "route": "kw/2/"},  # a generic the handler does not enable
    ])
    assert_error(a, 405, ['Action "nope" not allowed.'])
    assert a["action"] == "nope" and a["route"] == "kw/2/", a
    assert_error(b, 405, ['Action "list" not allowed.'])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_route_given_plain_action_names_do_not_apply(g, transport):
    # With a route, the action is looked up in the handler only, even if a plain action of
    # that name exists.
    a, b = gw.exchange(g, transport, [
        {"action": "randomNumber", "route": "kw/2/"},
        {"action": "randomNumber", "route": "nowhere/"},
    ])
    assert_error(a, 405, ['Action "randomNumber" not allowed.'])
    assert_error(b, 404, ['route "nowhere/" not found'])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_without_route_is_an_action_name(g, transport):
    a, b = gw.exchange(g, transport, [
        {"action": "randomNumber"},
        {"action": "show", "route": ""},  # `show` exists only inside a handler
    ])
    assert a["status"] == 200 and 0 <= a["data"]["randomNumber"] < 1, a
    assert_error(b, 404, ["unknown action or invalid apiVersion"])


# -- function-style actions -------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_function_action_body_and_status(g, transport):
    tea, arr, txt = gw.exchange(g, transport, [
        {"action": "teapot", "route": "kw/2/", "request_id": "r1"},
        {"action": "array", "route": "kw/2/"},
        {"action": "text", "route": "kw/2/"},
    ])
    assert_ok(tea, "teapot", "kw/2/", status=418)
    assert tea["data"] == {"short": True, "child_id": "2"}, tea
    assert tea["request_id"] == "r1", tea
    assert_ok(arr, "array", "kw/2/")
    assert arr["data"] == [1, 2, 3], arr
    assert_ok(txt, "text", "kw/2/")
    assert txt["data"] == "just a string", txt


def test_envelope_key_order(g):
    with g.line_client() as c:
        c.send_line(json.dumps({"action": "show", "route": "kw/2/"}))
        line = c.read_line()
    keys = [k for k, _ in json.loads(line, object_pairs_hook=list)]
    assert keys == ENVELOPE_KEYS, line  # no request_id: none was sent
    with g.line_client() as c:
        c.send_line(json.dumps({"action": "show", "route": "kw/2/", "request_id": "x"}))
        line = c.read_line()
    keys = [k for k, _ in json.loads(line, object_pairs_hook=list)]
    assert keys == ENVELOPE_KEYS + ["request_id"], line


# -- full action definitions: the whole pipeline ---------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_action_inputs_and_middleware(g, transport):
    env = one(g, transport, {"action": "echo", "route": "items/5/",
                             "data": {"title": "T", "n": "3", "undeclared": "u"}})
    assert_ok(env, "echo", "items/5/")
    d = env["data"]
    assert d["title"] == "T" and d["n"] == 3, "the formatter ran: %r" % d
    assert d["pk"] == "5", "named groups are never scrubbed: %r" % d
    assert d["hasUndeclared"] is False, "undeclared params are scrubbed: %r" % d
    assert d.get("order") == ["perActionA"], "the action's middleware ran: %r" % d
    assert d.get("post") == "added by perActionA", "its postProcessor ran: %r" % d


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_action_missing_required_input_422(g, transport):
    a, b = gw.exchange(g, transport, [
        {"action": "echo", "route": "items/5/", "data": {}},
        {"action": "echo", "route": "items/5/", "data": {"title": "T", "n": "-1"}},
    ])
    assert_error(a, 422, [{"title": ["This field is required."]}])
    assert a["action"] == "echo" and a["route"] == "items/5/", a
    assert_error(b, 422, [{"n": ["must be >= 0"]}])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_action_global_middleware(g, transport):
    env = one(g, transport, {"action": "echo", "route": "items/5/",
                             "data": {"title": "T", "deny": "1"}})
    assert_error(env, 400, ["denied by middleware"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_full_action_error_with_status(g, transport):
    env = one(g, transport, {"action": "fail", "route": "items/5/"})
    # next({ message = "custom failure", status = 409 }): its status, and its message as a
    # plain message (SPEC §5: plain messages are strings).
    assert_error(env, 409, ["custom failure"])


def test_full_action_timeout(g):
    # general.actionTimeout is 1000 ms in the test config.
    t0 = time.monotonic()
    env = one(g, "ws", {"action": "never", "route": "items/5/"}, timeout=gw.bound(6))
    took = time.monotonic() - t0
    assert_error(env, 504, ["action timed out"])
    assert 0.99 <= took < 1 + gw.bound(2), took  # not before the timeout, and not much after


def test_full_action_counts_toward_simultaneous_actions(g):
    # simultaneousActions is 3 for this module: the 4th concurrent message gets 429 (the
    # first three sleep 0.6 s of the 1 s action timeout, so they are still pending when it
    # comes, on a slow machine too).
    async def go():
        async with g.ws_connect() as ws:
            for i in range(4):
                await ws.send(json.dumps({"action": "slow", "route": "items/5/",
                                          "request_id": i}))
            out = {}
            while len(out) < 4:
                env = json.loads(await asyncio.wait_for(ws.recv(), gw.bound(5)))
                out[env["request_id"]] = env
            return out

    out = asyncio.run(asyncio.wait_for(go(), gw.bound(15)))
    for i in range(3):
        assert out[i]["status"] == 200 and out[i]["data"] == {"slept": True}, out
    assert out[3]["status"] == 429, out
    assert out[3]["errors"] == ["you have too many pending requests"], out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_function_action_lua_error_500(g, transport):
    boom, after = gw.exchange(g, transport, [
        {"action": "boom", "route": "kw/2/"},
        {"action": "show", "route": "kw/2/"},
    ])
    assert_error(boom, 500, ["The server experienced an internal error"])
    assert "secret handler boom" not in json.dumps(boom)
    assert after["status"] == 200 and after["data"]["child_id"] == "2", after
    assert g.alive()


def test_handler_answers_on_same_connection_as_actions(g):
    # Handler messages and plain actions mix freely on one connection.
    envs = gw.exchange(g, "ws", [
        {"action": "show", "route": "kw/1/"},
        {"action": "echo_params", "data": {"a": "x"}},
        {"action": "show", "route": "kw/2/"},
    ])
    assert envs[0]["data"]["child_id"] == "1", envs
    assert envs[1]["status"] == 200 and envs[1]["data"]["params"]["a"] == "x", envs
    assert envs[2]["data"]["child_id"] == "2", envs


# -- over HTTP under /api/ ----------------------------------------------------------------------

def _http(g, method, path, body=None):
    r = g.request(method, path, body)
    assert r.headers.get("Content-Type", "").startswith("application/json"), dict(r.headers)
    return r.status, r.json()


def test_http_get_with_pk_is_retrieve(g):
    status, body = _http(g, "GET", "/api/items/5/")
    assert status == 200, body
    assert body == {"op": "retrieve", "pk": "5"}, "the body is the result itself: %r" % body


def test_http_query_string_is_not_part_of_the_route(g):
    status, body = _http(g, "GET", "/api/items/5/?title=x&other=1")
    assert status == 200, body
    # The route still matches; the query params reach the action but are scrubbed (a
    # function action declares no inputs), the named group stays.
    assert body == {"op": "retrieve", "pk": "5"}, body


def test_http_head_is_get_without_body(g):
    r = g.request("HEAD", "/api/items/5/")
    assert r.status == 200, r
    assert r.body == b""


def test_http_get_without_pk_is_list(g):
    status, body = _http(g, "GET", "/api/items/")
    assert status == 200, body
    assert body == [{"op": "list", "n": 1}, {"op": "list", "n": 2}], body


def test_http_post_is_create(g):
    status, body = _http(g, "POST", "/api/items/", {"title": "T"})
    assert status == 201, body
    assert body == {"op": "create"}, body  # the result only: no metadata; title scrubbed


def test_http_put_is_update(g):
    status, body = _http(g, "PUT", "/api/items/5/", {"title": "T"})
    assert status == 200, body
    assert body == {"op": "update", "pk": "5", "title": "T"}, body


def test_http_put_missing_input_is_error_body(g):
    status, body = _http(g, "PUT", "/api/items/5/", {})
    assert status == 422, body
    message = "title is a required parameter for this action"
    assert body == {"error": message, "errors": [message]}, body


def test_http_patch_is_partial_update(g):
    status, body = _http(g, "PATCH", "/api/items/5/", {"title": "T"})
    assert status == 200, body
    assert body == {"op": "partial_update", "pk": "5"}, body  # title scrubbed


def test_http_delete_is_remove(g):
    status, body = _http(g, "DELETE", "/api/items/5/")
    assert status == 200, body
    assert body == {"op": "remove", "pk": "5"}, body


def test_http_named_group_param(g):
    # GET on kw/2/: no `pk` group -> "list", which the kw handler does not have.
    status, body = _http(g, "GET", "/api/kw/2/")
    assert status == 405, body
    assert body == {"error": 'Action "list" not allowed.',
                    "errors": ['Action "list" not allowed.']}, body


def test_http_no_handler_404(g):
    status, body = _http(g, "GET", "/api/no-handler-here/x/")
    assert status == 404, body
    assert body["error"] == "unknown action or invalid apiVersion", body
    assert body["errors"] == ["unknown action or invalid apiVersion"], body


def test_http_action_name_beats_handler(g):
    status, body = _http(g, "GET", "/api/echo_params?a=1")
    assert status == 200, body
    assert body["params"] == {"a": "1", "action": "echo_params", "apiVersion": 1}, \
        "the echo_params action answers: %r" % body
    # The same handler route is reachable by a message.
    env = one(g, "ws", {"action": "list", "route": "echo_params"})
    assert_ok(env, "list", "echo_params")
    assert env["data"] == {"handler": "shadow"}, env


# -- reload ---------------------------------------------------------------------------------------

HANDLER_FILE = """return {
  routes = { [[^%(route)s/$]] },
  actions = { where = function(api, data) return { route = "%(route)s" } end },
}
"""


def test_handlers_reloaded_on_sighup(make_gateway, tmp_path):
    actions = tmp_path / "hup_handlers"
    actions.mkdir()
    (actions / "h.lua").write_text(HANDLER_FILE % {"route": "before"})
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, str(actions)]}})
    (env,) = gw.exchange(g, "ws", [{"action": "where", "route": "before/"}])
    assert env["status"] == 200 and env["data"] == {"route": "before"}, env

    (actions / "h.lua").write_text(HANDLER_FILE % {"route": "after"})
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r" reload done", timeout=gw.bound(5), since=offset), g.describe()
    (env,) = gw.exchange(g, "ws", [{"action": "where", "route": "after/"}])
    assert env["status"] == 200 and env["data"] == {"route": "after"}, env
    (old,) = gw.exchange(g, "ws", [{"action": "where", "route": "before/"}])
    assert_error(old, 404, ['route "before/" not found'])


# -- load errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    'return { routes = { [[^items/(?P<pk>$]] }, actions = { x = function() return 1 end } }\n',
    'return { routes = "^items/$", actions = {} }\n',
    'return { routes = { [[^items/$]] }, actions = { x = 42 } }\n',
    'return { routes = { [[^items/$]] }, actions = { x = { middleware = { "noSuchMw" },\n'
    '  run = function(api, data, next) next() end } } }\n',
    'return { routes = { [[^items/$]] }, actions = { x = { permissions = { "noSuchPerm" },\n'
    '  run = function(api, data, next) next() end } } }\n',
], ids=["bad-regex", "routes-not-a-list", "action-not-table-or-function", "unknown-middleware",
        "unknown-permission"])
def test_broken_handler_fails_startup(gateway_bin, redis_url, tmp_path, text):
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "bad_handler.lua").write_text(text)
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS, str(actions)])
    path = gw.write_config(str(tmp_path / "gateway.lua"), config)
    res = gw.run_cli(["--config", path, "--port", "0"], timeout=gw.bound(10))
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert "bad_handler.lua" in out, "the error must name the handler file:\n" + out
    assert "listening" not in res.stdout
