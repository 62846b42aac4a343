"""Permissions (SPEC §7, issue 4 contract) over HTTP, WebSocket and TCP: api.permissions.add
from an action file, the built-ins isAuthenticated (401) and allowAny, custom permissions (403,
with or without a message), permissions on actions and on handlers, their place in the
pipeline (after middleware preProcessors, before scrubbing and inputs), connection.user set by
an action for the rest of a persistent connection, and load errors.

Fixtures: perms/actions/ (a_perms.lua registers the permissions and defines setUser/clearUser,
b_guarded.lua the guarded actions, c_secure_handler.lua a handler) and perms/middleware/
(a global middleware that marks the connection and reads X-Api-Key on HTTP)."""

import os
import re
import signal

import pytest

import gateway as gw
from gateway import error_text

PERMS = os.path.join(gw.HERE, "perms")
PERMS_ACTIONS = os.path.join(PERMS, "actions")
PERMS_MIDDLEWARE = os.path.join(PERMS, "middleware")
TRANSPORTS = ["ws", "tcp"]

NOT_AUTHENTICATED = "Authentication credentials were not provided."
FORBIDDEN = "You do not have permission to perform this action."
INTERNAL = "The server experienced an internal error"

# Every test here runs again on the sanitizer build (make test-asan).
pytestmark = pytest.mark.asan


@pytest.fixture(scope="module")
def pgw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pgw")
    config = gw.default_config(str(workdir), redis_url,
                               actions=[gw.EXAMPLE_ACTIONS, PERMS_ACTIONS],
                               middleware=[gw.TEST_MIDDLEWARE, PERMS_MIDDLEWARE])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    with gw.serving(workdir, config) as g:
        yield g


@pytest.fixture
def g(pgw):
    assert pgw.alive(), "the module's permissions gateway died\n" + pgw.describe()
    return pgw


def http(g, path, user=None, method="GET", body=None):
    headers = {"X-Api-Key": user} if user else None
    return g.json(method, path, body, headers)


def assert_http_error(status, body, want_status, message):
    assert status == want_status, (status, body)
    assert error_text(body) == message, body
    assert body["errors"] == [message], body


def assert_env_error(env, status, message):
    assert env["status"] == status, env
    assert env["errors"] == [message], env
    assert env["data"] is None, env


def assert_env_ok(env):
    assert env["status"] == 200, env
    assert env["errors"] == [], env
    return env["data"]


# -- HTTP ---------------------------------------------------------------------------------------

def test_http_is_authenticated_401(g):
    status, body = http(g, "/api/authOnly?name=x")
    assert_http_error(status, body, 401, NOT_AUTHENTICATED)


def test_http_permissions_before_inputs(g):
    # authOnly requires `name`; an unauthenticated request without it is 401, not 422.
    status, body = http(g, "/api/authOnly")
    assert_http_error(status, body, 401, NOT_AUTHENTICATED)
    # adminOnly requires `name`; a non-admin without it is 403, not 422.
    status, body = http(g, "/api/adminOnly", user="bob")
    assert_http_error(status, body, 403, FORBIDDEN)
    # Allowed: now the inputs are checked.
    status, body = http(g, "/api/adminOnly", user="admin")
    assert_http_error(status, body, 422, "name is a required parameter for this action")


def test_http_user_set_by_middleware_passes(g):
    # A global middleware sets connection.user from X-Api-Key: permissions run after it.
    status, body = http(g, "/api/authOnly?name=x", user="bob")
    assert status == 200, body
    assert body["ok"] is True and body["user"] == "bob" and body["name"] == "x", body


def test_http_custom_permission_403(g):
    assert_http_error(*http(g, "/api/adminOnly?name=x", user="bob"), 403, FORBIDDEN)
    status, body = http(g, "/api/adminOnly?name=x", user="admin")
    assert status == 200 and body["ok"] is True, body


def test_http_custom_permission_message(g):
    assert_http_error(*http(g, "/api/customMessage", user="admin"), 403, "custom denial message")


def test_http_permission_returning_nil_denies(g):
    assert_http_error(*http(g, "/api/nilDenies", user="admin"), 403, FORBIDDEN)


def test_http_allow_any(g):
    status, body = http(g, "/api/openToAll")
    assert status == 200 and body["ok"] is True, body


def test_http_all_permissions_must_pass(g):
    assert_http_error(*http(g, "/api/authAndAdmin"), 401, NOT_AUTHENTICATED)
    assert_http_error(*http(g, "/api/authAndAdmin", user="bob"), 403, FORBIDDEN)
    status, body = http(g, "/api/authAndAdmin", user="admin")
    assert status == 200 and body["ok"] is True, body


def test_http_permission_sees_params_before_scrubbing(g):
    # `allow` is not a declared input of paramGate.
    status, body = http(g, "/api/paramGate?allow=yes")
    assert status == 200 and body["ok"] is True, body
    assert_http_error(*http(g, "/api/paramGate?allow=no"), 403, FORBIDDEN)


def test_http_permission_added_from_middleware_file(g):
    status, body = http(g, "/api/fromMiddleware?mw=1")
    assert status == 200 and body["ok"] is True, body
    assert_http_error(*http(g, "/api/fromMiddleware?mw=0"), 403, FORBIDDEN)


def test_http_permission_runs_after_middleware(g):
    # afterMiddleware allows only a connection the global preProcessor has marked.
    status, body = http(g, "/api/afterMw")
    assert status == 200 and body["ok"] is True, body
    # A failing global preProcessor stops the request before the permissions (else: 401).
    assert_http_error(*http(g, "/api/authOnly?name=x&deny=1"), 400, "denied by middleware")
    # So does a failing preProcessor of the action's own middleware.
    assert_http_error(*http(g, "/api/mwThenAuth"), 400, "middleware said no")


def test_http_raising_permission_fails_the_request(g):
    offset = g.log_size()
    status, body = http(g, "/api/permRaises")
    assert_http_error(status, body, 500, INTERNAL)
    assert "permission exploded" not in str(body), "the Lua error stays in the log: %r" % body
    assert g.wait_for_log("permission exploded", since=offset), g.log_since(offset)
    g.assert_serving()


def test_http_handler_permissions(g):
    assert_http_error(*http(g, "/api/secure/5/"), 401, NOT_AUTHENTICATED)
    status, body = http(g, "/api/secure/5/", user="bob")
    assert status == 200, body
    assert body == {"retrieved": "5"}, body


# -- WebSocket and TCP ------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_is_authenticated_then_login_on_same_connection(g, transport):
    denied, missing, login, allowed, again = gw.exchange(g, transport, [
        {"action": "authOnly", "data": {"name": "x"}},
        {"action": "authOnly"},  # permissions before inputs: 401, not 422
        {"action": "setUser", "data": {"user": "alice"}},
        {"action": "authOnly", "data": {"name": "x"}},
        {"action": "authOnly"},  # authenticated now: the inputs are checked
    ])
    assert_env_error(denied, 401, NOT_AUTHENTICATED)
    assert denied["action"] == "authOnly", denied
    assert_env_error(missing, 401, NOT_AUTHENTICATED)
    assert assert_env_ok(login)["user"] == "alice"
    d = assert_env_ok(allowed)
    assert d["ok"] is True and d["user"] == "alice" and d["name"] == "x", d
    assert again["status"] == 422, again
    assert again["errors"] == [{"name": ["This field is required."]}], again
    # The user belongs to that connection only.
    (fresh,) = gw.exchange(g, transport, [{"action": "authOnly", "data": {"name": "x"}}])
    assert_env_error(fresh, 401, NOT_AUTHENTICATED)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logout_clears_user(g, transport):
    envs = gw.exchange(g, transport, [
        {"action": "setUser", "data": {"user": "alice"}},
        {"action": "authOnly", "data": {"name": "x"}},
        {"action": "clearUser"},
        {"action": "authOnly", "data": {"name": "x"}},
    ])
    assert assert_env_ok(envs[0]) == {"user": "alice"}
    assert assert_env_ok(envs[1]) == {"ok": True, "user": "alice", "name": "x"}
    assert assert_env_ok(envs[2]) == {}
    assert_env_error(envs[3], 401, NOT_AUTHENTICATED)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_custom_permissions_403(g, transport):
    envs = gw.exchange(g, transport, [
        {"action": "setUser", "data": {"user": "bob"}},
        {"action": "adminOnly"},  # 403 before inputs
        {"action": "customMessage"},
        {"action": "nilDenies"},
        {"action": "authAndAdmin"},
        {"action": "setUser", "data": {"user": "admin"}},
        {"action": "adminOnly", "data": {"name": "n"}},
        {"action": "authAndAdmin"},
        {"action": "openToAll"},
    ])
    assert assert_env_ok(envs[0]) == {"user": "bob"}
    assert_env_error(envs[1], 403, FORBIDDEN)
    assert_env_error(envs[2], 403, "custom denial message")
    assert_env_error(envs[3], 403, FORBIDDEN)
    assert_env_error(envs[4], 403, FORBIDDEN)
    assert assert_env_ok(envs[5]) == {"user": "admin"}
    assert assert_env_ok(envs[6]) == {"ok": True, "user": "admin", "name": "n"}
    assert assert_env_ok(envs[7]) == {"ok": True, "user": "admin"}
    assert assert_env_ok(envs[8]) == {"ok": True, "user": "admin"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handler_permissions_apply_to_all_actions(g, transport):
    envs = gw.exchange(g, transport, [
        {"action": "peek", "route": "secure/"},
        {"action": "full", "route": "secure/"},            # 401 before inputs
        {"action": "adminPeek", "route": "secure/"},
        {"action": "setUser", "data": {"user": "bob"}},
        {"action": "peek", "route": "secure/"},
        {"action": "full", "route": "secure/"},            # allowed: inputs checked, 422
        {"action": "full", "route": "secure/", "data": {"title": "t"}},
        {"action": "adminPeek", "route": "secure/"},       # handler's pass, action's fails
        {"action": "setUser", "data": {"user": "admin"}},
        {"action": "adminPeek", "route": "secure/"},
    ])
    for i in (0, 1, 2):
        assert_env_error(envs[i], 401, NOT_AUTHENTICATED)
        assert envs[i]["route"] == "secure/", envs[i]
    assert assert_env_ok(envs[3]) == {"user": "bob"}
    assert assert_env_ok(envs[4]) == {"peek": True, "user": "bob"}
    assert envs[5]["status"] == 422 and envs[5]["data"] is None, envs[5]
    assert envs[5]["errors"] == [{"title": ["This field is required."]}], envs[5]
    assert assert_env_ok(envs[6]) == {"title": "t"}
    assert_env_error(envs[7], 403, FORBIDDEN)
    assert assert_env_ok(envs[8]) == {"user": "admin"}
    assert assert_env_ok(envs[9]) == {"admin": True}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_permission_sees_message_params(g, transport):
    ok, denied = gw.exchange(g, transport, [
        {"action": "paramGate", "data": {"allow": "yes"}},
        {"action": "paramGate", "data": {"allow": "no"}},
    ])
    assert assert_env_ok(ok) == {"ok": True}
    assert_env_error(denied, 403, FORBIDDEN)


# -- load errors --------------------------------------------------------------------------------

UNKNOWN_ON_ACTION = """return {
  name = "usesUnknownPermission",
  description = "names a permission nobody added",
  permissions = { "noSuchPermission" },
  run = function(api, data, next) next() end,
}
"""

UNKNOWN_ON_HANDLER = """return {
  routes = { [[^things/$]] },
  permissions = { "noSuchPermission" },
  actions = { list = function(api, data) return {} end },
}
"""


@pytest.mark.parametrize("text,filename,mode", [
    (UNKNOWN_ON_ACTION, "bad_perm_action.lua", "start"),
    (UNKNOWN_ON_HANDLER, "bad_perm_handler.lua", "start"),
    (UNKNOWN_ON_ACTION, "bad_perm_action.lua", "check"),
])
def test_unknown_permission_fails_startup(gateway_bin, redis_url, tmp_path, text, filename, mode):
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / filename).write_text(text)
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS, str(actions)])
    path = gw.write_config(str(tmp_path / "gateway.lua"), config)
    res = gw.run_cli(["--config", path, "--port", "0"] + (["--check"] if mode == "check" else []),
                     timeout=gw.bound(10))
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert filename in out, "the error must name the file:\n" + out
    assert "noSuchPermission" in out, out
    assert "listening" not in res.stdout


# -- reload (SIGHUP) ------------------------------------------------------------------------------

GATE_FILE = """api.permissions.add("gate", function(data) return %(allow)s end)
return {
  name = "gated",
  description = "uses the gate permission",
  permissions = { "gate" },
  run = function(api, data, next) data.response.ok = true next() end,
}
"""

BROKEN_ACTION = 'return { name = "brokenOnReload", run = function(api, data, next) next() end }\n'


def reload(g, outcome):
    """SIGHUP, then wait (bounded) for the log line of its outcome ("done" or "failed"):
    returns the lines logged meanwhile."""
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r" reload (done|failed)", timeout=gw.bound(5), since=offset), \
        "no reload outcome logged\n" + g.log_since(offset)
    text = g.log_since(offset)
    assert re.search(r" reload %s" % outcome, text), text
    return text


@pytest.fixture
def gate_gateway(make_gateway, tmp_path):
    actions = tmp_path / "gate_actions"
    actions.mkdir()
    (actions / "gate.lua").write_text(GATE_FILE % {"allow": "true"})
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, str(actions)]}})
    status, body = g.get("/api/gated")
    assert status == 200 and body["ok"] is True, body
    return g, actions


def test_reload_replaces_permissions(gate_gateway):
    g, actions = gate_gateway
    (actions / "gate.lua").write_text(GATE_FILE % {"allow": "false"})
    reload(g, "done")
    assert_http_error(*g.get("/api/gated"), 403, FORBIDDEN)


def test_failed_reload_keeps_old_permissions(gate_gateway):
    # The reload re-registers `gate` as denying, but another file is broken: the whole reload
    # is refused, so `gate` must still be the old, allowing, function (SPEC §1).
    g, actions = gate_gateway
    (actions / "gate.lua").write_text(GATE_FILE % {"allow": "false"})
    (actions / "zz_broken.lua").write_text(BROKEN_ACTION)
    text = reload(g, "failed")
    assert re.search(r" reload failed, keeping the loaded actions: \S*/zz_broken\.lua:1: "
                     r"Action brokenOnReload is missing 'action\.description'", text), text
    status, body = g.get("/api/gated")
    assert status == 200 and body["ok"] is True, \
        "a refused reload changed a live permission: %s %r" % (status, body)


def test_reload_without_a_permission_it_still_uses_fails(gate_gateway):
    # After the reload no file adds `gate` any more, but `gated` still names it: that is an
    # unknown permission, so the reload is refused and the old set stays.
    g, actions = gate_gateway
    text = GATE_FILE % {"allow": "true"}
    (actions / "gate.lua").write_text(text.split("\n", 1)[1])  # without api.permissions.add
    text = reload(g, "failed")
    assert re.search(r" reload failed, keeping the loaded actions: \S*/gate\.lua: "
                     r"Action gated: unknown permission \"gate\"", text), \
        "the reload must fail naming gate.lua (unknown permission \"gate\")\n" + text
    status, body = g.get("/api/gated")
    assert status == 200 and body["ok"] is True, body
