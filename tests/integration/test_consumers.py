"""Consumers (issue 15; docs/routing.md "Consumers"): WebSocket URL patterns mapped to
consumers with URL kwargs, messages without a route served by the consumer, child handlers
by name with kwargs merged under the route's groups, the parent's permissions before
routing, the handshake's 404/403 and `connect`, a Bearer session on the upgrade, groups,
and the default consumer and TCP unchanged.

Fixtures: consumer_actions/ (items and kw handlers, the consumers c_*.lua, plain actions)."""

import asyncio
import json
import os
import socket
import struct
import uuid

import pytest

import gateway as gw


HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = os.path.join(HERE, "consumer_actions")

pytestmark = pytest.mark.asan

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def g(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("consumers")
    config = gw.default_config(str(workdir), redis_url, actions=[ACTIONS])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["redis"]["prefix"] = "itest:cons:%s:" % uuid.uuid4().hex[:8]
    config["general"]["actionTimeout"] = 5000
    with gw.serving(workdir, config) as g:
        wait_redis(g)
        yield g


def wait_redis(g):
    async def go():
        for _ in range(100):
            answers = await talk(g, "/ws/create/", [{"action": "create", "data": {"title": "warmup"}}])
            if answers[0]["status"] == 201:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("Redis not ready\n" + g.describe())
    asyncio.run(go())


async def talk(g, path, messages, headers=None):
    """Each message in turn on one connection at `path`; the answers in order."""
    kw = {"extra_headers": headers} if headers else {}
    async with g.ws_connect(path, **kw) as ws:
        out = []
        for m in messages:
            await ws.send(json.dumps(m))
            out.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
        return out


def run(g, path, *messages, headers=None):
    return asyncio.run(talk(g, path, list(messages), headers))


def handshake_status(g, path, headers=None):
    """The HTTP status a WebSocket handshake at `path` is refused with (101 when accepted)."""
    import websockets

    async def go():
        kw = {"extra_headers": headers} if headers else {}
        try:
            async with g.ws_connect(path, **kw):
                return 101
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    return asyncio.run(go())


def ws_frame(message):
    """One masked text frame (a client's) carrying `message` as JSON (under 126 bytes)."""
    payload = json.dumps(message).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(f):
    """The next server frame from file `f`: a text frame under 64 KiB, parsed."""
    b0, b1 = f.read(2)
    assert b0 == 0x81, hex(b0)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    return json.loads(f.read(n))


def create(g, title="t", room=None):
    data = {"title": title}
    if room is not None:
        data["room"] = room
    [answer] = run(g, "/ws/create/", {"action": "create", "data": data})
    assert answer["status"] == 201, answer
    return answer["data"]


def login(g, user):
    status, body = g.json("POST", "/api/login", {"user": user})
    assert status == 200, body
    return body["token"]


# -- the three examples ----------------------------------------------------------------------

def test_create_on_a_consumer_without_a_route(g):
    [answer] = run(g, "/ws/create/", {"action": "create", "data": {"title": "hello"}})
    assert answer["errors"] == [] and answer["status"] == 201
    assert answer["action"] == "create" and answer["route"] == ""
    assert answer["data"]["title"] == "hello" and isinstance(answer["data"]["id"], int)
    assert list(answer) == ["errors", "data", "action", "route", "status"]


def test_retrieve_through_a_child_route(g):
    obj = create(g, "child")
    other = create(g, "other")
    # The consumer's URL names `other`; the route names `obj`: the route wins.
    [answer] = run(g, "/ws/items/%d/" % other["id"], {"action": "retrieve", "route": "items/%d/" % obj["id"]})
    assert answer["status"] == 200, answer
    assert answer["data"] == obj
    assert answer["route"] == "items/%d/" % obj["id"]


def test_custom_action_returning_body_and_status_with_the_routes_pk(g):
    [answer] = run(g, "/ws/items/5/", {"action": "echo", "route": "kw/7/", "data": {"note": "n"}})
    assert answer["status"] == 200, answer
    # Undeclared message params are scrubbed, as for any action; the route's pk is kept.
    assert answer["data"] == {"pk": "7"}


# -- URL kwargs ---------------------------------------------------------------------------------

def test_generics_without_a_route_use_the_url_kwargs(g):
    obj = create(g, "mine")
    path = "/ws/items/%d/" % obj["id"]
    # A pk in the message does not override the URL's.
    retrieve, update, again = run(g, path,
                                  {"action": "retrieve", "data": {"pk": 999999}},
                                  {"action": "update", "data": {"title": "renamed"}},
                                  {"action": "retrieve"})
    assert retrieve["status"] == 200 and retrieve["data"] == obj, retrieve
    assert update["status"] == 200 and update["data"]["title"] == "renamed", update
    assert update["data"]["id"] == obj["id"]
    assert again["data"]["title"] == "renamed"
    [missing] = run(g, "/ws/items/987654321/", {"action": "retrieve"})
    assert missing["status"] == 404 and missing["errors"] == ["Not found."], missing


def test_url_kwargs_reach_consumer_child_and_named_actions(g):
    own, child, named = run(g, "/ws/items/42/",
                            {"action": "whoami"},
                            {"action": "echo", "route": "kw/lobby/x/"},
                            {"action": "named", "data": {"note": "hi"}})
    assert own["data"] == {"pk": "42", "kwargs": {"pk": "42"}, "path": "/ws/items/42/"}, own
    # kwargs merged under the route's groups: pk from the URL, room_id from the route.
    assert child["data"] == {"pk": "42", "room_id": "lobby"}, child
    assert named["status"] == 200 and named["data"] == {"pk": "42", "note": "hi"}, named
    [room] = run(g, "/ws/rooms/lobby/", {"action": "echo", "route": "kw/3/"})
    assert room["data"] == {"pk": "3", "room_id": "lobby"}, room
    [wins] = run(g, "/ws/rooms/lobby/", {"action": "echo", "route": "kw/hall/x/"})
    assert wins["data"] == {"room_id": "hall"}, wins
    # A query string on the route cannot override the URL's kwargs; a named group can.
    [query] = run(g, "/ws/items/42/", {"action": "echo", "route": "kw/lobby/x/?pk=9"})
    assert query["data"] == {"pk": "42", "room_id": "lobby"}, query
    [fallback] = run(g, "/ws/items/42/", {"action": "whoami", "route": "nowhere/?pk=9"})
    assert fallback["data"]["pk"] == "42", fallback


def test_messages_without_a_route_order(g):
    own, named, unknown = run(g, "/ws/items/1/",
                              {"action": "whoami"}, {"action": "named"}, {"action": "nope"})
    assert own["status"] == 200 and named["status"] == 200
    assert unknown["status"] == 405 and unknown["errors"] == ['Action "nope" not allowed.'], unknown
    assert unknown["action"] == "nope" and unknown["route"] == ""


def test_an_unmatched_route_falls_back_to_the_consumers_actions(g):
    fallback, missing, not_allowed = run(g, "/ws/items/8/",
                                         {"action": "whoami", "route": "nowhere/"},
                                         {"action": "named", "route": "nowhere/"},
                                         {"action": "nope", "route": "items/8/"})
    assert fallback["status"] == 200 and fallback["data"]["pk"] == "8", fallback
    assert fallback["route"] == "nowhere/"
    assert missing["status"] == 404 and missing["errors"] == ['route "nowhere/" not found'], missing
    assert not_allowed["status"] == 405 and not_allowed["errors"] == ['Action "nope" not allowed.']


def test_only_the_consumers_handlers_are_its_routes(g):
    # "open/" is a handler of the private consumer only.
    [answer] = run(g, "/ws/items/1/", {"action": "ping", "route": "open/"})
    assert answer["status"] == 404, answer


# -- permissions ---------------------------------------------------------------------------------

def test_the_parent_refuses_before_routing(g):
    anonymous = run(g, "/ws/private/",
                    {"action": "ping", "route": "open/"},
                    {"action": "ping", "route": "no/such/route/"},
                    {"action": "hello"})
    assert [a["status"] for a in anonymous] == [401, 401, 401], anonymous
    assert anonymous[0]["errors"] == ["Authentication credentials were not provided."]
    bob = login(g, "bob")
    authenticated = run(g, "/ws/private/",
                        {"action": "authenticate", "data": {"token": bob}},
                        {"action": "ping", "route": "open/"})
    assert authenticated[0]["status"] == 200
    # The child allows anyone; the parent does not allow bob.
    assert authenticated[1]["status"] == 403, authenticated
    assert authenticated[1]["errors"] == ["You do not have permission to perform this action."]
    staff = login(g, "staff")
    ping, hello = run(g, "/ws/private/", {"action": "ping", "route": "open/"}, {"action": "hello"},
                      headers={"Authorization": "Bearer " + staff})
    assert ping["status"] == 200 and ping["data"] == {"pong": True}, ping
    assert hello["data"] == {"user": {"name": "staff"}}, hello


# -- the handshake ------------------------------------------------------------------------------

def test_handshake_404_when_no_consumer_takes_the_path(g):
    assert handshake_status(g, "/ws/nowhere/") == 404
    assert handshake_status(g, "/ws/items/abc/") == 404
    assert handshake_status(g, "/ws/items/1/") == 101


def test_connect_can_refuse(g):
    assert handshake_status(g, "/ws/rooms/forbidden/") == 403
    assert handshake_status(g, "/ws/rooms/vip/") == 401
    assert handshake_status(g, "/ws/rooms/boom/") == 500
    assert g.wait_for_log(r"consumer connect failed.*connect exploded")
    token = login(g, "alice")
    assert handshake_status(g, "/ws/rooms/vip/", headers={"Authorization": "Bearer " + token}) == 101
    assert g.alive()


def test_connect_sees_the_connection_it_keeps(g):
    async def go():
        async with g.ws_connect("/ws/rooms/lounge/") as ws:
            await ws.send(json.dumps({"action": "say", "data": {"message": "hi"}, "request_id": 1}))
            got = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in (1, 2)]
            return [m for m in got if m.get("request_id") == 1][0]
    answer = asyncio.run(go())
    assert answer["data"] == {"delivered": 1, "joined": "lounge"}, answer


def test_frames_sent_behind_the_upgrade_request_arrive(g):
    """The client writes the upgrade request and two frames at once, while the gateway's
    decision (a Bearer session looked up in Redis) is still pending."""
    token = login(g, "staff")
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = ("GET /ws/private/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (key, token)).encode()
    frames = b"".join(ws_frame({"action": "hello", "request_id": i}) for i in (1, 2))
    with socket.create_connection((g.host, g.port), timeout=TIMEOUT) as s:
        s.sendall(request + frames)
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 101"), "no 101"
        while f.readline() not in (b"\r\n", b""):
            pass
        answers = [read_frame(f) for _ in (1, 2)]
    assert sorted(a["request_id"] for a in answers) == [1, 2]
    assert all(a["data"] == {"user": {"name": "staff"}} for a in answers), answers


def test_a_bad_handshake_on_a_consumers_path_is_400(g):
    with socket.create_connection((g.host, g.port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /ws/items/1/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"Sec-WebSocket-Version" in head
    assert g.alive()


# -- groups ----------------------------------------------------------------------------------------

def test_group_send_reaches_the_room_only(g):
    async def recv(ws):
        return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))

    async def go():
        async with g.ws_connect("/ws/rooms/lobby/") as a, g.ws_connect("/ws/rooms/lobby/") as b, \
                g.ws_connect("/ws/rooms/kitchen/") as c:
            await a.send(json.dumps({"action": "say", "data": {"message": {"text": "hi"}}, "request_id": 1}))
            got_a = [await recv(a) for _ in (1, 2)]
            got_b = await recv(b)
            # From the kitchen, by URL kwargs and by path. The kitchen's first frame is its
            # own answer: the lobby's event did not reach it.
            await c.send(json.dumps({"action": "shout", "data": {"to": "lobby"}}))
            shout = await recv(c)
            heard = [await recv(x) for x in (a, b)]
            await c.send(json.dumps({"action": "tellPath", "data": {"path": "/ws/rooms/lobby/"}}))
            told = await recv(c)
            plain = [await asyncio.wait_for(x.recv(), TIMEOUT) for x in (a, b)]
            return got_a, got_b, shout, heard, told, plain
    got_a, got_b, shout, heard, told, plain = asyncio.run(go())
    event = {"event": "say", "room": "lobby", "message": {"text": "hi"}}
    answer = [m for m in got_a if "request_id" in m][0]
    assert answer["data"]["delivered"] == 2, answer
    assert [m for m in got_a if "request_id" not in m] == [event]
    assert got_b == event
    assert shout["action"] == "shout", shout
    assert shout["data"]["delivered"] == 2 and len(shout["data"]["members"]) == 2, shout
    assert heard == [{"event": "shout", "from": "kitchen"}] * 2
    assert told["data"]["delivered"] == 2 and plain == ["plain text"] * 2


def test_a_closed_connection_leaves_its_group(g):
    async def go():
        async with g.ws_connect("/ws/rooms/cellar/"):
            pass
        async with g.ws_connect("/ws/rooms/attic/") as a:
            await a.send(json.dumps({"action": "shout", "data": {"to": "cellar"}}))
            return json.loads(await asyncio.wait_for(a.recv(), TIMEOUT))
    answer = asyncio.run(go())
    assert answer["data"]["delivered"] == 0 and answer["data"]["members"] == [], answer


# -- the default consumer and TCP ------------------------------------------------------------

def test_the_default_consumer_is_unchanged(g):
    obj = create(g, "global")
    retrieve, named, unknown, whoami = run(g, "/ws",
                                           {"action": "retrieve", "route": "items/%d/" % obj["id"]},
                                           {"action": "named", "data": {"pk": "p"}},
                                           {"action": "nope"},
                                           {"action": "whoami"})
    assert retrieve["status"] == 200 and retrieve["data"] == obj
    assert named["data"] == {"pk": "p"}
    assert unknown["status"] == 404 and unknown["errors"] == ["unknown action or invalid apiVersion"]
    # A consumer's own actions are its own.
    assert whoami["status"] == 404


def test_a_bearer_session_on_the_default_consumers_upgrade(g):
    token = login(g, "carol")
    [me] = run(g, "/ws", {"action": "me"}, headers={"Authorization": "Bearer " + token})
    assert me["data"] == {"user": {"name": "carol"}}, me
    [anonymous] = run(g, "/ws", {"action": "me"}, headers={"Authorization": "Bearer nope"})
    assert anonymous["status"] == 200 and anonymous["data"] == {"user": None}, anonymous


def test_tcp_keeps_the_global_behaviour(g):
    obj = create(g, "tcp")
    retrieve, whoami = gw.exchange(g, "tcp", [{"action": "retrieve", "route": "items/%d/" % obj["id"]},
                                              {"action": "whoami"}])
    assert retrieve["status"] == 200 and retrieve["data"] == obj
    assert whoami["status"] == 404


def test_http_upgrade_elsewhere_is_plain_http(g):
    status, headers, body = g.request("GET", "/api/named?note=x",
                                      headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                               "Sec-WebSocket-Version": "13"})
    assert status == 200 and json.loads(body)["note"] == "x"


# -- reload ------------------------------------------------------------------------------------

CONSUMER = '''return {
  consumer = [[^/ws/%(name)s/(?P<n>\\d+)/$]],
  actions = { which = function(api, data) return { name = "%(name)s", version = %(version)d, n = data.params.n }, 200 end },
}
'''


def test_reload_reaches_open_connections(make_gateway, tmp_path):
    import signal
    import time
    actions = tmp_path / "reload_actions"
    actions.mkdir()
    (actions / "one.lua").write_text(CONSUMER % {"name": "one", "version": 1})
    g = make_gateway({"paths": {"actions": [str(actions)]}})

    async def go():
        async with g.ws_connect("/ws/one/4/") as ws:
            async def which():
                await ws.send(json.dumps({"action": "which"}))
                return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            before = await which()
            (actions / "one.lua").write_text(CONSUMER % {"name": "one", "version": 2})
            (actions / "two.lua").write_text(CONSUMER % {"name": "two", "version": 1})
            offset = g.log_size()
            g.signal(signal.SIGHUP)
            assert g.wait_for_log(r"reload", timeout=gw.bound(5), since=offset), g.describe()
            changed = await which()
            (actions / "one.lua").unlink()
            offset = g.log_size()
            g.signal(signal.SIGHUP)
            assert g.wait_for_log(r"reload", timeout=gw.bound(5), since=offset), g.describe()
            gone = await which()
            return before, changed, gone
    before, changed, gone = asyncio.run(go())
    assert before["data"] == {"name": "one", "version": 1, "n": "4"}, before
    assert changed["data"] == {"name": "one", "version": 2, "n": "4"}, changed
    assert gone["status"] == 404 and gone["errors"] == ['consumer for "/ws/one/4/" not found'], gone
    [answer] = run(g, "/ws/two/9/", {"action": "which"})
    assert answer["data"] == {"name": "two", "version": 1, "n": "9"}
    assert handshake_status(g, "/ws/one/4/") == 404


# -- generics on a consumer: lookupField from the URL, field rules, object permissions ----------

def test_only_the_author_may_change_a_note_looked_up_by_its_slug(g):
    alice = {"Authorization": "Bearer " + login(g, "alice")}
    bob = {"Authorization": "Bearer " + login(g, "bob")}
    slug = "note-" + uuid.uuid4().hex[:8]
    [created] = run(g, "/ws/notes/", {"action": "create", "data": {"slug": slug, "body": "hi", "author": "mallory"}},
                    headers=alice)
    assert created["status"] == 201, created
    assert created["data"]["author"] == "alice" and created["data"]["votes"] == 0, created
    path = "/ws/notes/%s/" % slug
    denied, seen = run(g, path, {"action": "partial_update", "data": {"body": "bob was here"}},
                       {"action": "retrieve"}, headers=bob)
    assert denied["status"] == 403, denied
    assert denied["errors"] == ["You do not have permission to perform this action."]
    assert seen["status"] == 403, seen
    [anonymous] = run(g, path, {"action": "retrieve"})
    assert anonymous["status"] == 403, anonymous
    blank, typed, changed, kept = run(g, path,
                                      {"action": "partial_update", "data": {"body": ""}},
                                      {"action": "partial_update", "data": {"votes": "many"}},
                                      {"action": "partial_update", "data": {"votes": "3", "author": "bob"}},
                                      {"action": "retrieve"}, headers=alice)
    assert blank["status"] == 422 and blank["errors"] == [{"body": ["This field may not be blank."]}], blank
    assert typed["status"] == 422 and typed["errors"] == [{"votes": ["A valid integer is required."]}], typed
    assert changed["status"] == 200 and changed["data"]["votes"] == 3, changed
    assert kept["data"] == {"id": created["data"]["id"], "slug": slug, "body": "hi", "votes": 3, "author": "alice"}, kept
    removed, gone = run(g, path, {"action": "remove"}, {"action": "retrieve"}, headers=alice)
    assert removed["status"] == 204 and removed["data"] is None, removed
    assert gone["status"] == 404 and gone["errors"] == ["Not found."], gone


def test_a_connect_that_takes_too_long_is_504(make_gateway, tmp_path):
    actions = tmp_path / "slow_actions"
    actions.mkdir()
    (actions / "slow.lua").write_text('''return {
  consumer = [[^/ws/slow/$]],
  connect = function(connection) api.sleep(2000) end,
}
''')
    g = make_gateway({"paths": {"actions": [str(actions)]}, "general": {"actionTimeout": 300}})
    assert handshake_status(g, "/ws/slow/") == 504
    assert g.alive()
