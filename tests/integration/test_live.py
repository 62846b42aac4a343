"""Live resources (issue 17, djangochannelsrestframework's observers): "subscribe" in a
handler's or consumer's generics enables subscribe/unsubscribe on its routes; every write
of the resource (create, update, partial_update, remove, from HTTP, WebSocket, TCP or an
action announcing its own write) pushes an envelope without request_id to each subscriber,
once, with the object's instance route. Permissions and object permissions apply to
subscribing and, for object permissions, to every push. Subscriptions end with their
connection or with unsubscribe.

Fixtures: live_actions/. Single gateway first; the tests across gateways and workers (one
Redis, pub/sub through the cluster service) are at the end."""

import base64
import json
import os
import socket
import struct
import time
import uuid

import pytest

import gateway as gw


HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = os.path.join(HERE, "live_actions")

# Every test here runs again on the sanitizer build (make test-asan).
pytestmark = pytest.mark.asan

TIMEOUT = 5.0
# How long a test waits to be sure that nothing more arrives.
QUIET = 0.4


# -- a small blocking WebSocket client -----------------------------------------------------

class WS:
    """A text-frame WebSocket client on a plain socket, so a test can interleave HTTP, TCP
    and WebSocket calls in order. Every read is bounded."""

    def __init__(self, g, path="/ws", headers=None):
        self.sock = socket.create_connection((g.host, g.port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n%s\r\n" % (path, key, extra)).encode())
        self.buf = b""
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            chunk = gw.recv_by(self.sock, deadline)
            assert chunk, "no handshake answer (have %r)" % self.buf
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.closed = False

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            chunk = gw.recv_by(self.sock, deadline)
            if chunk is None:
                return False
            assert chunk, "the connection closed"
            self.buf += chunk
        return True

    def recv(self, timeout=TIMEOUT):
        """The next text message parsed, or None when none comes within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._need(2, deadline):
                return None
            b1, b2 = self.buf[0], self.buf[1]
            n, at = b2 & 0x7F, 2
            if n == 126:
                if not self._need(4, deadline):
                    return None
                n, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if not self._need(10, deadline):
                    return None
                n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            if not self._need(at + n, deadline):
                return None
            payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
            opcode = b1 & 0x0F
            if opcode == 1:
                return json.loads(payload.decode())
            assert opcode != 8, "the server closed the WebSocket: %r" % payload

    def call(self, obj, timeout=TIMEOUT):
        self.send(obj)
        got = self.recv(timeout)
        assert got is not None, "no answer to %r" % (obj,)
        return got

    def close(self):
        if not self.closed:
            self.closed = True
            self.sock.close()


class TCP:
    """The same interface on the TCP socket server."""

    def __init__(self, g):
        self.c = g.line_client(timeout=TIMEOUT)

    def send(self, obj):
        self.c.send_line(json.dumps(obj))

    def recv(self, timeout=TIMEOUT):
        try:
            return self.c.read_json(timeout)
        except AssertionError:
            if self.c.eof:
                raise
            return None

    def call(self, obj, timeout=TIMEOUT):
        self.send(obj)
        got = self.recv(timeout)
        assert got is not None, "no answer to %r" % (obj,)
        return got

    def close(self):
        self.c.close()


def client(g, kind, path="/ws"):
    return WS(g, path) if kind == "ws" else TCP(g)


def push(action, route, data, status):
    return {"errors": [], "data": data, "action": action, "route": route, "status": status}


def nothing_more(c, wait=QUIET):
    got = c.recv(wait)
    assert got is None, "unexpected message %r" % (got,)


# -- the module's gateway ------------------------------------------------------------------

def live_config(workdir, redis_url, prefix, workers=1):
    config = gw.default_config(str(workdir), redis_url, actions=[ACTIONS])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["redis"]["prefix"] = prefix
    config["general"]["actionTimeout"] = 5000
    config["general"]["maxSubscriptions"] = 8
    if workers > 1:
        config["workers"] = workers
    return config


def wait_ready(g):
    deadline = time.monotonic() + gw.bound(5)
    while True:
        status, body = g.json("GET", "/api/items/")
        if status == 200:
            return
        assert status == 503, (status, body)
        assert time.monotonic() < deadline, "Redis not ready\n" + g.describe()
        time.sleep(0.05)


# A write's message reaches the workers a moment after its answer (Redis pub/sub), so a
# create answered just before a client subscribes to that object could still be pushed to
# it. The tests make that deterministic: a "barrier" connection on each gateway watches
# the collection, and create() returns once every barrier got the create's push: the
# worker has then handled that message for all its subscribers.

def open_barrier(g):
    b = WS(g)
    assert b.call({"action": "subscribe", "route": "items/"})["status"] == 200
    g.barriers = getattr(g, "barriers", []) + [b]
    return b


def settle(g, obj_id):
    for b in getattr(g, "barriers", []):
        deadline = time.monotonic() + TIMEOUT
        while True:
            got = b.recv(max(0.01, deadline - time.monotonic()))
            assert got is not None, "the barrier saw no create of %d" % obj_id
            if got["action"] == "create" and got["data"]["id"] == obj_id:
                break


def close_barriers(g):
    for b in getattr(g, "barriers", []):
        b.close()
    g.barriers = []


@pytest.fixture(scope="module")
def g(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("livegw")
    prefix = "itest:live:%s:" % uuid.uuid4().hex[:8]
    with gw.serving(workdir, live_config(workdir, redis_url, prefix)) as gateway:
        wait_ready(gateway)
        open_barrier(gateway)
        try:
            yield gateway
        finally:
            close_barriers(gateway)


def create(g, title="t", note=None, settled=None):
    """POST an item on g; returns once the barriers of `settled` (default: g) saw it."""
    body = {"title": title}
    if note is not None:
        body["note"] = note
    status, obj = g.json("POST", "/api/items/", body)
    assert status == 201, obj
    for other in settled if settled is not None else [g]:
        settle(other, obj["id"])
    return obj


# -- subscribing ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ws", "tcp"])
def test_subscribe_instance_and_writes_from_every_transport(g, kind):
    obj = create(g, "first")
    pk = obj["id"]
    route = "items/%d/" % pk
    sub = client(g, kind)
    writer_ws, writer_tcp = WS(g), TCP(g)
    try:
        got = sub.call({"action": "subscribe", "route": route, "request_id": 7})
        assert got == {"errors": [], "data": {"subscribed": True, "route": route, "id": pk},
                       "action": "subscribe", "route": route, "status": 200, "request_id": 7}, got

        # HTTP PATCH
        status, body = g.json("PATCH", "/api/" + route, {"note": "by http"})
        assert status == 200, body
        want = dict(obj, note="by http")
        assert sub.recv() == push("partial_update", route, want, 200)

        # WebSocket update
        ans = writer_ws.call({"action": "update", "route": route, "data": {"title": "ws"}})
        assert ans["status"] == 200, ans
        want = {"id": pk, "title": "ws", "note": ""}
        assert sub.recv() == push("update", route, want, 200)

        # TCP partial_update
        ans = writer_tcp.call({"action": "partial_update", "route": route, "data": {"note": "tcp"}})
        assert ans["status"] == 200, ans
        want = {"id": pk, "title": "ws", "note": "tcp"}
        assert sub.recv() == push("partial_update", route, want, 200)

        # Another object's write does not reach an instance subscriber.
        other = create(g, "other")
        g.json("PATCH", "/api/items/%d/" % other["id"], {"note": "x"})
        nothing_more(sub)

        # remove pushes null, status 204
        r = g.request("DELETE", "/api/" + route)
        assert r.status == 204
        assert sub.recv() == push("remove", route, None, 204)
        nothing_more(sub)
    finally:
        sub.close()
        writer_ws.close()
        writer_tcp.close()


@pytest.mark.parametrize("kind", ["ws", "tcp"])
def test_subscribe_collection(g, kind):
    sub = client(g, kind)
    writer = WS(g)
    try:
        got = sub.call({"action": "subscribe", "route": "items/"})
        assert got == {"errors": [], "data": {"subscribed": True, "route": "items/"},
                       "action": "subscribe", "route": "items/", "status": 200}, got
        # create over WebSocket
        ans = writer.call({"action": "create", "route": "items/", "data": {"title": "c1"}})
        assert ans["status"] == 201, ans
        obj = ans["data"]
        route = "items/%d/" % obj["id"]
        assert sub.recv() == push("create", route, obj, 201)
        # create over TCP, over HTTP
        tcp = TCP(g)
        try:
            obj2 = tcp.call({"action": "create", "route": "items/", "data": {"title": "c2"}})["data"]
        finally:
            tcp.close()
        assert sub.recv() == push("create", "items/%d/" % obj2["id"], obj2, 201)
        obj3 = create(g, "c3")
        assert sub.recv() == push("create", "items/%d/" % obj3["id"], obj3, 201)
        # update (PUT) and remove of any object
        status, body = g.json("PUT", "/api/items/%d/" % obj2["id"], {"title": "c2b"})
        assert status == 200
        assert sub.recv() == push("update", "items/%d/" % obj2["id"], body, 200)
        ans = writer.call({"action": "destroy", "route": route})
        assert ans["status"] == 204
        assert sub.recv() == push("remove", route, None, 204)
        nothing_more(sub)
    finally:
        sub.close()
        writer.close()


def test_push_carries_the_object_as_answered(g):
    sub = WS(g)
    try:
        assert sub.call({"action": "subscribe", "route": "items/"})["status"] == 200
        note = {"empty": [], "obj": {}, "list": [1, "two", None, {"x": []}], "u": "caf\u00e9 \u2603"}
        status, obj = g.json("POST", "/api/items/", {"title": "shapes", "note": note})
        assert status == 201, obj
        assert sub.recv() == push("create", "items/%d/" % obj["id"], obj, 201)
    finally:
        sub.close()


def test_instance_and_collection_deliver_once(g):
    obj = create(g, "both")
    route = "items/%d/" % obj["id"]
    sub = WS(g)
    try:
        assert sub.call({"action": "subscribe", "route": route})["status"] == 200
        assert sub.call({"action": "subscribe", "route": "items/"})["status"] == 200
        # subscribing twice to the same thing is one subscription
        assert sub.call({"action": "subscribe", "route": route})["status"] == 200
        g.json("PATCH", "/api/" + route, {"note": "once"})
        assert sub.recv() == push("partial_update", route, dict(obj, note="once"), 200)
        nothing_more(sub)
    finally:
        sub.close()


def test_subscribe_missing_instance_is_404(g):
    sub = WS(g)
    try:
        got = sub.call({"action": "subscribe", "route": "items/999999/"})
        assert got["status"] == 404 and got["errors"] == ["Not found."], got
        got = sub.call({"action": "subscribe", "route": "items/abc/"})
        assert got["status"] == 404, got  # the pattern does not take it: route not found
        # the missing id is not watched: creating ids does not reach this client
        create(g, "after")
        nothing_more(sub)
    finally:
        sub.close()


def test_subscribe_over_http_is_not_routed(g):
    # HTTP maps methods to generics; there is no method for subscribe.
    status, body = g.json("POST", "/api/items/?action=subscribe", {"title": "x"})
    assert status == 201, body  # a plain create: subscribe is not reachable over HTTP
    status, body = g.json("GET", "/api/subscribe")
    assert status == 404, body


def test_unsubscribe(g):
    obj = create(g, "unsub")
    route = "items/%d/" % obj["id"]
    sub = TCP(g)
    try:
        assert sub.call({"action": "subscribe", "route": route})["status"] == 200
        assert sub.call({"action": "subscribe", "route": "items/"})["status"] == 200
        got = sub.call({"action": "unsubscribe", "route": route})
        assert got == {"errors": [], "data": {"subscribed": False, "route": route},
                       "action": "unsubscribe", "route": route, "status": 200}, got
        # still on the collection
        g.json("PATCH", "/api/" + route, {"note": "a"})
        assert sub.recv()["data"]["note"] == "a"
        assert sub.call({"action": "unsubscribe", "route": "items/"})["status"] == 200
        g.json("PATCH", "/api/" + route, {"note": "b"})
        nothing_more(sub)
        # unsubscribing what is not subscribed: 200 as well
        got = sub.call({"action": "unsubscribe", "route": "items/999999/"})
        assert got["status"] == 200 and got["data"] == {"subscribed": False, "route": "items/999999/"}
    finally:
        sub.close()


def test_max_subscriptions(g):
    sub = WS(g)
    try:
        ids = [create(g, "m%d" % i)["id"] for i in range(9)]
        for pk in ids[:8]:
            assert sub.call({"action": "subscribe", "route": "items/%d/" % pk})["status"] == 200
        got = sub.call({"action": "subscribe", "route": "items/%d/" % ids[8]})
        assert got["status"] == 429, got
        assert got["errors"] == ["too many subscriptions on this connection "
                                 "(general.maxSubscriptions is 8)"], got
        # the same one again is not a new one; one freed makes room
        assert sub.call({"action": "subscribe", "route": "items/%d/" % ids[0]})["status"] == 200
        assert sub.call({"action": "unsubscribe", "route": "items/%d/" % ids[0]})["status"] == 200
        assert sub.call({"action": "subscribe", "route": "items/%d/" % ids[8]})["status"] == 200
    finally:
        sub.close()


def test_close_cleans_up(g):
    obj = create(g, "closing")
    route = "items/%d/" % obj["id"]
    subs = [WS(g) for _ in range(3)] + [TCP(g)]
    for s in subs:
        assert s.call({"action": "subscribe", "route": route})["status"] == 200
        assert s.call({"action": "subscribe", "route": "items/"})["status"] == 200
    for s in subs:
        s.close()
    time.sleep(0.2)
    since = g.log_size()
    for i in range(3):
        status, _ = g.json("PATCH", "/api/" + route, {"note": "n%d" % i})
        assert status == 200
    create(g, "after close")
    time.sleep(QUIET)
    log = g.log_since(since)
    assert " error " not in log and "failed" not in log, log
    assert g.alive(), g.describe()
    status, body = g.json("GET", "/api/" + route)
    assert status == 200 and body["note"] == "n2", body


# -- permissions ---------------------------------------------------------------------------

def test_permissions_refuse_subscribing(g):
    anon, alice, bob = WS(g), WS(g), TCP(g)
    try:
        # handler permissions: 401 before anything
        got = anon.call({"action": "subscribe", "route": "private/"})
        assert got["status"] == 401, got
        assert alice.call({"action": "liveLogin", "data": {"name": "alice"}})["status"] == 200
        assert bob.call({"action": "liveLogin", "data": {"name": "bob"}})["status"] == 200
        # alice watches the collection first (so her create's push has come before she
        # subscribes to the object: see the barrier above)
        assert alice.call({"action": "subscribe", "route": "private/"})["status"] == 200
        alice.send({"action": "create", "route": "private/", "request_id": 1,
                    "data": {"title": "secret", "owner": "alice"}})
        got = [alice.recv(), alice.recv()]
        answer = [m for m in got if m.get("request_id") == 1][0]
        mine = answer["data"]
        route = "private/%d/" % mine["id"]
        assert push("create", route, mine, 201) in got, got
        # object permissions on an instance: 403 for bob, 200 for alice
        got = bob.call({"action": "subscribe", "route": route})
        assert got["status"] == 403 and got["errors"] == [
            "You do not have permission to perform this action."], got
        assert alice.call({"action": "subscribe", "route": route})["status"] == 200
        # bob may watch the collection (as list is not object-checked), but pushes of
        # objects he may not see do not reach him
        assert bob.call({"action": "subscribe", "route": "private/"})["status"] == 200
        alice.send({"action": "partial_update", "route": route, "data": {"title": "s2"},
                    "request_id": 2})
        # alice: her answer and one push (instance and collection: once), in either order
        got = [alice.recv(), alice.recv()]
        assert push("partial_update", route, dict(mine, title="s2"), 200) in got, got
        assert [m.get("request_id") for m in got].count(2) == 1, got
        nothing_more(alice)
        nothing_more(bob)
        # an object bob owns reaches him through the collection
        his = bob.call({"action": "create", "route": "private/",
                        "data": {"title": "bob's", "owner": "bob"}})
        assert his["status"] == 201
        pushed = bob.recv()
        assert pushed == push("create", "private/%d/" % his["data"]["id"], his["data"], 201), pushed
        # the owner changes: alice's instance subscription no longer gets pushes (her own
        # answer carries its request_id; a push has none)
        got = alice.call({"action": "partial_update", "route": route, "data": {"owner": "carol"},
                          "request_id": 1})
        assert got["status"] == 200 and got["request_id"] == 1, got
        nothing_more(alice)
        nothing_more(bob)
    finally:
        anon.close()
        alice.close()
        bob.close()


# -- lookupField and consumers -------------------------------------------------------------

def test_lookup_field_routes(g):
    sub = WS(g)
    try:
        slug = "s-" + uuid.uuid4().hex[:6]
        assert sub.call({"action": "subscribe", "route": "slugs/"})["status"] == 200
        status, obj = g.json("POST", "/api/slugs/", {"slug": slug, "body": "b"})
        assert status == 201, obj
        # the collection's push names the object by its lookupField
        assert sub.recv() == push("create", "slugs/%s/" % slug, obj, 201)
        got = sub.call({"action": "subscribe", "route": "slugs/%s/" % slug})
        assert got["status"] == 200 and got["data"]["route"] == "slugs/%s/" % slug, got
        g.json("PATCH", "/api/slugs/%s/" % slug, {"body": "c"})
        assert sub.recv() == push("partial_update", "slugs/%s/" % slug, dict(obj, body="c"), 200)
        r = g.request("DELETE", "/api/slugs/%s/" % slug)
        assert r.status == 204
        assert sub.recv() == push("remove", "slugs/%s/" % slug, None, 204)
        nothing_more(sub)
    finally:
        sub.close()


def test_consumer_generics_subscribe(g):
    obj = create(g, "consumed")
    pk = obj["id"]
    mine = WS(g, "/ws/item/%d/" % pk)
    every = WS(g, "/ws/allitems/")
    try:
        got = mine.call({"action": "subscribe"})
        assert got["status"] == 200 and got["data"] == {
            "subscribed": True, "id": pk, "route": "/ws/item/%d/" % pk}, got
        got = every.call({"action": "subscribe"})
        assert got["status"] == 200, got
        # a consumer's child handler subscribes by route as well
        assert every.call({"action": "subscribe", "route": "items/%d/" % pk})["status"] == 200
        g.json("PATCH", "/api/items/%d/" % pk, {"note": "c"})
        want = dict(obj, note="c")
        assert mine.recv() == push("partial_update", "/ws/item/%d/" % pk, want, 200)
        # once on `every`, with the child's instance route (its instance subscription)
        assert every.recv() == push("partial_update", "items/%d/" % pk, want, 200)
        nothing_more(every)
        # another item reaches the collection consumer only; its own subscribe has no
        # instance route of its own, so the push names the collection's ("")
        other = create(g, "other")
        got = every.recv()
        assert got == push("create", "", other, 201), got
        nothing_more(mine)
        # a consumer for an item that does not exist: 404
        gone = WS(g, "/ws/item/999999/")
        try:
            assert gone.call({"action": "subscribe"})["status"] == 404
        finally:
            gone.close()
    finally:
        mine.close()
        every.close()


# -- writes outside the generics -----------------------------------------------------------

def test_notify_from_an_action(g):
    obj = create(g, "touched")
    route = "items/%d/" % obj["id"]
    sub = WS(g)
    try:
        assert sub.call({"action": "subscribe", "route": route})["status"] == 200
        status, body = g.json("POST", "/api/liveTouch", {"id": str(obj["id"]), "note": "by hand"})
        assert status == 200 and body["announced"] is True, body
        assert sub.recv() == push("partial_update", route, dict(obj, note="by hand"), 200)
    finally:
        sub.close()


def test_subscribe_without_resource_is_a_load_error(gateway_bin, redis_url, tmp_path):
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "bad.lua").write_text(
        'return { routes = { [[^x/$]] }, generics = { "subscribe" } }\n')
    config = gw.default_config(str(tmp_path), redis_url, actions=[str(actions)])
    cfg = tmp_path / "gateway.lua"
    gw.write_config(str(cfg), config)
    r = gw.run_cli(["--config", str(cfg), "--check"])
    assert r.returncode == 1, r
    assert "bad.lua" in r.stderr + r.stdout and "resource" in r.stderr + r.stdout, r


# -- across gateways and workers (one Redis; the cluster service's pub/sub) ----------------

@pytest.fixture
def three(gateway_bin, redis_url, tmp_path):
    """Gateways A, B and C on their own ports, sharing one Redis and prefix."""
    prefix = "itest:live3:%s:" % uuid.uuid4().hex[:8]
    started = []
    try:
        for name in "abc":
            workdir = tmp_path / name
            workdir.mkdir()
            g = gw.Gateway(str(workdir), live_config(workdir, redis_url, prefix)).start()
            started.append(g)
            wait_ready(g)
        for g in started[1:]:
            open_barrier(g)
        yield started
    finally:
        problems = []
        for g in started:
            close_barriers(g)
            g.stop()
            problems += g.teardown_problems()
        assert not problems, problems


def test_patch_on_a_pushes_to_c(three):
    a, b, c = three
    obj = create(a, "spread", settled=[b, c])
    route = "items/%d/" % obj["id"]
    on_c, on_b = WS(c), TCP(b)
    try:
        assert on_c.call({"action": "subscribe", "route": route})["status"] == 200
        assert on_b.call({"action": "subscribe", "route": "items/"})["status"] == 200
        status, body = a.json("PATCH", "/api/" + route, {"note": "from a"})
        assert status == 200, body
        want = push("partial_update", route, dict(obj, note="from a"), 200)
        assert on_c.recv() == want
        assert on_b.recv() == want
        # a create on C reaches the collection subscriber on B, not the instance one on C
        other = create(c, "on c", settled=[b, c])
        assert on_b.recv() == push("create", "items/%d/" % other["id"], other, 201)
        nothing_more(on_c)
        r = a.request("DELETE", "/api/" + route)
        assert r.status == 204
        assert on_c.recv() == push("remove", route, None, 204)
        assert on_b.recv() == push("remove", route, None, 204)
        nothing_more(on_c)
        nothing_more(on_b)
    finally:
        on_c.close()
        on_b.close()


def test_two_workers(gateway_bin, redis_url, tmp_path):
    prefix = "itest:live2w:%s:" % uuid.uuid4().hex[:8]
    with gw.serving(tmp_path, live_config(tmp_path, redis_url, prefix, workers=2)) as g:
        wait_ready(g)
        subs = []
        try:
            # WebSockets until both workers hold two (the kernel spreads them; the second
            # worker may start listening a moment after the first answers)
            per_pid = {}
            deadline = time.monotonic() + gw.bound(10)
            for _ in range(300):
                s = WS(g)
                pid = s.call({"action": "livePid"})["data"]["pid"]
                if len(per_pid.get(pid, [])) >= 2:
                    s.close()
                else:
                    per_pid.setdefault(pid, []).append(s)
                    subs.append(s)
                if len(per_pid) == 2 and len(subs) == 4 or time.monotonic() > deadline:
                    break
            pids = set(per_pid)
            assert len(pids) == 2, "every connection landed on one worker"
            # each watches the collection, sees the create, then the instance too
            for s in subs:
                assert s.call({"action": "subscribe", "route": "items/"})["status"] == 200
            status, obj = g.json("POST", "/api/items/", {"title": "workers"})
            assert status == 201
            route = "items/%d/" % obj["id"]
            for s in subs:
                assert s.recv() == push("create", route, obj, 201)
            for s in subs:
                assert s.call({"action": "subscribe", "route": route})["status"] == 200
            for i in range(4):
                status, _ = g.json("PATCH", "/api/" + route, {"note": "w%d" % i})
                assert status == 200
            for s in subs:
                notes = [s.recv()["data"]["note"] for _ in range(4)]
                assert notes == ["w0", "w1", "w2", "w3"], notes
                nothing_more(s, 0.05)
        finally:
            for s in subs:
                s.close()


def test_redis_restart_pushes_resume(gateway_bin, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    prefix = "itest:liver:"
    with gw.serving(tmp_path, live_config(tmp_path, redis.tcp_url(), prefix)) as g:
        wait_ready(g)
        open_barrier(g)
        try:
            obj = create(g, "restart")
            route = "items/%d/" % obj["id"]
            sub = WS(g)
            try:
                assert sub.call({"action": "subscribe", "route": route})["status"] == 200
                since = g.log_size()
                redis.stop()
                assert g.wait_for_log(r"redis subscriber: lost the connection",
                                      timeout=gw.bound(5), since=since)
                redis.start(keep_port=True)
                assert g.wait_for_log(r"subscribed again after an outage",
                                      timeout=gw.bound(10), since=since)
                # the subscription outlived the outage: the next write is pushed
                deadline = time.monotonic() + gw.bound(5)
                while True:
                    status, body = g.json("PATCH", "/api/" + route, {"note": "after"})
                    if status == 200:
                        break
                    assert status == 503 and time.monotonic() < deadline, (status, body)
                    time.sleep(0.05)
                assert sub.recv() == push("partial_update", route, dict(obj, note="after"), 200)
                nothing_more(sub)
            finally:
                sub.close()
        finally:
            close_barriers(g)
