"""Redis-backed generic handlers (SPEC §6 generics, §9 resource keys; issue 5 "Generic
handlers"): every generic over WebSocket and HTTP, field validation (required, defaults,
formatter/validator, maxLength/minLength, wrong types, unknown fields ignored, non-object data),
page-number pagination, the empty list as [], the key layout in Redis, and data safety: a
create answered 201 survives a Redis restart and every object is in the index.

Fixtures: resource_actions/ (r1_items.lua .. r5_notes.lua). The module's gateway writes under a
prefix of its own on the session's redis-server; the restart test uses a private one."""

import json
import os
import socket
import threading
import time
import urllib.parse
import uuid

import pytest

import gateway as gw


HERE = os.path.dirname(os.path.abspath(__file__))
RESOURCES = os.path.join(HERE, "resource_actions")

# Every test here runs again on the sanitizer build (make test-asan).
pytestmark = pytest.mark.asan

REQUIRED = "This field is required."


# -- a raw Redis client (to look at the keys) ---------------------------------------------

class RawRedis:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        if u.scheme == "unix":
            self.addr = (socket.AF_UNIX, u.path)
        else:
            self.addr = (socket.AF_INET, (u.hostname, u.port or 6379))

    def __call__(self, *args):
        with socket.socket(self.addr[0], socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.addr[1])
            s.sendall(gw.resp_encode(*args))
            return gw.resp_read(s.makefile("rb"), text=True)


# -- the module's gateway ------------------------------------------------------------------

def resources_config(workdir, redis_url, prefix):
    config = gw.default_config(str(workdir), redis_url, actions=[RESOURCES])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["redis"]["prefix"] = prefix
    config["general"]["actionTimeout"] = 5000
    return config


def wait_ready(g, timeout=None):
    """Until a Redis-backed generic answers (the client connects after startup); until
    then it answers 503."""
    timeout = timeout or gw.bound(5)
    deadline = time.monotonic() + timeout
    while True:
        status, body = g.json("GET", "/api/empty/")
        if status == 200:
            return
        assert status == 503, (status, body)
        assert time.monotonic() < deadline, "Redis not ready\n" + g.describe()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ctx(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resgw")
    prefix = "itest:res:%s:" % uuid.uuid4().hex[:8]
    redis = RawRedis(redis_url)
    try:
        # Stopped at the end, checked for its exit status and a sanitizer report.
        with gw.serving(workdir, resources_config(workdir, redis_url, prefix)) as g:
            wait_ready(g)
            yield g, redis, prefix
    finally:
        keys = redis("KEYS", prefix + "*") or []
        if keys:
            redis("DEL", *keys)


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


def send(g, transport, action, route, data=None, timeout=5.0):
    msg = {"action": action, "route": route}
    if data is not None:
        msg["data"] = data
    return gw.exchange(g, transport, [msg], timeout)[0]


METHODS = {"create": "POST", "update": "PUT", "partial_update": "PATCH", "remove": "DELETE",
           "destroy": "DELETE", "retrieve": "GET", "list": "GET"}


def call(g, transport, action, route, data=None):
    """One generic over 'ws' or 'http' -> (status, data or None, errors)."""
    if transport == "http":
        r = g.request(METHODS[action], "/api/" + route, data)
        if r.status == 204:
            assert r.body == b"", r.body  # a 204 has no body (RFC 9110 §15.3.5)
            return 204, None, []
        body = r.json()
        if r.status >= 400:
            return r.status, None, body["errors"]
        return r.status, body, []
    env = send(g, transport, action, route, data)
    assert env["action"] == action and env["route"] == route, env
    if env["status"] >= 400:
        assert env["data"] is None, env
    return env["status"], env["data"], env["errors"]


TRANSPORTS = ["ws", "http"]


# -- every generic -------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crud_cycle(g, transport):
    status, obj, errors = call(g, transport, "create", "items/", {"title": "hello", "tags": ["a", 1]})
    assert status == 201 and errors == [], (status, obj, errors)
    pk = obj["id"]
    assert isinstance(pk, int) and pk >= 1
    assert obj == {"id": pk, "title": "hello", "content": "", "code": None, "tags": ["a", 1]}

    assert call(g, transport, "retrieve", "items/%d/" % pk) == (200, obj, [])

    status, upd, _ = call(g, transport, "update", "items/%d/" % pk, {"title": "new", "code": "abc"})
    assert status == 200
    # A full update: defaults apply again, omitted optional fields lose their value.
    assert upd == {"id": pk, "title": "new", "content": "", "code": "abc", "tags": None}

    status, part, _ = call(g, transport, "partial_update", "items/%d/" % pk, {"content": "body"})
    assert status == 200
    assert part == {"id": pk, "title": "new", "content": "body", "code": "abc", "tags": None}
    assert call(g, transport, "retrieve", "items/%d/" % pk)[1] == part

    status, listed, _ = call(g, transport, "list", "items/")
    assert status == 200 and isinstance(listed, list)
    assert part in listed
    ids = [o["id"] for o in listed]
    assert ids == sorted(ids)

    assert call(g, transport, "remove", "items/%d/" % pk) == (204, None, [])
    assert call(g, transport, "retrieve", "items/%d/" % pk) == (404, None, ["Not found."])
    assert call(g, transport, "remove", "items/%d/" % pk) == (404, None, ["Not found."])
    assert call(g, transport, "update", "items/%d/" % pk, {"title": "x"}) == (404, None, ["Not found."])
    assert call(g, transport, "partial_update", "items/%d/" % pk, {"title": "x"}) == (
        404, None, ["Not found."])
    assert pk not in [o["id"] for o in call(g, transport, "list", "items/")[1]]


def test_tcp_and_destroy_alias(g):
    status, obj, _ = call(g, "tcp", "create", "items/", {"title": "over tcp"})
    assert status == 201
    assert call(g, "tcp", "retrieve", "items/%d/" % obj["id"]) == (200, obj, [])
    assert call(g, "tcp", "destroy", "items/%d/" % obj["id"]) == (204, None, [])
    assert call(g, "tcp", "retrieve", "items/%d/" % obj["id"]) == (404, None, ["Not found."])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_not_found_pks(g, transport):
    for pk in ["999999999", "abc", "0x1", "-1"]:
        assert call(g, transport, "retrieve", "items/%s/" % pk) == (404, None, ["Not found."]), pk


def test_generic_not_enabled_is_405(g):
    env = send(g, "ws", "update", "notes/1/", {"body": "x"})
    assert env["status"] == 405 and env["errors"] == ['Action "update" not allowed.'], env
    status, body = g.json("DELETE", "/api/notes/1/")
    assert status == 405, body
    assert body == {"error": 'Action "remove" not allowed.',
                    "errors": ['Action "remove" not allowed.']}, body


def test_ids_increase_and_key_layout(g, redis, prefix):
    a = call(g, "ws", "create", "items/", {"title": "one", "content": {"nested": [1, 2]}})[1]
    b = call(g, "http", "create", "items/", {"title": "two"})[1]
    assert b["id"] > a["id"]
    key = prefix + "resource:item:obj:%d" % a["id"]
    assert redis("TYPE", key) == "hash"
    h = redis("HGETALL", key)
    stored = dict(zip(h[::2], h[1::2]))
    assert stored["id"] == str(a["id"])
    assert json.loads(stored["title"]) == "one"
    assert json.loads(stored["content"]) == {"nested": [1, 2]}
    assert "code" not in stored  # no value, no entry
    assert int(redis("GET", prefix + "resource:item:id")) == b["id"]  # the last id given
    assert redis("ZSCORE", prefix + "resource:item:index", a["id"]) == str(a["id"])
    call(g, "ws", "remove", "items/%d/" % a["id"])
    assert redis("EXISTS", key) == 0
    assert redis("ZSCORE", prefix + "resource:item:index", a["id"]) is None


# -- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_validation_errors(g, transport):
    assert call(g, transport, "create", "items/", {}) == (422, None, [{"title": [REQUIRED]}])
    assert call(g, transport, "create", "items/", {"title": ""}) == (422, None, [{"title": [REQUIRED]}])
    long = "x" * 256
    assert call(g, transport, "create", "items/", {"title": long}) == (
        422, None, [{"title": ["Ensure this field has no more than 255 characters."]}])
    # 255 characters that are more than 255 bytes still fit.
    assert call(g, transport, "create", "items/", {"title": "é" * 255})[0] == 201
    assert call(g, transport, "create", "items/", {"title": "ok", "code": "ab"}) == (
        422, None, [{"code": ["Ensure this field has at least 3 characters."]}])
    # Every failing field at once.
    status, _, errors = call(g, transport, "create", "items/", {"code": "abcdef"})
    assert status == 422
    assert errors == [{"code": ["Ensure this field has no more than 5 characters."], "title": [REQUIRED]}]


def test_wrong_types(g):
    for bad in [{"a": 1}, [1, 2], True]:
        status, _, errors = call(g, "ws", "create", "items/", {"title": bad})
        assert (status, errors) == (422, [{"title": ["Not a valid string."]}]), bad
    # A number is taken as its text (like DRF's CharField).
    status, obj, _ = call(g, "ws", "create", "items/", {"title": 42, "code": 12345})
    assert status == 201 and obj["title"] == 42 and obj["code"] == 12345
    # Fields without length rules take any JSON value.
    status, obj, _ = call(g, "ws", "create", "items/", {"title": "t", "tags": {"k": [True, None]}})
    assert status == 201 and obj["tags"] == {"k": [True, None]}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_fields_ignored(g, transport, redis, prefix):
    status, obj, _ = call(g, transport, "create", "items/",
                          {"title": "t", "evil": "x", "id": 99999999, "pk": "5"})
    assert status == 201, obj
    assert "evil" not in obj and obj["id"] != 99999999
    h = redis("HGETALL", prefix + "resource:item:obj:%d" % obj["id"])
    assert sorted(h[::2]) == ["content", "id", "title"]


def test_non_object_data(g):
    for data in [[1, 2], "text", 5]:
        env = send(g, "ws", "create", "items/", data)
        assert env["status"] == 400 and env["errors"] == ["data must be a JSON object"], env
    for body in ["[1, 2]", '"text"', "5"]:
        r = g.request("POST", "/api/items/", body.encode(), {"Content-Type": "application/json"})
        assert r.status == 400, (body, r.status, r.body)
        assert r.json()["errors"] == ["data must be a JSON object"]
    status, body = g.json("POST", "/api/items/", b"{nope", {"Content-Type": "application/json"})
    assert status == 400, body
    assert body == {"error": "invalid JSON body", "errors": ["invalid JSON body"]}, body


def test_update_validation(g):
    pk = call(g, "ws", "create", "items/", {"title": "t", "content": "c", "code": "abc"})[1]["id"]
    route = "items/%d/" % pk
    # update validates every field: title is required.
    assert call(g, "ws", "update", route, {"content": "x"}) == (422, None, [{"title": [REQUIRED]}])
    # partial_update only the given ones: no required, no defaults.
    status, obj, _ = call(g, "ws", "partial_update", route, {"code": "wxyz"})
    assert status == 200 and obj["title"] == "t" and obj["content"] == "c" and obj["code"] == "wxyz"
    assert call(g, "ws", "partial_update", route, {"code": "toolong"}) == (
        422, None, [{"code": ["Ensure this field has no more than 5 characters."]}])
    assert call(g, "ws", "partial_update", route, {"title": ""}) == (422, None, [{"title": [REQUIRED]}])
    assert call(g, "ws", "partial_update", route, {"title": {"x": 1}}) == (
        422, None, [{"title": ["Not a valid string."]}])
    # A failed write changes nothing.
    assert call(g, "ws", "retrieve", route)[1] == obj
    status, obj, _ = call(g, "ws", "partial_update", route, {})
    assert status == 200 and obj["code"] == "wxyz"


def test_formatter_and_validator(g):
    status, obj, _ = call(g, "ws", "create", "pages/", {"title": "shout"})
    assert status == 201 and obj["title"] == "SHOUT"
    assert call(g, "ws", "create", "pages/", {"title": "bad"}) == (422, None, [{"title": ["no bad titles"]}])
    call(g, "ws", "destroy", "pages/%d/" % obj["id"])


# -- lists and pagination ------------------------------------------------------------------

def test_empty_list_is_an_array(g):
    env = send(g, "ws", "list", "empty/")
    assert env["status"] == 200 and env["data"] == [], env
    r = g.request("GET", "/api/empty/")
    assert r.status == 200 and r.body.strip() == b"[]", r.body
    env = send(g, "ws", "list", "emptypages/")
    assert env["data"] == {"count": 0, "next": None, "previous": None, "results": []}, env
    status, body = g.json("GET", "/api/emptypages/")
    assert status == 200, body
    assert body == {"count": 0, "next": None, "previous": None, "results": []}, body
    env = send(g, "ws", "list", "emptypages/?page=2")
    assert env["status"] == 404 and env["errors"] == ["Invalid page."], env


def test_pagination(g, redis, prefix):
    keys = redis("KEYS", prefix + "resource:page:*") or []
    if keys:
        redis("DEL", *keys)
    ids = [call(g, "ws", "create", "pages/", {"title": "p%d" % i})[1]["id"] for i in range(5)]
    env = send(g, "ws", "list", "pages/")
    assert env["status"] == 200, env
    assert env["data"]["count"] == 5
    assert env["data"]["previous"] is None and env["data"]["next"] == "pages/?page=2"
    assert [o["id"] for o in env["data"]["results"]] == ids[:2]
    assert env["data"]["results"][0] == {"id": ids[0], "title": "P0"}

    env = send(g, "ws", "list", "pages/?page=2")
    assert env["route"] == "pages/?page=2"
    assert env["data"]["previous"] == "pages/?page=1" and env["data"]["next"] == "pages/?page=3"
    assert [o["id"] for o in env["data"]["results"]] == ids[2:4]

    # The page from data (params) as well as from the route's query string.
    env = send(g, "ws", "list", "pages/", {"page": 3})
    assert env["data"]["next"] is None and env["data"]["previous"] == "pages/?page=2"
    assert [o["id"] for o in env["data"]["results"]] == ids[4:]
    assert send(g, "ws", "list", "pages/?page=last")["data"]["results"][0]["id"] == ids[4]

    for bad in ["4", "0", "-1", "x", "1.5"]:
        env = send(g, "ws", "list", "pages/?page=" + bad)
        assert env["status"] == 404 and env["errors"] == ["Invalid page."], (bad, env)

    status, body = g.json("GET", "/api/pages/?page=2")
    assert status == 200 and body["count"] == 5 and body["next"] == "pages/?page=3", body
    assert body["previous"] == "pages/?page=1"
    status, body = g.json("GET", "/api/pages/?page=9")
    assert status == 404 and body["errors"] == ["Invalid page."], body

    # Removing shifts the pages; the index follows.
    call(g, "http", "destroy", "pages/%d/" % ids[0])
    env = send(g, "ws", "list", "pages/")
    assert env["data"]["count"] == 4 and [o["id"] for o in env["data"]["results"]] == ids[1:3]


# -- bad resource definitions are load errors ------------------------------------------------

@pytest.mark.parametrize("resource,message", [
    (None, "needs a 'resource' table"),
    ('{ name = "a b", fields = {} }', "resource.name must be"),
    ('{ name = "x", fields = { t = { maxLength = "10" } } }', "maxLength must be a non-negative integer"),
    ('{ name = "x", fields = { id = {} } }', 'field name "id" is reserved'),
    ('{ name = "x", fields = {}, pageSize = 0 }', "pageSize must be a positive integer"),
    ('{ name = "x", fields = { t = { validator = "nope" } } }', 'unknown validator "nope"'),
])
def test_bad_resource_is_a_load_error(gateway_bin, redis_url, tmp_path, resource, message):
    folder = tmp_path / "actions"
    folder.mkdir()
    text = "return { routes = { [[^x/$]] }, generics = { 'list' }"
    if resource:
        text += ", resource = " + resource
    (folder / "bad.lua").write_text(text + " }\n")
    config = gw.default_config(str(tmp_path), redis_url, actions=[str(folder)])
    res = gw.run_cli(["--config", gw.write_config(str(tmp_path / "c.lua"), config), "--check"],
                     timeout=gw.bound(10))
    text = res.stdout + res.stderr
    assert res.returncode == 1, text  # SPEC §1: --check exits 1 when something fails to load
    assert "bad.lua" in text and message in text, text


# -- data safety ---------------------------------------------------------------------------

WORKERS = 6
MAX_CREATES = 2000  # per worker: a bound on the loop, far above what the test needs


def test_acknowledged_creates_survive_redis_restart(gateway_bin, make_gateway, private_redis,
                                                    tmp_path):
    """Creates run from many clients while Redis is SIGKILLed and restarted (appendonly,
    fsync always): every one answered 201 is retrievable after, and the index and the objects
    agree (no object missing from the index, no index entry without its object)."""
    r = private_redis(fsync_always=True)
    prefix = "itest:rr:"
    g = make_gateway(config=resources_config(tmp_path, r.url(), prefix))
    wait_ready(g)
    acked, refused, failures = {}, [], []
    lock, stop = threading.Lock(), threading.Event()
    deadline = time.monotonic() + gw.bound(30)

    def worker(n):
        # While Redis is down the gateway answers 503: a response, not an exception. Any
        # exception (a reset, a timeout, a body that is not JSON) is a failure of the test.
        try:
            for i in range(1, MAX_CREATES + 1):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                body = "w%d-%d" % (n, i)
                status, obj = g.json("POST", "/api/notes/", {"body": body}, timeout=5)
                with lock:
                    if status == 201:
                        acked[obj["id"]] = body
                    else:
                        refused.append((status, obj))
        except Exception as e:
            with lock:
                failures.append("worker %d: %r" % (n, e))
            stop.set()

    def wait_until(what, predicate, timeout):
        """Wait (bounded) for the load to reach a state; the workers and the gateway must
        be alive all along."""
        end = time.monotonic() + timeout
        while True:
            with lock:
                done = predicate()
            if done:
                return
            assert not failures, failures
            assert g.alive(), "the gateway died under load\n" + g.describe()
            assert time.monotonic() < end, "%s: not within %.0f s (acked %d, refused %d)" % (
                what, timeout, len(acked), len(refused))
            time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    try:
        for t in threads:
            t.start()
        wait_until("creates before the kill", lambda: len(acked) >= 20, gw.bound(10))
        r.kill()
        wait_until("503s during the outage", lambda: len(refused) >= WORKERS, gw.bound(10))
        r.start()
        with lock:
            acked_before_restart = len(acked)
        wait_until("creates after the restart",
                   lambda: len(acked) >= acked_before_restart + 20, gw.bound(10))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads), "a worker is still running"
    assert not failures, failures
    assert g.alive(), g.describe()
    # The outage happened mid-load, and it is answered 503 `redis unavailable`, nothing else.
    assert refused and all(status == 503 and gw.error_text(obj) == "redis unavailable"
                           for status, obj in refused), refused[:5]
    for pk, body in acked.items():
        status, obj = g.json("GET", "/api/notes/%d/" % pk)
        assert status == 200 and obj == {"id": pk, "body": body}, (pk, status, obj)
    objects = {int(k.rsplit(b":", 1)[1]) for k in r.command("KEYS", prefix + "resource:note:obj:*")}
    index = {int(m) for m in r.command("ZRANGE", prefix + "resource:note:index", 0, -1)}
    assert objects == index
    assert set(acked) <= objects
    status, listed = g.json("GET", "/api/notes/")
    assert status == 200, listed
    assert [o["id"] for o in listed] == sorted(index)
    assert int(r.command("GET", prefix + "resource:note:id")) >= max(index)
