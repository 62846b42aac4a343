"""The example actions of actions/ over HTTP (SPEC §3, §5)."""

import threading
import time

import pytest

from gateway import errors_of, has_error


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
    assert has_error(body, "must be > 0"), body
    gateway.assert_serving()


@pytest.mark.parametrize("how", ["query", "json"])
def test_money_in_cents_empty_is_missing(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": ""})
    assert status == 422, body
    assert has_error(body, "moneyInCents is a required parameter for this action"), body


def test_money_in_cents_absent_is_missing(gateway):
    status, body = gateway.get("/api/moneyInCents")
    assert status == 422, body
    assert has_error(body, "moneyInCents is a required parameter for this action"), body


@pytest.mark.asan
def test_money_in_cents_json_null_is_missing(gateway):
    status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": None})
    assert status == 422, body
    assert has_error(body, "moneyInCents is a required parameter for this action"), body


@pytest.mark.parametrize("how", ["query", "json"])
@pytest.mark.asan
def test_money_in_cents_not_a_number(gateway, how):
    if how == "query":
        status, body = gateway.get("/api/moneyInCents?moneyInCents=hello")
    else:
        status, body = gateway.json("POST", "/api/moneyInCents", {"moneyInCents": "hello"})
    assert status == 422, body
    assert has_error(body, "must be a number"), body
    gateway.assert_serving()


# -- userAdd / userDelete (shared inputs) -------------------------------------------------

@pytest.mark.parametrize("action", ["userAdd", "userDelete"])
@pytest.mark.asan
def test_user_actions_reject_bad_email(gateway, action):
    status, body = gateway.json("POST", "/api/" + action,
                                {"email": "not-an-email", "password": "correct horse 12"})
    assert status == 422, body
    assert errors_of(body), body
    assert any("email" in e.lower() for e in errors_of(body)), body
    gateway.assert_serving()


@pytest.mark.parametrize("action", ["userAdd", "userDelete"])
def test_user_actions_require_email(gateway, action):
    status, body = gateway.json("POST", "/api/" + action, {"password": "correct horse 12"})
    assert status == 422, body
    assert has_error(body, "email is a required parameter for this action"), body


# -- status -------------------------------------------------------------------------------

def test_status(gateway):
    status, body = gateway.get("/api/status")
    assert status == 200, body
    assert "error" not in body


# -- sleepTest ----------------------------------------------------------------------------

def test_sleep_test_waits_about_as_asked(gateway):
    t0 = time.monotonic()
    status, body = gateway.get("/api/sleepTest?sleepDuration=200")
    elapsed = time.monotonic() - t0
    assert status == 200, body
    assert body["sleepDuration"] == 200
    assert 0.18 <= elapsed < 1.0, elapsed


def test_sleep_test_default_is_one_second(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000}})
    t0 = time.monotonic()
    status, body = g.get("/api/sleepTest")
    elapsed = time.monotonic() - t0
    assert status == 200, body
    assert body["sleepDuration"] == 1000
    assert 0.95 <= elapsed < 2.5, elapsed


def test_sleeps_do_not_block_the_loop(gateway):
    """Three 400 ms sleeps at once finish together, and other requests answer meanwhile."""
    results = []

    def sleeper():
        results.append(gateway.get("/api/sleepTest?sleepDuration=400"))

    threads = [threading.Thread(target=sleeper) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.05)
    q0 = time.monotonic()
    status, body = gateway.get("/api/randomNumber")
    quick = time.monotonic() - q0
    for t in threads:
        t.join(10)
    total = time.monotonic() - t0
    assert status == 200, body
    assert quick < 0.3, "randomNumber took %.3f s while sleeps were pending" % quick
    assert [r[0] for r in results] == [200, 200, 200], results
    assert total < 1.1, "three concurrent 400 ms sleeps took %.3f s" % total


# -- showDocumentation --------------------------------------------------------------------

def _doc_versions(entry):
    if isinstance(entry, dict):
        return sorted(int(float(k)) for k in entry.keys())
    return sorted(int(e["version"]) for e in entry)


def test_show_documentation(gateway):
    status, body = gateway.get("/api/showDocumentation")
    assert status == 200, body
    docs = body["documentation"]
    assert "randomNumber" in docs, sorted(docs)
    assert "moneyInCents" in docs
    assert _doc_versions(docs["versioned"]) == [1, 2, 10], docs["versioned"]
    assert "hidden_doc" not in docs, "toDocument = false must keep an action out"
    entry = docs["randomNumber"]
    one = entry["1"] if isinstance(entry, dict) else entry[0]
    assert one["description"]
    assert "multiplier" in one.get("inputs", {}), one
