"""Web responses, errors, params, versions and HTTP details (SPEC §3, §5, §6, §8)."""

import json
import os
import re
import time
import urllib.parse

import pytest

import gateway as gw
from gateway import TEST_MIDDLEWARE, error_field, error_text, errors_of, has_error, split_raw_response

JSON_TYPE = "application/json; charset=utf-8"


def _content_type(headers):
    return (headers.get("Content-Type") or "").lower().replace(" ", "")


# -- response shape and metadata ----------------------------------------------------------

def test_success_is_json_with_metadata(gateway):
    r = gateway.request("GET", "/api/randomNumber?multiplier=1")
    assert r.status == 200
    assert _content_type(r.headers) == JSON_TYPE.replace(" ", "")
    body = r.json()
    info = body["serverInformation"]
    assert info["serverName"] == "itest-gateway"
    assert info["apiVersion"] == 1
    assert isinstance(info["requestDuration"], (int, float)) and info["requestDuration"] >= 0
    assert isinstance(info["currentTime"], (int, float))
    assert abs(info["currentTime"] / 1000.0 - time.time()) < 60, "currentTime is ms since epoch"
    req = body["requesterInformation"]
    assert req["id"]
    assert req["remoteIP"] == "127.0.0.1"
    # As in ActionHero, the params after the inputs ran: the formatter made it a number.
    assert req["receivedParams"]["multiplier"] == 1


def test_metadata_off(make_gateway):
    g = make_gateway({"servers": {"web": {"metadata": False}}})
    status, body = g.json("POST", "/api/moneyInCents", {"moneyInCents": 4})
    assert status == 200, body
    assert body == {"moneyInCents": 4}
    status, body = g.get("/api/fail_string")
    assert status == 400
    assert "serverInformation" not in body and "requesterInformation" not in body
    assert error_text(body) == "broken"


def test_data_and_connection_fields(gateway):
    status, body = gateway.get("/api/data_fields")
    assert status == 200, body
    assert body["action"] == "data_fields"
    assert body["connType"] == "web"
    assert body["remoteIP"] == "127.0.0.1"
    assert body["method"] == "GET"
    assert body["startIsNumber"] is True
    assert body["toProcess"] is True and body["toRender"] is True
    assert body["templateName"] == "data_fields"


# -- errors from actions ------------------------------------------------------------------

@pytest.mark.asan
def test_next_with_string_is_400(gateway):
    status, body = gateway.get("/api/fail_string")
    assert status == 400, body
    assert body["error"] == "broken"
    assert errors_of(body) == ["broken"]
    gateway.assert_serving()


@pytest.mark.asan
def test_next_with_table_uses_its_status_and_fields(gateway):
    status, body = gateway.get("/api/fail_table")
    assert status == 402, body
    assert error_text(body) == "payment required", body
    assert error_field(body, "code") == "PAY", body
    assert "payment required" in errors_of(body), body
    gateway.assert_serving()


def test_data_status_used_when_error_has_none(gateway):
    status, body = gateway.get("/api/set_status_fail")
    assert status == 409, body
    assert error_text(body) == "conflict"


@pytest.mark.asan
def test_raised_error_is_500_and_logged_not_sent(gateway):
    offset = gateway.log_size()
    r = gateway.request("GET", "/api/raise_error")
    assert r.status == 500, r.body
    body = r.json()
    assert error_text(body) == "The server experienced an internal error"
    assert b"secret internal detail" not in r.body
    assert gateway.wait_for_log("secret internal detail", since=offset), \
        "the Lua error message must go to the log"
    gateway.assert_serving()


@pytest.mark.asan
def test_raised_table_with_status(gateway):
    status, body = gateway.get("/api/raise_table")
    assert status == 418, body
    assert error_text(body) == "i am a teapot"


@pytest.mark.asan
def test_action_that_never_finishes_times_out(gateway):
    # actionTimeout is 1000 ms in the test config.
    t0 = time.monotonic()
    status, body = gateway.get("/api/never_next")
    elapsed = time.monotonic() - t0
    assert status == 504, body
    assert error_text(body) == "action timed out"
    assert 0.9 <= elapsed < gw.bound(2.5), elapsed
    gateway.assert_serving()


def test_timeout_longer_than_cpu_timeout_still_renders(make_gateway):
    # The timeout answer (and the destroy middleware) runs in Lua after the loop sat idle
    # for longer than cpuTimeout: that idle time must not count as Lua running.
    busy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "middleware_busy")
    g = make_gateway({"general": {"actionTimeout": 800, "cpuTimeout": 300},
                      "paths": {"middleware": [TEST_MIDDLEWARE, busy]}})
    status, body = g.json("GET", "/api/never_next")
    assert status == 504, body
    assert error_text(body) == "action timed out"
    assert body["serverInformation"]["serverName"] == "itest-gateway"
    assert "cpuTimeout" not in g.log_text()


@pytest.mark.asan
def test_runaway_loop_is_stopped(make_gateway):
    g = make_gateway({"general": {"cpuTimeout": 300}})
    t0 = time.monotonic()
    r = g.request("GET", "/api/cpu_loop", timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status == 500, r.body
    assert error_text(r.json()) == "The server experienced an internal error"
    assert elapsed < gw.bound(3.0), elapsed
    g.assert_serving()
    # A second runaway is stopped too: the hook is not a one-off.
    assert g.request("GET", "/api/cpu_loop", timeout=15).status == 500
    g.assert_serving()


def test_return_table_merges_into_response(gateway):
    status, body = gateway.get("/api/return_style")
    assert status == 200, body
    assert body["a"] == 1
    assert body["before"] == "kept"


@pytest.mark.asan
def test_return_nil_err_is_next_err(gateway):
    status, body = gateway.get("/api/return_err")
    assert status == 400, body
    assert error_text(body) == "nope"


@pytest.mark.asan
def test_next_from_timer(gateway):
    status, body = gateway.get("/api/later_next")
    assert status == 200, body
    assert body["late"] is True


@pytest.mark.asan
def test_sleep_then_answer(gateway):
    t0 = time.monotonic()
    status, body = gateway.get("/api/sleep_then")
    assert status == 200, body
    assert body["slept"] is True
    assert time.monotonic() - t0 >= 0.045


def test_status_and_headers_from_action(gateway):
    r = gateway.request("GET", "/api/set_status")
    assert r.status == 201, r.body
    assert r.headers.get("X-Test") == "yes"
    assert r.json()["created"] is True


@pytest.mark.asan
def test_to_render_false_is_204(gateway):
    r = gateway.request("GET", "/api/no_render")
    assert r.status == 204
    assert r.body == b""
    gateway.assert_serving()


# -- routing and versions -----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api", "/api/noSuchAction", "/api/?action=noSuchAction"])
@pytest.mark.asan
def test_unknown_action_is_404(gateway, path):
    status, body = gateway.get(path)
    assert status == 404, body
    assert error_text(body) == "unknown action or invalid apiVersion"


def test_api_with_slash_alone_is_404(gateway):
    status, body = gateway.get("/api/")
    assert status == 404, body
    assert error_text(body) == "unknown action or invalid apiVersion"


@pytest.mark.parametrize("path", ["/nope", "/", "/apix/randomNumber"])
def test_unknown_path_is_404(gateway, path):
    r = gateway.request("GET", path)
    assert r.status == 404, r.body
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    assert r.json() == {"error": "unknown action or invalid apiVersion",
                        "errors": ["unknown action or invalid apiVersion"]}


def test_highest_version_by_default(gateway):
    status, body = gateway.get("/api/versioned")
    assert status == 200, body
    assert body["version"] == 10, "versions must sort numerically (10 > 2)"
    assert body["apiVersion"] == 10


@pytest.mark.parametrize("v", [1, 2, 10])
def test_explicit_version(gateway, v):
    status, body = gateway.get("/api/versioned?apiVersion=%d" % v)
    assert status == 200, body
    assert body["version"] == v


def test_version_in_json_body(gateway):
    status, body = gateway.json("POST", "/api/versioned", {"apiVersion": 2})
    assert status == 200, body
    assert body["version"] == 2


def test_unknown_version_is_404(gateway):
    status, body = gateway.get("/api/versioned?apiVersion=3")
    assert status == 404, body
    assert error_text(body) == "unknown action or invalid apiVersion"


def test_blocked_connection_type(gateway):
    status, body = gateway.get("/api/blocked_web")
    assert status == 400, body
    assert error_text(body) == "this action does not support the web connection type"
    assert "ran" not in body


# -- params -------------------------------------------------------------------------------

def test_query_params(gateway):
    status, body = gateway.get("/api/echo_params?a=1&b=two%20words&n=42")
    assert status == 200, body
    p = body["params"]
    assert p["a"] == "1"
    assert p["b"] == "two words"
    assert p["n"] == 42


def test_json_body_params(gateway):
    status, body = gateway.json("POST", "/api/echo_params", {"a": "x", "b": [1, 2], "n": "7"})
    assert status == 200, body
    p = body["params"]
    assert p["a"] == "x" and p["b"] == [1, 2] and p["n"] == 7


def test_body_beats_query(gateway):
    status, body = gateway.json("POST", "/api/echo_params?a=fromQuery&b=q", {"a": "fromBody"})
    assert status == 200, body
    assert body["params"]["a"] == "fromBody"
    assert body["params"]["b"] == "q"


@pytest.mark.asan
def test_json_array_body_is_payload(gateway):
    status, body = gateway.json("POST", "/api/echo_params", [1, "two", 3])
    assert status == 200, body
    assert body["params"]["payload"] == [1, "two", 3]


@pytest.mark.asan
def test_urlencoded_form_body(gateway):
    form = urllib.parse.urlencode({"a": "hello world", "b": "caf\u00e9&co"})
    status, body = gateway.json("POST", "/api/echo_params", form,
                                {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    assert body["params"]["a"] == "hello world"
    assert body["params"]["b"] == "caf\u00e9&co"


@pytest.mark.asan
def test_malformed_json_body(gateway):
    status, body = gateway.json("POST", "/api/echo_params", '{"a": 1,',
                                {"Content-Type": "application/json"})
    assert status == 400, body
    assert error_text(body) == "invalid JSON body"
    gateway.assert_serving()


@pytest.mark.asan
def test_body_over_max_size_is_413(make_gateway):
    g = make_gateway({"servers": {"web": {"maxBodySize": 1024}}})
    small = {"a": "x" * 500}
    status, body = g.json("POST", "/api/echo_params", small)
    assert status == 200, body
    r = g.request("POST", "/api/echo_params", {"a": "x" * 3000})
    assert r.status == 413, r.body
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    assert error_text(r.json()) == "request body is larger than maxBodySize"
    g.assert_serving()


def test_scrubbing_removes_undeclared_keeps_reserved(gateway):
    status, body = gateway.get("/api/?action=echo_params&a=1&zzz=2&file=f.txt&apiVersion=1")
    assert status == 200, body
    p = body["params"]
    assert p["a"] == "1"
    assert "zzz" not in p, p
    assert p["action"] == "echo_params"
    assert p["apiVersion"] == 1, "apiVersion is the chosen version, a number: %r" % p
    assert p["file"] == "f.txt"


def test_scrubbing_disabled(make_gateway):
    g = make_gateway({"general": {"disableParamScrubbing": True}})
    status, body = g.get("/api/echo_params?a=1&zzz=2")
    assert status == 200, body
    assert body["params"]["zzz"] == "2"
    assert body["params"]["a"] == "1"


@pytest.mark.parametrize("value", [False, 0, {"k": 1}, [1]])
def test_false_zero_and_tables_are_present(gateway, value):
    status, body = gateway.json("POST", "/api/required_input", {"name": value})
    assert status == 200, body
    assert body["name"] == value


@pytest.mark.parametrize("payload", [{}, {"name": None}, {"name": ""}])
def test_missing_values(gateway, payload):
    status, body = gateway.json("POST", "/api/required_input", payload)
    assert status == 422, body
    assert has_error(body, "name is a required parameter for this action"), body


def test_missing_param_checks_customised(make_gateway):
    g = make_gateway({"general": {"missingParamChecks": ["nil"]}})
    status, body = g.get("/api/required_input?name=")
    assert status == 200, body
    assert body["name"] == ""
    status, body = g.get("/api/required_input")
    assert status == 422, body
    assert has_error(body, "name is a required parameter for this action")


@pytest.mark.asan
def test_every_input_failure_is_reported(gateway):
    status, body = gateway.get("/api/two_inputs?x=-1")
    assert status == 422, body
    errs = errors_of(body)
    assert len(errs) == 2, body
    assert any("must be > 0" in e for e in errs), errs
    assert any("y is a required parameter for this action" in e for e in errs), errs
    assert error_text(body) in errs

    status, body = gateway.get("/api/two_inputs?x=-1&y=-2")
    assert status == 422, body
    assert len(errors_of(body)) == 2, body

    status, body = gateway.get("/api/two_inputs?x=1&y=2")
    assert status == 200, body
    assert body["sum"] == 3


def test_input_defaults_and_formatters(gateway):
    status, body = gateway.get("/api/input_rules?chain=x")
    assert status == 200, body
    assert body["computed"] == "computed:computed"
    assert body["fmtDefault"] == 5 and body["fmtDefaultType"] == "number", \
        "a default value goes through the formatter (default -> formatter -> validator)"
    assert body["chain"] == "x12", "formatter lists apply in order"


@pytest.mark.asan
def test_validator_false_and_message(gateway):
    status, body = gateway.get("/api/input_rules?falsy=1")
    assert status == 422, body
    assert has_error(body, 'Input for parameter "falsy" failed validation!'), body
    status, body = gateway.get("/api/input_rules?worded=nope")
    assert status == 422, body
    assert has_error(body, "worded must be ok"), body
    status, body = gateway.get("/api/input_rules?worded=ok")
    assert status == 200, body
    assert body["worded"] == "ok"


@pytest.mark.parametrize("action", ["shared_a", "shared_b"])
def test_shared_inputs(gateway, action):
    status, body = gateway.get("/api/%s?code=abc" % action)
    assert status == 200, body
    assert body["which"] == action[-1] and body["code"] == "abc"
    status, body = gateway.get("/api/%s?code=abcd" % action)
    assert status == 422, body
    assert has_error(body, "code must be 3 characters"), body


# -- CORS, OPTIONS, HEAD, JSONP, keep-alive -----------------------------------------------

@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/api/randomNumber", None, 200),
    ("GET", "/api/noSuchAction", None, 404),
    ("GET", "/api/moneyInCents?moneyInCents=-1", None, 422),
    ("GET", "/api/raise_error", None, 500),
    ("GET", "/api/fail_table", None, 402),
    ("POST", "/api/echo_params", b"{oops", 400),
    ("GET", "/api/no_render", None, 204),
    ("GET", "/nothing/here", None, 404),
])
def test_cors_origin_on_every_response(gateway, method, path, body, status):
    r = gateway.request(method, path, body, {"Content-Type": "application/json"} if body else None)
    assert r.status == status, r.body[:300]
    assert r.headers.get("Access-Control-Allow-Origin") == "*", (r.status, dict(r.headers))


@pytest.mark.asan
def test_options_preflight(gateway):
    r = gateway.request("OPTIONS", "/api/randomNumber", headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    assert r.status == 204, r.body
    assert r.body == b""
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    methods = r.headers.get("Access-Control-Allow-Methods") or ""
    assert "GET" in methods and "POST" in methods, methods
    allowed = (r.headers.get("Access-Control-Allow-Headers") or "").lower()
    assert "content-type" in allowed, dict(r.headers)


def _raw_head(gateway, path):
    raw = gateway.raw(("HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                       % path).encode(), timeout=3)
    return split_raw_response(raw)


@pytest.mark.parametrize("path,status", [
    ("/api/randomNumber", 200), ("/api/noSuchAction", 404), ("/api/set_status", 201)])
@pytest.mark.asan
def test_head_is_get_without_body(gateway, path, status):
    get = gateway.request("GET", path)
    hstatus, headers, body = _raw_head(gateway, path)
    assert get.status == status
    assert hstatus == status
    assert body == b"", "HEAD must not send a body: %r" % body[:200]
    assert headers.get("content-type") == get.headers.get("Content-Type")
    assert headers.get("access-control-allow-origin") == "*"
    if path == "/api/set_status":
        assert headers.get("x-test") == "yes"


def _jsonp(r, name):
    assert r.status == 200, r.body
    assert (r.headers.get("Content-Type") or "").startswith("application/javascript"), \
        dict(r.headers)
    text = r.body.decode()
    m = re.match(r"^\s*" + re.escape(name) + r"\((.*)\);\s*$", text, re.S)
    assert m, text[:300]
    return json.loads(m.group(1))


def test_jsonp_callback(gateway):
    body = _jsonp(gateway.request("GET", "/api/randomNumber?callback=fn"), "fn")
    assert 0 <= body["randomNumber"] < 1
    assert _jsonp(gateway.request("GET", "/api/randomNumber?callback=jQuery_1.cb$2"),
                  "jQuery_1.cb$2")


@pytest.mark.parametrize("name", ["alert(document.cookie)//", "x</script><script>alert(1)",
                                  "a b", "f-n"])
@pytest.mark.asan
def test_jsonp_invalid_callback_not_used_as_is(gateway, name):
    # A name outside [A-Za-z0-9_.$] is not used at all: the answer is the plain JSON.
    r = gateway.request("GET", "/api/randomNumber?callback=" + urllib.parse.quote(name))
    assert r.status == 200, r.body
    assert r.headers.get("Content-Type") == JSON_TYPE, dict(r.headers)
    body = r.json()
    assert 0 <= body["randomNumber"] < 1


@pytest.mark.asan
def test_keep_alive_serves_several_requests(gateway):
    with gateway.client() as c:
        port = c.local_port()
        for path, status, error in (("/api/randomNumber", 200, None),
                                    ("/api/fail_string", 400, "broken"),
                                    ("/api/noSuchAction", 404, "unknown action or invalid apiVersion"),
                                    ("/api/randomNumber", 200, None)):
            r = c.request("GET", path)
            assert r.status == status, (path, r.status, r.body[:300])
            assert error_text(r.json()) == error, (path, r.body[:300])
        assert c.local_port() == port, "the connection was not kept alive"
