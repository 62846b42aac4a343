"""Web routes (SPEC §6 "Web routes", issue 4 contract): route params and precedence, regex
constraints, trailing path parts, case-insensitive static segments, URL-decoded params, the
params merge order, route apiVersion, data.matchedRoute, connection.extension and
matchExtensionMimeType, reload of the routes file on SIGHUP, and load errors.

Fixtures: routing/routes.lua and routing/actions/ (loaded only by the gateways of this module).
"""

import os
import signal
import time

import pytest

import gateway as gw
from gateway import has_error

# `make test-asan` runs these again on the sanitizer build.
pytestmark = pytest.mark.asan

ROUTING = os.path.join(gw.HERE, "routing")
ROUTING_ACTIONS = os.path.join(ROUTING, "actions")
ROUTES = os.path.join(ROUTING, "routes.lua")
NOT_FOUND = "unknown action or invalid apiVersion"
PNG_BODY = b"\x89PNG\r\n\x1a\nraw-body"


def routing_config(workdir, redis_url=None, routes=ROUTES):
    config = gw.default_config(str(workdir), redis_url)
    config["paths"]["actions"] = [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, ROUTING_ACTIONS]
    config["paths"]["routes"] = routes
    return config


@pytest.fixture(scope="module")
def rgw(gateway_bin, redis_url, tmp_path_factory):
    """One gateway for the module with the routes of routing/routes.lua."""
    workdir = tmp_path_factory.mktemp("rgw")
    with gw.serving(workdir, routing_config(workdir, redis_url)) as g:
        yield g


@pytest.fixture
def g(rgw):
    assert rgw.alive(), "the module's routing gateway died\n" + rgw.describe()
    return rgw


def ok(g, method, path, body=None, headers=None):
    """A request that must succeed with JSON; returns the parsed body."""
    r = g.request(method, path, body, headers)
    assert r.status == 200, (method, path, r.status, r.body[:2000])
    return r.json()


def assert_not_found(g, method, path):
    status, body = g.json(method, path)
    assert status == 404, (method, path, status, body)
    assert has_error(body, NOT_FOUND), body


# -- route params and matching -------------------------------------------------------------

def test_route_param(g):
    body = ok(g, "GET", "/api/things/42")
    assert body["action"] == "routeGet", body
    assert body["params"]["id"] == "42", body


def test_several_params(g):
    body = ok(g, "GET", "/api/two/x1/y2")
    assert body["action"] == "routeC", body
    assert body["params"]["a"] == "x1" and body["params"]["b"] == "y2", body


def test_trailing_slash_ignored(g):
    body = ok(g, "GET", "/api/things/42/")
    assert body["action"] == "routeGet", body
    assert body["params"]["id"] == "42", body


def test_route_params_are_not_scrubbed(g):
    # routeA declares no input named `undeclared`: a route param survives scrubbing anyway.
    body = ok(g, "GET", "/api/scrub/kept?other=dropped")
    assert body["action"] == "routeA", body
    assert body["params"].get("undeclared") == "kept", body
    assert "other" not in body["params"], "undeclared query params are still scrubbed: %r" % body


def test_static_segments_case_insensitive(g):
    body = ok(g, "GET", "/api/THINGS/AbC")
    assert body["action"] == "routeGet", body
    assert body["params"]["id"] == "AbC", "param values keep their case: %r" % body
    body = ok(g, "GET", "/api/upper/case/Zz")
    assert body["action"] == "routeC", body
    assert body["params"]["id"] == "Zz", body
    body = ok(g, "GET", "/api/uPpEr/CaSe/1")
    assert body["action"] == "routeC", body


def test_params_are_url_decoded(g):
    body = ok(g, "GET", "/api/things/hello%20w%C3%B6rld")
    assert body["action"] == "routeGet", body
    assert body["params"]["id"] == "hello w\u00f6rld", body
    body = ok(g, "GET", "/api/two/a%2Bb/%41%42")
    assert body["params"]["a"] == "a+b" and body["params"]["b"] == "AB", body




def test_param_decoding_keeps_plus(g):
    # A path is not a form: "+" is a plus sign there, not a space.
    body = ok(g, "GET", "/api/things/a+b")
    assert body["params"]["id"] == "a+b", "'+' in a path is not a space: %r" % body["params"]


def test_param_decoding_encoded_slash_stays_in_segment(g):
    # The contract: `:name` captures one URL-decoded segment, so %2F is a "/" inside it.
    body = ok(g, "GET", "/api/things/a%2Fb")
    assert body["action"] == "routeGet", body
    assert body["params"]["id"] == "a/b", body


def test_too_many_segments_do_not_match(g):
    # /leaf/:name takes exactly one segment (no matchTrailingPathParts).
    body = ok(g, "GET", "/api/leaf/one")
    assert body["params"]["name"] == "one", body
    assert_not_found(g, "GET", "/api/leaf/one/two")
    assert_not_found(g, "GET", "/api/two//y2")  # a :name segment is never empty
    assert_not_found(g, "GET", "/api/nowhere/at/all")


def test_route_path_shorter_than_request_does_not_match(g):
    assert_not_found(g, "GET", "/api/things/1/extra")


# -- precedence ----------------------------------------------------------------------------

def test_method_list_before_all(g):
    assert ok(g, "GET", "/api/things/1")["action"] == "routeGet"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        body = ok(g, method, "/api/things/1")
        assert body["action"] == "routeAll", (method, body)
        assert body["method"] == method, body
        assert body["params"]["id"] == "1", body
    # post has its own list for /merge/:a; other methods fall back to all.
    assert ok(g, "POST", "/api/merge/z")["action"] == "routeA"
    assert ok(g, "PUT", "/api/merge/z")["action"] == "routeB"
    assert ok(g, "GET", "/api/merge/z")["action"] == "routeB"


def test_head_uses_head_list_then_get(g):
    r = g.request("HEAD", "/api/hd/1")
    assert r.status == 200, r
    assert r.headers.get("X-Action") == "routeHead", dict(r.headers)
    assert r.body == b""
    r = g.request("HEAD", "/api/things/1")
    assert r.status == 200, r
    assert r.headers.get("X-Action") == "routeGet", dict(r.headers)
    # Then the all list.
    r = g.request("HEAD", "/api/merge/z")
    assert r.status == 200, r
    assert r.headers.get("X-Action") == "routeB", dict(r.headers)
    # GET does not use the head list.
    assert ok(g, "GET", "/api/hd/1")["action"] == "routeGet"


def test_first_match_wins(g):
    body = ok(g, "GET", "/api/first/fixed")
    assert body["action"] == "routeA", "the earlier /first/:x must win: %r" % body
    assert body["params"]["x"] == "fixed", body


def test_query_action_beats_routes(g):
    body = ok(g, "GET", "/api/things/1?action=routeB")
    assert body["action"] == "routeB", body


def test_query_action_unknown_does_not_beat_routes(g):
    body = ok(g, "GET", "/api/things/1?action=noSuchActionAnywhere")
    assert body["action"] == "routeGet", body


def test_route_beats_action_name(g):
    # GET /api/routeB matches the route /routeB -> routeC; without a route it is the action.
    body = ok(g, "GET", "/api/routeB")
    assert body["action"] == "routeC", body
    body = ok(g, "POST", "/api/routeB")
    assert body["action"] == "routeB", body
    assert body.get("matchedRoute") is None, "no route chose routeB: %r" % body


def test_action_name_with_extension(g):
    body = ok(g, "GET", "/api/routeA.json")
    assert body["action"] == "routeA", body
    assert body["extension"] == "json", body
    status, body = g.get("/api/randomNumber.json")
    assert status == 200, body
    assert 0 <= body["randomNumber"] < 1


def test_web_routes_and_action_names_before_handler_routes(g):
    # z_handler.lua has ^things/(?P<pk>\w+)$ and ^routeA$: the web route and the action win.
    assert ok(g, "GET", "/api/things/1")["action"] == "routeGet"
    assert ok(g, "GET", "/api/routeA")["action"] == "routeA"
    # A path only the handler knows reaches it (the body is the handler's result itself).
    status, body = g.get("/api/onlyhandler/3/")
    assert status == 200 and body == {"handler": "retrieve", "pk": "3"}, body
    status, body = g.json("POST", "/api/onlyhandler/3/")
    assert status == 200 and body == {"handler": "create"}, body
    # ?action= naming an action beats the handler too.
    assert ok(g, "GET", "/api/onlyhandler/3/?action=routeB")["action"] == "routeB"


# -- params merge and apiVersion -----------------------------------------------------------

def test_params_merge_query_body_route(g):
    body = ok(g, "POST", "/api/merge/R?a=Q&b=Q2&q=Q3", {"a": "B", "b": "B2"})
    assert body["action"] == "routeA", body
    p = body["params"]
    assert p["a"] == "R", "route params beat query and body: %r" % p
    assert p["b"] == "B2", "body beats query: %r" % p
    assert p["q"] == "Q3", p


def test_route_api_version_applies_without_request_version(g):
    assert ok(g, "GET", "/api/routeVersioned")["version"] == 2  # the highest without a route
    body = ok(g, "GET", "/api/v1thing")
    assert body["action"] == "routeVersioned", body
    assert body["version"] == 1, "the route's apiVersion applies: %r" % body
    body = ok(g, "GET", "/api/v1thing?apiVersion=2")
    assert body["version"] == 2, "the request's apiVersion beats the route's: %r" % body


def test_api_version_path_segment(g):
    assert ok(g, "GET", "/api/ver/1/thing")["version"] == 1
    assert ok(g, "GET", "/api/ver/2/thing")["version"] == 2
    assert ok(g, "GET", "/api/ver/2/thing?apiVersion=1")["version"] == 2  # route beats query
    assert_not_found(g, "GET", "/api/ver/9/thing")


# -- regex constraints and trailing path parts ----------------------------------------------

@pytest.mark.parametrize("user_id", ["123", "admin"])
def test_regex_constraint_accepts(g, user_id):
    body = ok(g, "GET", "/api/login/" + user_id)
    assert body["action"] == "routeA", body
    assert body["params"]["userID"] == user_id, body


@pytest.mark.parametrize("user_id", ["1234", "12", "administrator", "xadmin"])
def test_regex_constraint_rejects(g, user_id):
    assert_not_found(g, "GET", "/api/login/" + user_id)


def test_unanchored_regex_uses_search(g):
    body = ok(g, "GET", "/api/code/ab12cd")
    assert body["action"] == "routeB", body
    assert body["params"]["c"] == "ab12cd", "the whole segment is the param: %r" % body
    assert_not_found(g, "GET", "/api/code/abc")


def test_match_trailing_path_parts(g):
    body = ok(g, "GET", "/api/tree/a/b/c")
    assert body["action"] == "routeA", body
    assert body["params"]["rest"] == "a/b/c", body
    body = ok(g, "GET", "/api/tree/only")
    assert body["params"]["rest"] == "only", body
    body = ok(g, "GET", "/api/mixed/1/x/y")
    assert body["action"] == "routeB", body
    assert body["params"]["x"] == "1" and body["params"]["rest"] == "x/y", body


# -- data.matchedRoute, data.route, connection.extension --------------------------------------

def test_matched_route_visible_to_action(g):
    body = ok(g, "GET", "/api/things/5")
    m = body.get("matchedRoute")
    assert isinstance(m, dict), body
    assert m.get("method") == "get", m
    assert m.get("path") == "/things/:id", m
    assert m.get("action") == "routeGet", m
    assert body.get("route") == "things/5", "the path under /api/: %r" % body

    body = ok(g, "DELETE", "/api/things/5")
    m = body.get("matchedRoute")
    assert isinstance(m, dict), body
    assert m.get("method") == "all" and m.get("path") == "/things/:id", m
    assert m.get("action") == "routeAll", m


def test_connection_extension(g):
    body = ok(g, "GET", "/api/things/pic.png")
    assert body["extension"] == "png", body
    body = ok(g, "GET", "/api/things/5")
    assert body.get("extension") is None, body


# -- matchExtensionMimeType ----------------------------------------------------------------

def test_mime_type_from_extension_png(g):
    r = g.request("GET", "/api/files/pic.png?token=t")
    assert r.status == 200, r.body[:500]
    assert r.headers.get("Content-Type") == "image/png", dict(r.headers)
    assert r.body == PNG_BODY, r.body[:200]
    assert r.headers.get("Access-Control-Allow-Origin") == "*", dict(r.headers)


@pytest.mark.parametrize("name,ctype", [
    ("page.html", "text/html; charset=utf-8"),
    ("blob.zzzunknownext", "application/octet-stream"),
])
def test_mime_type_other_extensions(g, name, ctype):
    r = g.request("GET", "/api/files/%s?token=t" % name)
    assert r.status == 200, r.body[:500]
    assert r.headers.get("Content-Type") == ctype, dict(r.headers)
    assert r.body == PNG_BODY


def test_mime_type_for_action_name_with_extension(g):
    # /api/<action>.<ext> runs the action by name; the extension still picks the MIME type.
    r = g.request("GET", "/api/fileMime.png?token=t")
    assert r.status == 200, r.body[:500]
    assert r.headers.get("Content-Type") == "image/png", dict(r.headers)
    assert r.body == PNG_BODY


def test_mime_type_table_response_is_json(g):
    r = g.request("GET", "/api/files/data.json?token=t&mode=table")
    assert r.status == 200, r.body[:500]
    assert r.headers.get("Content-Type") == "application/json; charset=utf-8", dict(r.headers)
    body = r.json()
    assert body.get("kind") == "table" and body.get("token") == "t", body


def test_mime_type_missing_input_is_json_error(g):
    r = g.request("GET", "/api/files/pic.png")
    assert r.status == 422, (r.status, r.body[:500])
    assert r.headers.get("Content-Type") == "application/json; charset=utf-8", dict(r.headers)
    body = r.json()
    assert has_error(body, "token is a required parameter for this action"), body


def test_no_mime_type_without_the_flag(g):
    r = g.request("GET", "/api/things/pic.png")
    assert r.status == 200, r.body[:500]
    assert r.headers.get("Content-Type") == "application/json; charset=utf-8", dict(r.headers)
    assert r.json()["action"] == "routeGet"


# -- reload on SIGHUP -----------------------------------------------------------------------

def _wait_status(g, path, status, timeout=5.0):
    deadline = time.monotonic() + gw.bound(timeout)
    while True:
        r = g.request("GET", path)
        if r.status == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def _routes_text(routes):
    return "return " + gw.to_lua(routes) + "\n"


def test_routes_reloaded_on_sighup(make_gateway, tmp_path):
    routes = tmp_path / "hup_routes.lua"
    routes.write_text(_routes_text({"get": [{"path": "/old/:id", "action": "routeA"}]}))
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, ROUTING_ACTIONS],
                                "routes": str(routes)}})
    pid = g.pid
    status, body = g.get("/api/old/1")
    assert status == 200 and body["action"] == "routeA", body
    assert_not_found(g, "GET", "/api/new/1")

    routes.write_text(_routes_text({"get": [{"path": "/new/:id", "action": "routeB"}]}))
    g.signal(signal.SIGHUP)
    r = _wait_status(g, "/api/new/1", 200)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.json()["action"] == "routeB"
    assert g.alive() and g.pid == pid
    assert_not_found(g, "GET", "/api/old/1")

    # A broken routes file (unknown action, then a syntax error) keeps the old set.
    for broken in (_routes_text({"get": [{"path": "/broken/:id", "action": "noSuchAction"}]}),
                   "return { get = { { path = '/broken/:id', action = 'routeA' }\n"):
        offset = g.log_size()
        routes.write_text(broken)
        g.signal(signal.SIGHUP)
        logged = g.wait_for_log(r"hup_routes\.lua", timeout=gw.bound(5), since=offset)
        assert logged, "a failed reload must log why, naming the routes file\n" + \
            g.log_since(offset)
        assert g.alive()
        r = g.request("GET", "/api/new/1")
        assert r.status == 200 and r.json()["action"] == "routeB", (r.status, r.body[:500])
        assert_not_found(g, "GET", "/api/broken/1")
    g.assert_serving()


NEW_ACTION = """return {
  name = "addedOnReload",
  description = "added with its route",
  run = function(api, data, next) data.response.id = data.params.id next() end,
}
"""


def test_sighup_adds_action_and_its_route_together(make_gateway, tmp_path):
    routes = tmp_path / "hup_routes.lua"
    routes.write_text("return {}\n")
    actions = tmp_path / "hup_actions"
    actions.mkdir()
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, str(actions)],
                                "routes": str(routes)}})
    assert_not_found(g, "GET", "/api/added/7")
    (actions / "added.lua").write_text(NEW_ACTION)
    routes.write_text(_routes_text({"get": [{"path": "/added/:id", "action": "addedOnReload"}]}))
    g.signal(signal.SIGHUP)
    r = _wait_status(g, "/api/added/7", 200)
    assert r.status == 200, (r.status, r.body[:500])
    assert r.json()["id"] == "7"


# -- load errors ------------------------------------------------------------------------------

def _cli_config(tmp_path, redis_url, routes_text):
    routes = tmp_path / "bad_routes.lua"
    routes.write_text(routes_text)
    config = routing_config(tmp_path, redis_url, routes=str(routes))
    return gw.write_config(str(tmp_path / "gateway.lua"), config)


@pytest.mark.parametrize("mode", ["start", "check"])
def test_route_to_unknown_action_fails_startup(gateway_bin, redis_url, tmp_path, mode):
    path = _cli_config(tmp_path, redis_url,
                       _routes_text({"get": [{"path": "/x/:id", "action": "noSuchAction"}]}))
    res = gw.run_cli(["--config", path, "--port", "0"] + (["--check"] if mode == "check" else []),
                     timeout=gw.bound(5))
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert "bad_routes.lua" in out, "the error must name the routes file:\n" + out
    assert "listening" not in res.stdout


@pytest.mark.parametrize("text", [
    _routes_text({"get": [{"path": "/x/:id(a[)", "action": "routeA"}]}),  # bad regex
    "return 42\n",                                                          # not a table
    "return { get = { { path = '/x' \n",                                    # syntax error
    "return { get = 5 }\n",                                                 # list not a table
    "return { get = { 'notaroute' } }\n",                                   # entry not a table
    "return { get = { { action = 'routeA' } } }\n",                         # no path
], ids=["bad-regex", "not-a-table", "syntax-error", "list-not-a-table", "entry-not-a-table",
        "no-path"])
def test_broken_routes_file_fails_startup(gateway_bin, redis_url, tmp_path, text):
    path = _cli_config(tmp_path, redis_url, text)
    res = gw.run_cli(["--config", path, "--port", "0"], timeout=gw.bound(5))
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert "bad_routes.lua" in out, "the error must name the routes file:\n" + out
    assert "listening" not in res.stdout


def test_missing_routes_file_means_no_routes(make_gateway, tmp_path):
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, ROUTING_ACTIONS],
                                "routes": str(tmp_path / "absent_routes.lua")}})
    assert_not_found(g, "GET", "/api/two/a/b")
    assert ok(g, "GET", "/api/routeB")["action"] == "routeB"
    # Without the web route /things/:id, the handler of z_handler.lua answers.
    status, body = g.get("/api/things/1")
    assert status == 200 and body == {"handler": "retrieve", "pk": "1"}, body
