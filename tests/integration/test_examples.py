"""The example actions of actions/ over HTTP (SPEC §3, §5)."""

import re
import threading
import time

import pytest

import gateway as gw
from gateway import errors_of


# -- randomNumber -------------------------------------------------------------------------

def test_random_number(gateway):
    status, body = gateway.get("/api/randomNumber")
    assert status == 200, body
    assert isinstance(body["randomNumber"], (int, float))
    assert 0 <= body["randomNumber"] < 1
    assert "error" not in body


def test_random_number_multiplier_scales(gateway):
    values = []
    for _ in range(6):
        status, body = gateway.get("/api/randomNumber?multiplier=10")
        assert status == 200, body
        values.append(body["randomNumber"])
    assert all(0 <= v < 10 for v in values), values
    # Six draws all below 1 would happen with probability 1e-6 if it were scaled.
    assert max(values) >= 1, values


def test_random_number_by_action_param(gateway):
    status, body = gateway.get("/api/?action=randomNumber")
    assert status == 200, body
    assert 0 <= body["randomNumber"] < 1


# -- moneyInCents -------------------------------------------------------------------------
# ActionHero's documented table for this action: 4 and "4" -> 4; "-4" -> "money cannot be
# negative"; "" and null (and absent) -> the default 0; "hello" -> "not a number".

def test_money_in_cents_json_number(gateway):
    status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": 4})
    assert status == 200, body
    assert body["moneyInCents"] == 4
    assert "error" not in body


@pytest.mark.parametrize("how", ["query", "json"])
def test_money_in_cents_string_is_formatted(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=4")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": "4"})
    assert status == 200, body
    assert body["moneyInCents"] == 4 and not isinstance(body["moneyInCents"], str)


@pytest.mark.parametrize("how", ["query", "json"])
@pytest.mark.asan
def test_money_in_cents_negative(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=-4")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": "-4"})
    assert status == 422, body
    assert errors_of(body) == ["money cannot be negative"], body
    assert body["error"] == "money cannot be negative", body
    gateway.assert_serving()


@pytest.mark.parametrize("how", ["query", "json"])
def test_money_in_cents_empty_gets_the_default(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": ""})
    assert status == 200, body
    assert body["moneyInCents"] == 0 and "error" not in body, body


def test_money_in_cents_absent_gets_the_default(gateway):
    status, body = gateway.get("/api/moneyInCents")
    assert status == 200, body
    assert body["moneyInCents"] == 0, body


@pytest.mark.asan
def test_money_in_cents_json_null_gets_the_default(gateway):
    status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": None})
    assert status == 200, body
    assert body["moneyInCents"] == 0, body


@pytest.mark.parametrize("how", ["query", "json"])
@pytest.mark.asan
def test_money_in_cents_not_a_number(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=hello")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": "hello"})
    assert status == 422, body
    assert errors_of(body) == ["not a number"], body
    gateway.assert_serving()


# -- userAdd / userDelete (shared inputs) -------------------------------------------------

@pytest.mark.parametrize("action", ["userAdd", "userDelete"])
@pytest.mark.asan
def test_user_actions_reject_bad_email(gateway, action):
    status, body = gateway.json("POST", "/api/" + action,
                                {"email": "not-an-email", "password": "correct horse 12"})
    assert status == 422, body
    assert errors_of(body) == ["must be a valid email address"], body
    gateway.assert_serving()


@pytest.mark.parametrize("action", ["userAdd", "userDelete"])
def test_user_actions_require_email(gateway, action):
    status, body = gateway.json("POST", "/api/" + action, {"password": "correct horse 12"})
    assert status == 422, body
    assert errors_of(body) == ["email is a required parameter for this action"], body


# -- status -------------------------------------------------------------------------------

def test_status(gateway):
    status, body = gateway.get("/api/status")
    assert status == 200, body
    assert "error" not in body
    assert body["status"] == "ok" and body["name"] == "itest-gateway", body
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0, body
    assert isinstance(body["connections"], int) and body["connections"] >= 1, body  # this one
    assert isinstance(body["memoryKB"], int) and body["memoryKB"] > 0, body


# -- sleepTest ----------------------------------------------------------------------------

def test_sleep_test_waits_about_as_asked(gateway):
    t0 = time.monotonic()
    status, body = gateway.get("/api/sleepTest?sleepDuration=200")
    elapsed = time.monotonic() - t0
    assert status == 200, body
    assert body["sleepDuration"] == 200
    assert 0.19 <= elapsed < gw.bound(1.0), elapsed


def test_sleep_test_default_is_one_second(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000}})
    t0 = time.monotonic()
    status, body = g.get("/api/sleepTest")
    elapsed = time.monotonic() - t0
    assert status == 200, body
    assert body["sleepDuration"] == 1000
    assert 0.99 <= elapsed < gw.bound(2.5), elapsed


def test_sleeps_do_not_block_the_loop(gateway):
    """Three 400 ms sleeps at once finish together, and other requests answer meanwhile."""
    results = []

    def sleeper():
        results.append(gateway.get("/api/sleepTest?sleepDuration=400"))

    offset = gateway.log_size()
    threads = [threading.Thread(target=sleeper) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # A connection's create line is logged in the loop turn that starts its action: once
    # there are three, the three sleeps are pending.
    deadline = time.monotonic() + 10
    while gateway.log_since(offset).count("connLogger create") < 3:
        assert time.monotonic() < deadline, gateway.describe()
        time.sleep(0.01)
    status, body = gateway.get("/api/randomNumber")
    for t in threads:
        t.join(10)
    total = time.monotonic() - t0
    assert status == 200, body
    assert [r[0] for r in results] == [200, 200, 200], results
    # In the log (one process, in order): the three sleeps started, randomNumber was answered,
    # and only then did the sleeps end.
    events = re.findall(r"connLogger create|action=\w+", gateway.log_since(offset))
    assert events == ["connLogger create"] * 4 + ["action=randomNumber"] + \
        ["action=sleepTest"] * 3, events
    assert total < gw.bound(1.1), "three concurrent 400 ms sleeps took %.3f s" % total


# -- showDocumentation --------------------------------------------------------------------

def test_show_documentation(gateway):
    status, body = gateway.get("/api/showDocumentation")
    assert status == 200, body
    docs = body["documentation"]
    assert "randomNumber" in docs, sorted(docs)
    assert "moneyInCents" in docs
    # Each action's entry maps its versions (as strings) to their documentation.
    assert sorted(docs["versioned"], key=int) == ["1", "2", "10"], docs["versioned"]
    assert "hidden_doc" not in docs, "toDocument = false must keep an action out"
    assert docs["randomNumber"] == {"1": {
        "name": "randomNumber", "version": 1,
        "description": "I am an API method which will generate a random number",
        "inputs": {"multiplier": {"required": False, "default": 1}},
        "outputExample": {"randomNumber": 0.123}}}, docs["randomNumber"]


# -- chat (a consumer) --------------------------------------------------------------------

def test_chat_consumer_reaches_the_room_only(gateway):
    import asyncio
    import json

    async def recv(ws):
        return json.loads(await asyncio.wait_for(ws.recv(), 5))

    async def go():
        async with gateway.ws_connect("/ws/chat/lobby/") as a, gateway.ws_connect("/ws/chat/lobby/") as b, \
                gateway.ws_connect("/ws/chat/attic/") as c:
            await a.send(json.dumps({"action": "say", "data": {"message": "hi"}, "request_id": 1}))
            got_a = [await recv(a) for _ in (1, 2)]
            got_b = await recv(b)
            await c.send(json.dumps({"action": "members", "request_id": 2}))
            members = await recv(c)  # the attic heard nothing before its own answer
            return got_a, got_b, members
    got_a, got_b, members = asyncio.run(go())
    answer = [m for m in got_a if m.get("request_id") == 1][0]
    assert answer["status"] == 200 and answer["data"] == {"delivered": 2}, answer
    event = [m for m in got_a if "event" in m][0]
    assert event["room"] == "lobby" and event["message"] == "hi" and event["from"]
    assert got_b == event
    assert members["request_id"] == 2 and members["data"]["room"] == "attic", members
    assert len(members["data"]["members"]) == 1
