"""Sessions (SPEC §9, issue 5): api.session.create/load/destroy, `Authorization: Bearer` on
HTTP, the built-in `authenticate` message on WebSocket and TCP, the example actions login,
logout and profile (actions/), expiry, and Redis down.

Fixtures: session_actions/base (api.session called directly, with short ttls) and
session_actions/override (a project's own `authenticate` action)."""

import os
import shutil
import tempfile
import time

import pytest

import gateway as gw
from gateway import error_text, errors_of

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "session_actions", "base")
OVERRIDE = os.path.join(HERE, "session_actions", "override")
TRANSPORTS = ["ws", "tcp"]

NOT_AUTHENTICATED = "Authentication credentials were not provided."
INVALID = "invalid or expired token"

# Every test here runs again on the sanitizer build (make test-asan): one of them once
# caught a double free.
pytestmark = pytest.mark.asan


def session_config(workdir, redis_url, extra_actions=()):
    os.makedirs(str(workdir), exist_ok=True)
    config = gw.default_config(str(workdir), redis_url,
                               actions=[gw.EXAMPLE_ACTIONS, BASE] + list(extra_actions))
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    return config


@pytest.fixture(scope="module")
def sgw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sgw")
    with gw.serving(workdir, session_config(workdir, redis_url)) as g:
        yield g


@pytest.fixture
def g(sgw):
    assert sgw.alive(), "the module's sessions gateway died\n" + sgw.describe()
    return sgw


def login(g, user="alice", password="secret"):
    status, body = g.json("POST", "/api/login", {"user": user, "password": password})
    assert status == 200, body
    assert body["user"] == {"name": user}, body
    token = body["token"]
    assert isinstance(token, str) and len(token) >= 32, body
    return token


def bearer(token):
    return {"Authorization": "Bearer " + token}


def profile(g, token=None, headers=None):
    return g.json("GET", "/api/profile", headers=headers or (bearer(token) if token else None))


def assert_env_ok(env):
    assert env["status"] == 200 and env["errors"] == [], env
    return env["data"]


def assert_env_error(env, status, message):
    assert env["status"] == status, env
    assert env["data"] is None, env
    assert errors_of(env) == [message], env


# -- HTTP ---------------------------------------------------------------------------------------

def test_http_login_then_bearer(g):
    token = login(g)
    status, body = profile(g, token)
    assert status == 200, body
    assert body["user"] == {"name": "alice"}, body
    # Several requests, each a new connection, all restored from the same token.
    for _ in range(3):
        assert profile(g, token)[0] == 200


def test_http_without_or_with_bad_token_is_401(g):
    status, body = profile(g)
    assert status == 401 and error_text(body) == NOT_AUTHENTICATED, body
    for value in ("Bearer " + "0" * 64, "Bearer not-a-token", "Bearer ../../x", "Bearer",
                  "Basic dXNlcjpwYXNz", "Bearer a b"):
        status, body = profile(g, headers={"Authorization": value})
        assert status == 401 and error_text(body) == NOT_AUTHENTICATED, (value, body)


def test_http_bearer_scheme_is_case_insensitive(g):
    token = login(g, "carol")
    status, body = profile(g, headers={"authorization": "bearer  " + token})
    assert status == 200 and body["user"] == {"name": "carol"}, body


def test_http_login_checks_the_example_password(g):
    status, body = g.json("POST", "/api/login", {"user": "alice", "password": "nope"})
    assert status == 401 and error_text(body) == "invalid user or password", body
    status, body = g.json("POST", "/api/login", {"user": "alice"})
    assert status == 422, body
    assert error_text(body) == "password is a required parameter for this action", body
    assert errors_of(body) == ["password is a required parameter for this action"], body


def test_session_is_stored_under_the_prefix_with_a_ttl(g):
    token = login(g, "dave")
    status, body = g.json("POST", "/api/sessionInspect", {"token": token})
    assert status == 200, body
    assert body["user"] == {"name": "dave"}, body
    assert 24 * 3600 * 1000 - 60000 < body["pttl"] <= 24 * 3600 * 1000, body
    assert body["stored"] == '{"name":"dave"}', body
    status, body = g.json("POST", "/api/sessionInspect", {"token": "f" * 64})
    assert status == 200 and body["user"] is None and body["pttl"] == -2, body


def test_create_sets_connection_user_and_session(g):
    status, body = g.json("POST", "/api/sessionCreate", {"user": "erin"})
    assert status == 200, body
    assert body["connectionUser"] == {"name": "erin"} and body["connectionSession"] is True, body
    status, body = g.json("GET", "/api/sessionWhoami", headers=bearer(body["token"]))
    assert status == 200 and (body["user"], body["hasSession"]) == ({"name": "erin"}, True), body
    status, body = g.json("GET", "/api/sessionWhoami")
    assert status == 200 and (body["user"], body["hasSession"]) == (None, False), body


def test_api_session_misuse(g):
    status, body = g.json("GET", "/api/sessionMisuse")
    assert status == 200, body
    assert "user must not be nil" in body["nilUser"], body
    assert "ttlMs must be a positive integer" in body["badTtl"], body
    assert body["notJson"] == "error" and body["loadJunk"] is True, body


def test_http_logout_destroys_the_session(g):
    token = login(g, "frank")
    assert profile(g, token)[0] == 200
    status, body = g.json("POST", "/api/logout", headers=bearer(token))
    assert status == 200 and body["loggedOut"] is True, body
    status, body = profile(g, token)
    assert status == 401 and error_text(body) == NOT_AUTHENTICATED, body
    # Nothing to end: false, still 200.
    status, body = g.json("POST", "/api/logout")
    assert status == 200 and body["loggedOut"] is False, body
    (env,) = gw.exchange(g, "ws", [{"action": "authenticate", "data": {"token": token}}])
    assert_env_error(env, 401, INVALID)


def inspect(g, token):
    status, body = g.json("POST", "/api/sessionInspect", {"token": token})
    assert status == 200, body
    return body


def test_ttl_expiry(g):
    ttl = 2000  # ms: what must happen while the session lives is four quick requests
    t0 = time.monotonic()
    status, body = g.json("POST", "/api/sessionCreate", {"user": "gina", "ttlMs": ttl})
    assert status == 200, body
    token = body["token"]
    # Redis holds it with that expiry (read back, not raced against the clock).
    assert 0 < inspect(g, token)["pttl"] <= ttl
    assert profile(g, token)[0] == 200
    (env,) = gw.exchange(g, "tcp", [{"action": "authenticate", "data": {"token": token}}])
    assert assert_env_ok(env) == {"user": {"name": "gina"}}
    # Wait (bounded) until Redis dropped it, which is not before its ttl (the expiry was set
    # after t0, so a look that finds it gone ended after t0 + ttl).
    deadline = t0 + ttl / 1000 + gw.bound(5)
    while True:
        body = inspect(g, token)
        now = time.monotonic()
        if body["pttl"] == -2:
            assert now - t0 >= ttl / 1000, "gone %.3f s after it was created" % (now - t0)
            # sessionInspect loads the user, then reads PTTL, then GETs the key: the key may
            # expire between the load and PTTL (seen under ASan), never come back after it.
            assert body["stored"] is None, body
            break
        assert body["user"] == {"name": "gina"}, body
        assert now < deadline, "the session outlived its ttl: %r" % body
        time.sleep(0.05)
    status, body = profile(g, token)
    assert status == 401 and error_text(body) == NOT_AUTHENTICATED, body
    (env,) = gw.exchange(g, "ws", [{"action": "authenticate", "data": {"token": token}}])
    assert_env_error(env, 401, INVALID)


# -- WebSocket and TCP --------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_login_on_one_connection_authenticate_on_another(g, transport):
    login_env, same = gw.exchange(g, transport, [
        {"action": "login", "data": {"user": "hana", "password": "secret"}},
        {"action": "profile"},
    ])
    token = assert_env_ok(login_env)["token"]
    assert assert_env_ok(same) == {"user": {"name": "hana"}}  # login sets connection.user
    denied, auth, prof, again = gw.exchange(g, transport, [
        {"action": "profile", "request_id": 1},
        {"action": "authenticate", "data": {"token": token}, "request_id": 2},
        {"action": "profile", "request_id": 3},
        {"action": "profile", "request_id": 4},
    ])
    assert_env_error(denied, 401, NOT_AUTHENTICATED)
    assert assert_env_ok(auth) == {"user": {"name": "hana"}}
    assert auth["action"] == "authenticate" and auth["request_id"] == 2, auth
    assert assert_env_ok(prof) == {"user": {"name": "hana"}}
    assert assert_env_ok(again) == {"user": {"name": "hana"}}
    # The HTTP token works here too, and a WebSocket/TCP token over HTTP.
    assert profile(g, token)[0] == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_authenticate_errors(g, transport):
    bad, missing, empty, number, prof = gw.exchange(g, transport, [
        {"action": "authenticate", "data": {"token": "0" * 64}},
        {"action": "authenticate"},
        {"action": "authenticate", "data": {"token": ""}},
        {"action": "authenticate", "data": {"token": 12345}},
        {"action": "profile"},
    ])
    assert_env_error(bad, 401, INVALID)
    assert missing["status"] == 422 and missing["errors"] == [{"token": ["This field is required."]}], missing
    # An empty string is a missing value (general.missingParamChecks).
    assert empty["status"] == 422 and empty["errors"] == [{"token": ["This field is required."]}], empty
    assert empty["data"] is None, empty
    assert_env_error(number, 401, INVALID)
    assert_env_error(prof, 401, NOT_AUTHENTICATED)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failed_authenticate_keeps_the_current_user(g, transport):
    token = login(g, "ivan")
    auth, bad, prof = gw.exchange(g, transport, [
        {"action": "authenticate", "data": {"token": token}},
        {"action": "authenticate", "data": {"token": "1" * 64}},
        {"action": "profile"},
    ])
    assert_env_ok(auth)
    assert_env_error(bad, 401, INVALID)
    assert assert_env_ok(prof) == {"user": {"name": "ivan"}}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logout_over_a_persistent_connection(g, transport):
    token = login(g, "judy")
    auth, out, prof = gw.exchange(g, transport, [
        {"action": "authenticate", "data": {"token": token}},
        {"action": "logout"},
        {"action": "profile"},
    ])
    assert_env_ok(auth)
    assert assert_env_ok(out) == {"loggedOut": True}
    assert_env_error(prof, 401, NOT_AUTHENTICATED)
    assert profile(g, token)[0] == 401


def test_project_authenticate_action_wins(make_gateway, redis_url, tmp_path):
    config = session_config(tmp_path / "ov", redis_url, extra_actions=[OVERRIDE])
    og = make_gateway(config=config, workdir=tmp_path / "ov")
    (env,) = gw.exchange(og, "ws", [{"action": "authenticate", "data": {"token": "x"}}])
    assert assert_env_ok(env) == {"custom": True}


# -- Redis down ---------------------------------------------------------------------------------

def test_redis_down(make_gateway, tmp_path):
    """Decided: a Bearer request answers 503 `redis unavailable` (not 401: the token may be
    fine); requests without a token and actions that need no Redis keep working."""
    missing = tempfile.mkdtemp(prefix="gws-", dir="/tmp")
    try:
        url = "unix://%s/redis.sock?db=0" % missing  # nothing listens there
        config = session_config(tmp_path / "down", None)
        config["redis"] = {"url": url}
        dg = make_gateway(config=config, workdir=tmp_path / "down")
        status, body = dg.json("POST", "/api/login", {"user": "kim", "password": "secret"})
        assert status == 503 and error_text(body) == "redis unavailable", body
        status, body = profile(dg, "a" * 64)
        assert status == 503 and error_text(body) == "redis unavailable", body
        status, body = dg.json("GET", "/api/randomNumber", headers=bearer("a" * 64))
        # The token cannot be checked, whatever the action.
        assert status == 503 and error_text(body) == "redis unavailable", body
        dg.assert_serving()
        status, body = profile(dg)
        assert status == 401 and error_text(body) == NOT_AUTHENTICATED, body
        for transport in TRANSPORTS:
            auth, rnd = gw.exchange(dg, transport, [
                {"action": "authenticate", "data": {"token": "a" * 64}},
                {"action": "randomNumber"},
            ])
            assert_env_error(auth, 503, "redis unavailable")
            assert_env_ok(rnd)
        assert dg.alive()
    finally:
        shutil.rmtree(missing, ignore_errors=True)


def test_bearer_on_requests_dispatched_before_their_body(g):
    """A GET with a body, and a POST with Content-Length: 0, are dispatched at once; the
    session lookup makes them wait on Redis, and the body's end must not dispatch them
    again (it once answered a second, bogus 404 and double-freed)."""
    token = login(g, "lena")
    for method, body in (("GET", {"a": 1}), ("POST", None), ("DELETE", None)):
        status, answer = g.json(method, "/api/profile", body, bearer(token))
        assert status == 200 and answer["user"] == {"name": "lena"}, (method, answer)
    # On one keep-alive connection, so that a second (bogus) answer to one request would
    # be read as the answer to the next.
    with g.client() as c:
        for method, body in (("GET", {"a": 1}), ("POST", None), ("DELETE", None)):
            status, answer = c.json(method, "/api/profile", body, bearer(token))
            assert status == 200 and answer["user"] == {"name": "lena"}, (method, answer)
        status, answer = c.json("GET", "/api/randomNumber")
        assert status == 200 and 0 <= answer["randomNumber"] < 1, answer
    assert g.alive()
