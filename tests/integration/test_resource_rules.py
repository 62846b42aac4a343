"""Field rules, object permissions and lookupField of the Redis-backed generics (issue 15,
SPEC §6): `blank`, `type`, `choices` and `readOnly` with Django REST Framework's messages,
over HTTP handler routes and WebSocket messages; `api.permissions.addObject` with a
handler's `objectPermissions` (owner 200, non-owner 403 and the object unchanged, 404
before 403 before 422); the check-then-write window closed by the write scripts (a change
between the read and the write starts over, then 409); `lookupField` by slug and by an
integer field; load errors for bad rules and unknown object permissions.

Fixtures: rule_actions/ (articles, posts, pages, pagesbyid, numbered, racy) with the example
actions (login) for users: Bearer tokens over HTTP, `authenticate` over WebSocket."""

import os
import re
import time
import uuid

import pytest

import gateway as gw
from test_resources import RawRedis

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "rule_actions")

pytestmark = pytest.mark.asan

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
INTEGER = "A valid integer is required."
NUMBER = "A valid number is required."
BOOLEAN = "Must be a valid boolean."
STRING = "Not a valid string."
DENIED = "You do not have permission to perform this action."
NOT_FOUND = "Not found."
CHANGED = "The object changed while this request ran; try again."
TRANSPORTS = ["ws", "http"]


def rules_config(workdir, redis_url, prefix):
    config = gw.default_config(str(workdir), redis_url, actions=[gw.EXAMPLE_ACTIONS, RULES])
    config["redis"]["prefix"] = prefix
    config["general"]["actionTimeout"] = 5000
    return config


@pytest.fixture(scope="module")
def ctx(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rulegw")
    prefix = "itest:rules:%s:" % uuid.uuid4().hex[:8]
    redis = RawRedis(redis_url)
    try:
        with gw.serving(workdir, rules_config(workdir, redis_url, prefix)) as g:
            wait_ready(g)
            yield g, redis, prefix
    finally:
        keys = redis("KEYS", prefix + "*") or []
        if keys:
            redis("DEL", *keys)


def wait_ready(g, path="/api/articles/"):
    """Until a Redis-backed generic answers (503 until the client has connected)."""
    deadline = time.monotonic() + gw.bound(5)
    while True:
        status, body = g.json("GET", path)
        if status != 503:
            return
        assert status == 503, (status, body)
        assert time.monotonic() < deadline, "Redis not ready\n" + g.describe()
        time.sleep(0.05)


@pytest.fixture
def g(ctx):
    assert ctx[0].alive(), "the module's gateway died\n" + ctx[0].describe()
    return ctx[0]


@pytest.fixture
def redis(ctx):
    return ctx[1]


@pytest.fixture
def prefix(ctx):
    return ctx[2]


METHODS = {"create": "POST", "update": "PUT", "partial_update": "PATCH", "remove": "DELETE",
           "retrieve": "GET", "list": "GET"}


def login(g, user):
    status, body = g.json("POST", "/api/login", {"user": user, "password": "secret"})
    assert status == 200, body
    return body["token"]


def call(g, transport, action, route, data=None, token=None):
    """One generic over 'ws' or 'http' as the user of 'token' (or anonymous) ->
    (status, data or None, errors)."""
    if transport == "http":
        headers = {"Authorization": "Bearer " + token} if token else None
        r = g.request(METHODS[action], "/api/" + route, data, headers=headers)
        if r.status == 204:
            assert r.body == b"", r.body
            return 204, None, []
        body = r.json()
        if r.status >= 400:
            return r.status, None, body["errors"]
        return r.status, body, []
    msgs = []
    if token:
        msgs.append({"action": "authenticate", "data": {"token": token}})
    msg = {"action": action, "route": route}
    if data is not None:
        msg["data"] = data
    msgs.append(msg)
    answers = gw.exchange(g, "ws", msgs)
    if token:
        assert answers[0]["status"] == 200, answers[0]
    env = answers[-1]
    assert env["action"] == action and env["route"] == route, env
    if env["status"] >= 400:
        assert env["data"] is None, env
    return env["status"], env["data"], env["errors"]


def create(g, transport, route, data, token=None):
    status, obj, errors = call(g, transport, "create", route, data, token)
    assert status == 201, (status, errors)
    return obj


def field_error(field, *messages):
    return [{field: list(messages)}]


# -- blank -----------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blank_refuses_empty_and_whitespace(g, transport):
    for title in ["", "   ", "\t\n "]:
        assert call(g, transport, "create", "articles/", {"title": title}) == \
            (422, None, field_error("title", BLANK)), repr(title)
    # Missing is still "required"; a null too (it counts as missing).
    assert call(g, transport, "create", "articles/", {}) == (422, None, field_error("title", REQUIRED))
    assert call(g, transport, "create", "articles/", {"title": None}) == \
        (422, None, field_error("title", REQUIRED))
    # A field without blank = false takes "" as today (missing: no default here, kept as "").
    obj = create(g, transport, "articles/", {"title": "t", "note": ""})
    assert obj["note"] == "" and obj["status"] == "draft", obj
    # The check runs again after the formatters: trim makes "  " blank, " x " is "x".
    assert call(g, transport, "create", "articles/", {"title": "t", "shout": "  "}) == \
        (422, None, field_error("shout", BLANK))
    assert create(g, transport, "articles/", {"title": "t", "shout": " x "})["shout"] == "x"
    # partial_update checks the given fields only, blank included.
    route = "articles/%d/" % obj["id"]
    assert call(g, transport, "partial_update", route, {"title": " "}) == \
        (422, None, field_error("title", BLANK))
    assert call(g, transport, "partial_update", route, {"note": "n"})[0] == 200


def test_blank_http_body_shape(g):
    status, body = g.json("POST", "/api/articles/", {"title": ""})
    assert status == 422, body
    assert body["error"] == BLANK and body["errors"] == field_error("title", BLANK), body


# -- type ------------------------------------------------------------------------------------

COERCED = [
    ("count", 5, 5), ("count", "5", 5), ("count", "-3", -3), ("count", " 7 ", 7),
    ("count", "5.0", 5), ("count", 5.0, 5), ("count", "+4", 4),
    ("ratio", 1.5, 1.5), ("ratio", "1.5", 1.5), ("ratio", "2", 2), ("ratio", -3, -3),
    ("ratio", ".5", 0.5), ("ratio", "1e3", 1000),
    ("flag", True, True), ("flag", False, False), ("flag", 1, True), ("flag", 0, False),
    ("flag", "true", True), ("flag", "True", True), ("flag", "TRUE", True), ("flag", "1", True),
    ("flag", "yes", True), ("flag", "on", True), ("flag", "t", True), ("flag", "Y", True),
    ("flag", "false", False), ("flag", "False", False), ("flag", "0", False),
    ("flag", "no", False), ("flag", "OFF", False), ("flag", "f", False), ("flag", "n", False),
    ("label", "abc", "abc"), ("label", 12, "12"), ("label", 1.5, "1.5"),
]

INVALID = [
    ("count", 5.5, INTEGER), ("count", "abc", INTEGER), ("count", "5.5", INTEGER),
    ("count", True, INTEGER), ("count", [1], INTEGER), ("count", {"a": 1}, INTEGER),
    ("count", "", INTEGER), ("count", "0x10", INTEGER), ("count", "9" * 30, INTEGER),
    ("ratio", "abc", NUMBER), ("ratio", "0x10", NUMBER), ("ratio", "nan", NUMBER),
    ("ratio", "inf", NUMBER), ("ratio", True, NUMBER), ("ratio", [], NUMBER), ("ratio", "", NUMBER),
    ("flag", "maybe", BOOLEAN), ("flag", "tRuE", BOOLEAN), ("flag", 2, BOOLEAN),
    ("flag", [], BOOLEAN), ("flag", "", BOOLEAN),
    ("label", True, STRING), ("label", [1], STRING), ("label", {"a": 1}, STRING),
    ("label", 123456, "Ensure this field has no more than 5 characters."),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_types_coerce_and_store_typed_values(g, transport):
    for field, given, stored in COERCED:
        obj = create(g, transport, "articles/", {"title": "t", field: given})
        assert obj[field] == stored and type(obj[field]) == type(stored), (field, given, obj)
        # Stored typed: a retrieve gives the same.
        status, again, _ = call(g, transport, "retrieve", "articles/%d/" % obj["id"])
        assert status == 200 and again[field] == stored, (field, given, again)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_types_refuse_with_drf_messages(g, transport):
    for field, given, message in INVALID:
        assert call(g, transport, "create", "articles/", {"title": "t", field: given}) == \
            (422, None, field_error(field, message)), (field, given)


def test_type_on_update_and_partial_update(g):
    obj = create(g, "ws", "articles/", {"title": "t", "count": 1})
    route = "articles/%d/" % obj["id"]
    assert call(g, "ws", "partial_update", route, {"count": "x"}) == (422, None, field_error("count", INTEGER))
    assert call(g, "http", "update", route, {"title": "t", "count": "9"})[1]["count"] == 9
    assert call(g, "ws", "partial_update", route, {"count": "10"})[1]["count"] == 10


# -- choices ---------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_choices(g, transport):
    assert call(g, transport, "create", "articles/", {"title": "t", "status": "archived"}) == \
        (422, None, field_error("status", '"archived" is not a valid choice.'))
    assert call(g, transport, "create", "articles/", {"title": "t", "status": 5}) == \
        (422, None, field_error("status", '"5" is not a valid choice.'))
    assert call(g, transport, "create", "articles/", {"title": "t", "status": "Draft"}) == \
        (422, None, field_error("status", '"Draft" is not a valid choice.'))
    assert create(g, transport, "articles/", {"title": "t", "status": "published"})["status"] == "published"
    # type first, then choices: "2" is the integer 2, a choice; 7 is not; "x" is no integer.
    assert create(g, transport, "articles/", {"title": "t", "level": "2"})["level"] == 2
    assert call(g, transport, "create", "articles/", {"title": "t", "level": 7}) == \
        (422, None, field_error("level", '"7" is not a valid choice.'))
    assert call(g, transport, "create", "articles/", {"title": "t", "level": "x"}) == \
        (422, None, field_error("level", INTEGER))


def test_every_failing_field_is_reported(g):
    status, _, errors = call(g, "ws", "create", "articles/",
                             {"title": "", "count": "x", "status": "z", "flag": "maybe"})
    assert status == 422
    assert errors == [{"title": [BLANK], "count": [INTEGER], "status": ['"z" is not a valid choice.'],
                       "flag": [BOOLEAN]}], errors
    status, body = g.json("POST", "/api/articles/", {"count": "x"})
    assert status == 422 and body["errors"] == [{"title": [REQUIRED], "count": [INTEGER]}], body


# -- readOnly --------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_only_fields(g, transport):
    alice = login(g, "alice")
    obj = create(g, transport, "articles/", {"title": "t", "author": "mallory", "stamp": "x"}, alice)
    assert obj["author"] == "alice" and obj["stamp"] is None, obj
    route = "articles/%d/" % obj["id"]
    # Neither a full update (which clears the omitted writable fields) nor a partial one
    # changes them; the default applies on create only.
    bob = login(g, "bob")
    status, upd, _ = call(g, transport, "update", route, {"title": "u", "author": "bob", "stamp": "y"}, bob)
    assert status == 200 and upd["author"] == "alice" and upd["stamp"] is None and upd["title"] == "u", upd
    status, upd, _ = call(g, transport, "partial_update", route, {"author": "bob"}, bob)
    assert status == 200 and upd["author"] == "alice", upd
    # Anonymous: the default function gives nil, so no author.
    assert create(g, transport, "articles/", {"title": "t", "author": "x"})["author"] is None


# -- object permissions ----------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_only_the_author_may_update(g, transport):
    alice, bob = login(g, "alice"), login(g, "bob")
    post = create(g, transport, "posts/", {"title": "mine", "author": "bob"}, alice)
    assert post["author"] == "alice", post
    route = "posts/%d/" % post["id"]

    # The owner: 200.
    status, upd, _ = call(g, transport, "partial_update", route, {"title": "still mine"}, alice)
    assert status == 200 and upd["title"] == "still mine", upd
    # Anyone else: 403 and the object unchanged.
    assert call(g, transport, "partial_update", route, {"title": "stolen"}, bob) == (403, None, [DENIED])
    assert call(g, transport, "update", route, {"title": "stolen"}, bob) == (403, None, [DENIED])
    assert call(g, transport, "retrieve", route, None, bob) == (403, None, [DENIED])
    assert call(g, transport, "retrieve", route) == (403, None, [DENIED])
    assert call(g, transport, "remove", route, None, bob) == (403, None, [DENIED])
    status, now, _ = call(g, transport, "retrieve", route, None, alice)
    assert status == 200 and now == {"id": post["id"], "title": "still mine", "frozen": None,
                                      "author": "alice"}, now
    # list and create are not object-checked.
    status, listed, _ = call(g, transport, "list", "posts/", None, bob)
    assert status == 200 and any(p["id"] == post["id"] for p in listed), listed
    # The owner removes: 204, then 404 for everyone.
    assert call(g, transport, "remove", route, None, alice) == (204, None, [])
    assert call(g, transport, "retrieve", route, None, alice) == (404, None, [NOT_FOUND])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_object_permission_order_404_403_422(g, transport):
    alice, bob = login(g, "alice"), login(g, "bob")
    post = create(g, transport, "posts/", {"title": "p"}, alice)
    route = "posts/%d/" % post["id"]
    # A missing object stays 404 for anyone.
    assert call(g, transport, "partial_update", "posts/999999/", {"title": ""}, bob) == \
        (404, None, [NOT_FOUND])
    # 403 comes before validation (DRF's get_object before is_valid) ...
    assert call(g, transport, "update", route, {}, bob) == (403, None, [DENIED])
    assert call(g, transport, "partial_update", route, {"title": ""}, bob) == (403, None, [DENIED])
    # ... and the owner gets the 422.
    assert call(g, transport, "update", route, {}, alice) == (422, None, field_error("title", REQUIRED))
    assert call(g, transport, "partial_update", route, {"title": ""}, alice) == \
        (422, None, field_error("title", BLANK))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_object_permission_reason_and_order(g, transport):
    alice, bob = login(g, "alice"), login(g, "bob")
    post = create(g, transport, "posts/", {"title": "p"}, alice)
    route = "posts/%d/" % post["id"]
    assert call(g, transport, "partial_update", route, {"frozen": "yes"}, alice)[0] == 200
    # notFrozen runs after isOwner, with its reason; the first denial wins.
    assert call(g, transport, "partial_update", route, {"title": "x"}, alice) == \
        (403, None, ["frozen posts cannot change"])
    assert call(g, transport, "partial_update", route, {"title": "x"}, bob) == (403, None, [DENIED])
    assert call(g, transport, "retrieve", route, None, alice) == (403, None, ["frozen posts cannot change"])


def test_check_then_write_starts_over(g, redis, prefix):
    """The permission changes the object (as a concurrent write would) between the read and
    the write: the write script sees it and the generic starts over; a change at every
    attempt gives 409 and nothing written."""
    obj = create(g, "ws", "racy/", {"title": "a", "meddle": 1})
    route = "racy/%d/" % obj["id"]
    status, upd, _ = call(g, "ws", "partial_update", route, {"title": "b"})
    assert status == 200 and upd == {"id": obj["id"], "title": "b", "meddle": 0}, upd

    obj = create(g, "http", "racy/", {"title": "a", "meddle": 7})
    route = "racy/%d/" % obj["id"]
    for transport in TRANSPORTS:
        assert call(g, transport, "update", route, {"title": "c"}) == (409, None, [CHANGED])
    key = prefix + "resource:racy:obj:%d" % obj["id"]
    assert redis("HGET", key, "title") == '"a"' and redis("HGET", key, "meddle") == "1", \
        redis("HGETALL", key)
    # remove too (3 changes: 409); then 1 change and a second attempt that goes through.
    redis("HSET", key, "meddle", "4")
    assert call(g, "ws", "remove", route) == (409, None, [CHANGED])
    assert redis("EXISTS", key) == 1
    assert call(g, "http", "remove", route) == (204, None, [])
    assert redis("EXISTS", key) == 0


# -- lookupField -----------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lookup_by_slug(g, transport):
    slug = "hello-" + transport + uuid.uuid4().hex[:6]
    page = create(g, transport, "pages/", {"slug": slug, "body": "b"})
    route = "pages/%s/" % slug
    assert call(g, transport, "retrieve", route) == (200, page, [])
    status, upd, _ = call(g, transport, "partial_update", route, {"body": "c"})
    assert status == 200 and upd == dict(page, body="c"), upd
    # A full update: the slug comes from the route (named groups win over data).
    status, upd, _ = call(g, transport, "update", route, {"slug": "ignored", "body": "d"})
    assert status == 200 and upd == dict(page, body="d"), upd
    # The same objects by id through another handler on the same resource (written
    # before or without any lookupField, the scan finds them all the same).
    byid = "pagesbyid/%d/" % page["id"]
    assert call(g, transport, "retrieve", byid)[1]["slug"] == slug
    moved = slug + "-moved"
    assert call(g, transport, "partial_update", byid, {"slug": moved})[0] == 200
    assert call(g, transport, "retrieve", route) == (404, None, [NOT_FOUND])
    assert call(g, transport, "retrieve", "pages/%s/" % moved)[1]["id"] == page["id"]
    assert call(g, transport, "remove", "pages/%s/" % moved) == (204, None, [])
    assert call(g, transport, "remove", "pages/%s/" % moved) == (404, None, [NOT_FOUND])
    assert call(g, transport, "retrieve", byid) == (404, None, [NOT_FOUND])


def test_lookup_http_get_is_retrieve_and_duplicates_give_the_first(g):
    slug = "dup-" + uuid.uuid4().hex[:6]
    first = create(g, "http", "pages/", {"slug": slug, "body": "1"})
    create(g, "http", "pages/", {"slug": slug, "body": "2"})
    # GET on a route with the lookupField's group is retrieve (not list).
    status, body = g.json("GET", "/api/pages/%s/" % slug)
    assert status == 200 and body == first, body
    status, body = g.json("GET", "/api/pages/")
    assert status == 200 and isinstance(body, list), body
    assert g.json("GET", "/api/pages/no-such-page/") == (404, {"error": NOT_FOUND, "errors": [NOT_FOUND]})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lookup_by_integer_field(g, transport):
    base = 1000 if transport == "ws" else 2000
    five = create(g, transport, "numbered/", {"number": base + 5, "name": "five"})
    seven = create(g, transport, "numbered/", {"number": str(base + 7), "name": "seven"})
    assert seven["number"] == base + 7
    assert call(g, transport, "retrieve", "numbered/%d/" % (base + 5)) == (200, five, [])
    # The param is compared as an integer: "07"-style and "5.0" forms find it too.
    assert call(g, transport, "retrieve", "numbered/0%d/" % (base + 7))[1]["id"] == seven["id"]
    assert call(g, transport, "retrieve", "numbered/%d.0/" % (base + 5))[1]["id"] == five["id"]
    assert call(g, transport, "retrieve", "numbered/abc/") == (404, None, [NOT_FOUND])
    assert call(g, transport, "retrieve", "numbered/%d/" % (base + 6)) == (404, None, [NOT_FOUND])
    status, upd, _ = call(g, transport, "partial_update", "numbered/%d/" % (base + 5), {"name": "V"})
    assert status == 200 and upd["name"] == "V" and upd["number"] == base + 5, upd
    assert call(g, transport, "remove", "numbered/%d/" % (base + 5)) == (204, None, [])
    assert call(g, transport, "retrieve", "numbered/%d/" % (base + 5)) == (404, None, [NOT_FOUND])


# -- load errors -----------------------------------------------------------------------------

BAD_FILES = [
    ('fields = { a = { type = "float" } }', r'resource "bad" field "a": unknown type "float"'),
    ('fields = { a = { choices = {} } }', r'resource "bad" field "a": choices must be a non-empty list'),
    ('fields = { a = { choices = "x" } }', r'resource "bad" field "a": choices must be a non-empty list'),
    ('fields = { a = { choices = { "x", {} } } }', r'resource "bad" field "a": choices must be strings'),
    ('fields = { a = { blank = "no" } }', r'resource "bad" field "a": blank must be a boolean'),
    ('fields = { a = { readOnly = 1 } }', r'resource "bad" field "a": readOnly must be a boolean'),
    ('fields = { a = { readOnly = true, required = true } }',
     r'resource "bad" field "a": a readOnly field cannot be required'),
    ('fields = { a = { readonly = true } }', r'resource "bad" field "a": unknown rule "readonly"'),
    ('fields = { a = { type = "integer", maxLength = 3 } }',
     r'resource "bad" field "a": maxLength and minLength apply to strings'),
    ('fields = { a = {} } }, lookupField = "nope", x = {',
     r'resource "bad": lookupField "nope" is not one of its fields'),
    ('fields = { a = {} } }, objectPermissions = "isOwner", x = {',
     r'resource "bad": objectPermissions must be a list of names'),
    ('fields = { a = {} } }, objectPermissions = { "ghost" }, x = {',
     r'unknown object permission "ghost" \(register it with api.permissions.addObject\)'),
]


@pytest.mark.parametrize("body,expected", BAD_FILES)
def test_bad_rules_are_load_errors(gateway_bin, redis_url, tmp_path, body, expected):
    actions = tmp_path / "bad_actions"
    actions.mkdir()
    (actions / "badres.lua").write_text(
        'return { routes = { [[^bad/$]] }, generics = { "create" },\n'
        '  resource = { name = "bad", %s } }\n' % body)
    config = gw.write_config(str(tmp_path / "gateway.lua"),
                             gw.default_config(str(tmp_path), redis_url, actions=[str(actions)]))
    res = gw.run_cli(["--config", config, "--check"], timeout=5)
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    assert "badres.lua" in out and re.search(expected, out), out


def test_unknown_object_permission_stops_startup(gateway_bin, redis_url, tmp_path):
    actions = tmp_path / "bad_actions"
    actions.mkdir()
    # Registered in a later file than the handler: fine (checked once all files loaded) ...
    (actions / "a_handler.lua").write_text(
        'return { routes = { [[^x/$]] }, objectPermissions = { "late", "ghost" } }\n')
    (actions / "b_perm.lua").write_text(
        'api.permissions.addObject("late", function() return true end)\n'
        'return { name = "noop", description = "d", run = function() end }\n')
    config = gw.write_config(str(tmp_path / "gateway.lua"),
                             gw.default_config(str(tmp_path), redis_url, actions=[str(actions)]))
    res = gw.run_cli(["--config", config, "--port", "0"], timeout=5)
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1, out
    # ... "ghost" is not: the error names the file.
    assert re.search(r'a_handler\.lua: unknown object permission "ghost"', out), out
    assert "listening" not in res.stdout


def test_add_object_misuse_raises(gateway_bin, redis_url, tmp_path):
    actions = tmp_path / "bad_actions"
    actions.mkdir()
    (actions / "misuse.lua").write_text('api.permissions.addObject("x", 5)\nreturn {}\n')
    config = gw.write_config(str(tmp_path / "gateway.lua"),
                             gw.default_config(str(tmp_path), redis_url, actions=[str(actions)]))
    res = gw.run_cli(["--config", config, "--check"], timeout=5)
    out = res.stdout + "\n" + res.stderr
    assert res.returncode == 1 and "misuse.lua" in out and "api.permissions.addObject: x needs a function" in out, out


# -- the lookup index --------------------------------------------------------------------------

LEGACY = os.path.join(HERE, "rule_legacy")


def test_lookup_index_follows_writers_that_do_not_know_it(g, redis, prefix, redis_url, tmp_path):
    """Objects written by a gateway without the lookupField (before it existed, or another
    node) are found: its writes drop the index's "complete" mark and the next lookup
    rebuilds it with one scan."""
    config = gw.default_config(str(tmp_path), redis_url, actions=[LEGACY])
    config["redis"]["prefix"] = prefix
    with gw.serving(tmp_path, config) as old:
        wait_ready(old, "/api/legacy/0/")
        first = create(old, "http", "legacy/", {"slug": "one"})
        assert call(g, "http", "retrieve", "legacyslugs/one/")[1] == first
        marks = prefix + "resource:legacy:lookups"
        assert redis("HGET", marks, "slug") == "1"
        # The old gateway writes: a new object, a rename, a removal.
        second = create(old, "ws", "legacy/", {"slug": "two"})
        assert redis("HGET", marks, "slug") is None
        assert call(g, "ws", "retrieve", "legacyslugs/two/")[1] == second
        assert call(old, "http", "partial_update", "legacy/%d/" % first["id"], {"slug": "uno"})[0] == 200
        assert call(g, "http", "retrieve", "legacyslugs/one/") == (404, None, [NOT_FOUND])
        assert call(g, "http", "retrieve", "legacyslugs/uno/")[1]["id"] == first["id"]
        assert call(old, "ws", "remove", "legacy/%d/" % second["id"]) == (204, None, [])
        assert call(g, "ws", "retrieve", "legacyslugs/two/") == (404, None, [NOT_FOUND])


def test_lookup_index_drops_entries_the_object_no_longer_holds(g, redis, prefix):
    slug = "stale-" + uuid.uuid4().hex[:6]
    page = create(g, "ws", "pages/", {"slug": slug})
    assert call(g, "ws", "retrieve", "pages/%s/" % slug)[0] == 200
    # A write behind the gateway's back (redis-cli): the index still names the old value.
    key = prefix + "resource:page:obj:%d" % page["id"]
    redis("HSET", key, "slug", '"%s-new"' % slug)
    assert call(g, "ws", "retrieve", "pages/%s/" % slug) == (404, None, [NOT_FOUND])
    members = redis("ZRANGE", prefix + "resource:page:lookup:slug", 0, -1)
    assert not any(m.startswith('"%s"' % slug) for m in members), members
    # Dropping the mark has the index rebuilt (what such a writer should do).
    redis("HDEL", prefix + "resource:page:lookups", "slug")
    assert call(g, "ws", "retrieve", "pages/%s-new/" % slug)[1]["id"] == page["id"]
