"""The middleware contract across action kinds (issue 14, "Middleware contract"): a global
postProcessor written the ActionHero way (`data.response.note = "x"`) leaves every built-in
answer intact (a generic list stays an array, remove stays 204, a matchExtensionMimeType
action still answers its string), and a postProcessor that raises after an action's write
does not report the write as failed: the action's answer goes out and the error is logged.

Fixtures: contract_actions/ (a generic resource, a MIME action, an object action, a Redis
write), contract_mw_stamp/ (the stamping postProcessor), contract_mw_raise/ (a raising one)."""

import os
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = os.path.join(HERE, "contract_actions")
STAMP = os.path.join(HERE, "contract_mw_stamp")
RAISE = os.path.join(HERE, "contract_mw_raise")

pytestmark = pytest.mark.asan


def config(workdir, redis_url, middleware):
    c = gw.default_config(str(workdir), redis_url, actions=[ACTIONS], middleware=[middleware])
    c["redis"]["prefix"] = "itest:contract:%s:" % uuid.uuid4().hex[:8]
    c["general"]["actionTimeout"] = 1000
    return c


def ready(g):
    """Until Redis answers (the client connects after startup; until then 503)."""
    end = time.monotonic() + gw.bound(5)
    while True:
        status, body = g.json("POST", "/api/bumpCounter", {"key": "itest:contract:ready"})
        if status != 503:
            return
        assert time.monotonic() < end, (status, body)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stamped(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stamp")
    with gw.serving(workdir, config(workdir, redis_url, STAMP)) as g:
        ready(g)
        yield g


@pytest.fixture(scope="module")
def raising(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("raise")
    with gw.serving(workdir, config(workdir, redis_url, RAISE)) as g:
        ready(g)
        yield g


def ws(g, *messages):
    return gw.exchange(g, "ws", list(messages))


# -- a stamping postProcessor ------------------------------------------------------------

def test_stamp_keeps_a_list_an_array_over_http(stamped):
    r = stamped.request("POST", "/api/citems/", {"title": "one"})
    assert r.status == 201, r.body
    created = r.json()
    # An object answer gets the middleware's field, as in ActionHero.
    assert created["title"] == "one" and created["note"] == "x", created
    r = stamped.request("GET", "/api/citems/")
    assert r.status == 200, r.body
    body = r.json()
    assert isinstance(body, list), body
    assert any(o["id"] == created["id"] for o in body), body
    assert r.headers.get("x-stamped") == "yes", r.headers


def test_stamp_keeps_a_list_an_array_over_websocket(stamped):
    created, listed = ws(stamped, {"action": "create", "route": "citems/", "data": {"title": "w"}},
                         {"action": "list", "route": "citems/"})
    assert created["status"] == 201, created
    assert listed["status"] == 200 and listed["errors"] == [], listed
    assert isinstance(listed["data"], list), listed
    assert any(o["id"] == created["data"]["id"] for o in listed["data"]), listed


def test_stamp_keeps_remove_204_over_http(stamped):
    status, created = stamped.json("POST", "/api/citems/", {"title": "gone"})
    assert status == 201, created
    route = "/api/citems/%d/" % created["id"]
    r = stamped.request("DELETE", route)
    assert r.status == 204 and r.body == b"", (r.status, r.body)
    assert stamped.request("GET", route).status == 404
    # Only once: a second remove finds nothing.
    assert stamped.request("DELETE", route).status == 404


def test_stamp_keeps_remove_204_over_websocket(stamped):
    (created,) = ws(stamped, {"action": "create", "route": "citems/", "data": {"title": "gone"}})
    assert created["status"] == 201, created
    pk = created["data"]["id"]
    removed, again = ws(stamped, {"action": "remove", "route": "citems/%d/" % pk},
                        {"action": "remove", "route": "citems/%d/" % pk})
    assert removed["status"] == 204 and removed["data"] is None and removed["errors"] == [], removed
    assert again["status"] == 404, again


def test_stamp_keeps_a_mime_string_answer(stamped):
    r = stamped.request("GET", "/api/mimeText.csv")
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("text/csv"), r.headers
    assert r.body == b"a,b\n1,2\n", r.body
    assert r.headers.get("x-stamped") == "yes", r.headers
    # Without an extension, the web's JSON answer: the string under `response`, and the
    # middleware's field beside it.
    status, body = stamped.json("GET", "/api/mimeText")
    assert status == 200, body
    assert body["response"] == "a,b\n1,2\n" and body["note"] == "x", body
    (env,) = ws(stamped, {"action": "mimeText"})
    assert env["status"] == 200 and env["data"] == "a,b\n1,2\n", env


def test_stamp_on_an_object_answer(stamped):
    status, body = stamped.json("GET", "/api/plainObject")
    assert status == 200 and body["answer"] == 42 and body["note"] == "x", body
    (env,) = ws(stamped, {"action": "plainObject"})
    assert env["data"] == {"answer": 42, "note": "x"}, env


def test_a_post_processor_that_never_completes_after_a_write(stamped):
    """actionTimeout in a postProcessor: the write happened, so its answer goes out (not
    504), and the log says which middleware did not complete."""
    key = "itest:contract:hang:" + uuid.uuid4().hex
    offset = stamped.log_size()
    status, body = stamped.json("POST", "/api/bumpCounter", {"key": key})
    assert status == 200 and body["value"] == 1 and body["note"] == "x", body
    (env,) = ws(stamped, {"action": "bumpCounter", "data": {"key": key}})
    assert env["status"] == 200 and env["data"] == {"value": 2, "note": "x"}, env
    assert stamped.wait_for_log(r"the postProcessor of middleware stamp did not complete "
                                r"\(action timed out\)", since=offset)


# -- a raising postProcessor -------------------------------------------------------------

def test_raise_after_create_still_answers_201(raising):
    offset = raising.log_size()
    r = raising.request("POST", "/api/citems/", {"title": "kept"})
    assert r.status == 201, r.body
    created = r.json()
    assert created["title"] == "kept", created
    assert b"secret boom" not in r.body
    assert raising.wait_for_log(r"postProcessor secret boom", since=offset)
    status, got = raising.json("GET", "/api/citems/%d/" % created["id"])
    assert status == 200 and got["title"] == "kept", got
    (env,) = ws(raising, {"action": "create", "route": "citems/", "data": {"title": "ws"}})
    assert env["status"] == 201 and env["data"]["title"] == "ws", env


def test_raise_after_remove_still_answers_204(raising):
    status, created = raising.json("POST", "/api/citems/", {"title": "x"})
    assert status == 201, created
    r = raising.request("DELETE", "/api/citems/%d/" % created["id"])
    assert r.status == 204, (r.status, r.body)
    status, created = raising.json("POST", "/api/citems/", {"title": "y"})
    (env,) = ws(raising, {"action": "remove", "route": "citems/%d/" % created["id"]})
    assert env["status"] == 204 and env["errors"] == [], env


def test_raise_after_a_plain_write_still_answers_it(raising):
    key = "itest:contract:counter:" + uuid.uuid4().hex
    status, body = raising.json("POST", "/api/bumpCounter", {"key": key})
    assert status == 200 and body["value"] == 1, body
    (env,) = ws(raising, {"action": "bumpCounter", "data": {"key": key}})
    assert env["status"] == 200 and env["data"] == {"value": 2}, env
    assert raising.json("GET", "/api/plainObject")[0] == 200
