"""Sessions end everywhere (issue 14): a logout (api.session.destroy) or an expiry reaches
the WebSocket and TCP connections that authenticated with that token. Each message on a
persistent connection that holds a session checks it in Redis before the action runs, so
the next message that needs the user answers 401.

Fixtures: the example actions (login, logout, profile) and session_actions/base
(sessionCreate with a short ttl, sessionInspect)."""

import asyncio
import json
import os
import time

import pytest

import gateway as gw
from gateway import error_text, errors_of

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "session_actions", "base")
NOT_AUTHENTICATED = "Authentication credentials were not provided."

pytestmark = pytest.mark.asan


@pytest.fixture(scope="module")
def g(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("revoke")
    config = gw.default_config(str(workdir), redis_url, actions=[gw.EXAMPLE_ACTIONS, BASE])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    with gw.serving(workdir, config) as g:
        yield g


def login(g, user):
    status, body = g.json("POST", "/api/login", {"user": user, "password": "secret"})
    assert status == 200, body
    return body["token"]


def bearer(token):
    return {"Authorization": "Bearer " + token}


async def ws_call(ws, message, timeout=5.0):
    await ws.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def assert_profile(env, user):
    assert env["status"] == 200 and env["data"] == {"user": {"name": user}}, env


def assert_401(env):
    assert env["status"] == 401, env
    assert errors_of(env) == [NOT_AUTHENTICATED], env


def run_with_both(g, token, user, end_session):
    """Authenticate a WebSocket and a TCP connection with 'token', check both run profile,
    call end_session(), then check the next profile on each answers 401 (the connections
    stay open and keep working for actions that need no user)."""
    tcp = g.line_client()

    async def go():
        async with g.ws_connect() as ws:
            env = await ws_call(ws, {"action": "authenticate", "data": {"token": token}})
            assert env["status"] == 200, env
            assert_profile(await ws_call(ws, {"action": "profile"}), user)
            env = tcp.call(json.dumps({"action": "authenticate", "data": {"token": token}}))
            assert env["status"] == 200, env
            assert_profile(tcp.call(json.dumps({"action": "profile"})), user)

            await asyncio.get_running_loop().run_in_executor(None, end_session)

            assert_401(await ws_call(ws, {"action": "profile"}))
            assert_401(tcp.call(json.dumps({"action": "profile"})))
            # Still open, still serving; and the user is gone for good on each.
            env = await ws_call(ws, {"action": "status"})
            assert env["status"] == 200, env
            assert_401(await ws_call(ws, {"action": "profile"}))
            assert_401(tcp.call(json.dumps({"action": "profile"})))

    try:
        asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        tcp.close()


def test_logout_on_http_ends_the_session_on_websocket_and_tcp(g):
    token = login(g, "iris")

    def logout():
        status, body = g.json("POST", "/api/logout", headers=bearer(token))
        assert status == 200 and body["loggedOut"] is True, body

    run_with_both(g, token, "iris", logout)
    status, body = g.json("GET", "/api/profile", headers=bearer(token))
    assert status == 401 and error_text(body) == NOT_AUTHENTICATED, body


def test_expiry_ends_the_session_on_websocket_and_tcp(g):
    ttl = 1500
    status, body = g.json("POST", "/api/sessionCreate", {"user": "jude", "ttlMs": ttl})
    assert status == 200, body
    token = body["token"]

    def expire():
        # Until Redis has dropped it (bounded): not raced against the clock.
        deadline = time.monotonic() + ttl / 1000 + gw.bound(5)
        while True:
            status, body = g.json("POST", "/api/sessionInspect", {"token": token})
            assert status == 200, body
            if body["pttl"] == -2:
                return
            assert time.monotonic() < deadline, body
            time.sleep(0.05)

    run_with_both(g, token, "jude", expire)


def test_logout_on_a_websocket_reaches_a_tcp_connection(g):
    token = login(g, "kim")
    tcp = g.line_client()
    try:
        env = tcp.call(json.dumps({"action": "authenticate", "data": {"token": token}}))
        assert env["status"] == 200, env

        async def go():
            async with g.ws_connect() as ws:
                env = await ws_call(ws, {"action": "authenticate", "data": {"token": token}})
                assert env["status"] == 200, env
                env = await ws_call(ws, {"action": "logout"})
                assert env["status"] == 200 and env["data"] == {"loggedOut": True}, env
                assert_401(await ws_call(ws, {"action": "profile"}))

        asyncio.run(asyncio.wait_for(go(), 20))
        assert_401(tcp.call(json.dumps({"action": "profile"})))
    finally:
        tcp.close()


def test_a_live_session_is_kept(g):
    token = login(g, "lee")
    tcp = g.line_client()
    try:
        env = tcp.call(json.dumps({"action": "authenticate", "data": {"token": token}}))
        assert env["status"] == 200, env
        for _ in range(3):
            assert_profile(tcp.call(json.dumps({"action": "profile"})), "lee")
        # TCP verb lines run actions too.
        tcp.send_line("profile")
        assert_profile(tcp.read_json(), "lee")
    finally:
        tcp.close()


def test_redis_down_answers_503_on_a_connection_with_a_session(make_gateway, private_redis, tmp_path):
    """A session that cannot be checked is not trusted: 503 `redis unavailable`, as for a
    Bearer request on the web; a connection without one is not affected."""
    redis = private_redis(tcp=True)
    os.makedirs(str(tmp_path / "down"), exist_ok=True)
    config = gw.default_config(str(tmp_path / "down"), None, actions=[gw.EXAMPLE_ACTIONS, BASE])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["redis"] = {"url": redis.tcp_url(), "prefix": "itest:down:"}
    dg = make_gateway(config=config, workdir=tmp_path / "down")
    deadline = time.monotonic() + gw.bound(5)
    while True:
        status, body = dg.json("POST", "/api/login", {"user": "max", "password": "secret"})
        if status == 200:
            break
        assert status == 503 and time.monotonic() < deadline, body
        time.sleep(0.05)
    token = body["token"]
    with dg.line_client() as authed, dg.line_client() as plain:
        env = authed.call(json.dumps({"action": "authenticate", "data": {"token": token}}))
        assert env["status"] == 200, env
        redis.stop()
        env = authed.call(json.dumps({"action": "profile"}))
        assert env["status"] == 503 and errors_of(env) == ["redis unavailable"], env
        env = plain.call(json.dumps({"action": "status"}))
        assert env["status"] == 200, env
