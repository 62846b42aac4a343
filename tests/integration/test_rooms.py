"""Rooms (issue 17; docs/realtime.md "Rooms"): the roomAdd, roomLeave, roomView and say
messages over WebSocket and TCP, their errors (404, 403, 422, 429), room middleware that
refuses and rewrites, leaving on close, api.rooms.destroy and the rest of api.rooms from an
action; then several gateways on one Redis (multi-process: a say reaches members on every
node exactly once; a killed node's members leave roomView within the bound).

Fixtures: room_actions/ (roomsApi: api.rooms from an action; whoami), room_middleware/."""

import asyncio
import json
import os
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = os.path.join(HERE, "room_actions")
MIDDLEWARE = os.path.join(HERE, "room_middleware")

pytestmark = pytest.mark.asan

TIMEOUT = 5.0
QUIET = 0.3  # seconds a client waits to see that nothing more arrives


def room_config(workdir, redis_url, **rooms):
    config = gw.default_config(str(workdir), redis_url, actions=[ACTIONS], middleware=[MIDDLEWARE])
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    config["redis"]["prefix"] = "itest:rooms:%s:" % uuid.uuid4().hex[:8]
    config["general"]["actionTimeout"] = 5000
    if rooms:
        config["rooms"] = rooms
    return config


@pytest.fixture(scope="module")
def g(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rooms")
    config = room_config(workdir, redis_url, maxRoomsPerConnection=5, maxMessageBytes=100)
    with gw.serving(workdir, config) as g:
        yield g


# -- clients ------------------------------------------------------------------------------


class Peer:
    """A WebSocket or TCP client of the envelope protocol: call() sends a message and returns
    its answer (matched by request_id); pushed events are kept in `events`."""

    def __init__(self, kind):
        self.kind = kind
        self.events = []
        self.answers = {}
        self.next_id = 0
        self.id = None
        self.worker = None

    @classmethod
    async def open(cls, g, kind="websocket"):
        p = cls(kind)
        if kind == "websocket":
            p.ws = await g.ws_connect()
        else:
            p.reader, p.writer = await asyncio.open_connection(g.socket_host, g.socket_port)
        me = (await p.call("whoami"))["data"]
        p.id, p.worker = me["id"], me["worker"]
        return p

    async def send_text(self, text):
        if self.kind == "websocket":
            await self.ws.send(text)
        else:
            self.writer.write(text.encode() + b"\n")
            await self.writer.drain()

    async def recv_one(self, timeout):
        if self.kind == "websocket":
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        else:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError("closed")
            text = line.decode()
        msg = json.loads(text)
        if "event" in msg:
            self.events.append(msg)
        else:
            self.answers[msg.get("request_id")] = msg
        return msg

    async def call(self, action, data=None, timeout=TIMEOUT):
        self.next_id += 1
        rid = self.next_id
        msg = {"action": action, "request_id": rid}
        if data is not None:
            msg["data"] = data
        await self.send_text(json.dumps(msg))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + gw.bound(timeout)
        while rid not in self.answers:
            await self.recv_one(max(0.01, deadline - loop.time()))
        return self.answers.pop(rid)

    async def wait_events(self, n, timeout=TIMEOUT):
        """Until `n` events have arrived; returns them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + gw.bound(timeout)
        while len(self.events) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("%d of %d events: %r" % (len(self.events), n, self.events))
            await self.recv_one(left)
        return self.events

    async def quiet(self, wait=QUIET):
        """Read whatever arrives for `wait` seconds (to see that nothing more does)."""
        try:
            while True:
                await self.recv_one(wait)
        except asyncio.TimeoutError:
            pass

    async def close(self):
        if self.kind == "websocket":
            await self.ws.close()
        else:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, gw.bound(40)))


def ok(answer, data=None):
    assert answer["status"] == 200 and answer["errors"] == [], answer
    if data is not None:
        assert answer["data"] == data, answer
    return answer["data"]


def err(answer, status, message=None):
    assert answer["status"] == status, answer
    assert answer["data"] is None, answer
    if message is not None:
        assert answer["errors"] == [message], answer
    return answer["errors"]


def say_event(room, sender, message):
    return {"event": "say", "room": room, "from": sender, "message": message}


# -- one gateway --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["websocket", "socket"])
def test_join_view_say_leave(g, kind):
    room = "lobby-" + kind

    async def go():
        a = await Peer.open(g, kind)
        b = await Peer.open(g, "websocket")
        c = await Peer.open(g, "socket")
        for p in (a, b, c):
            ok(await p.call("roomAdd", {"room": room}), {"room": room})
        view = ok(await a.call("roomView", {"room": room}))
        assert view["room"] == room and view["membersCount"] == 3, view
        assert set(view["members"]) == {a.id, b.id, c.id}, view
        for mid, m in view["members"].items():
            assert m["id"] == mid and isinstance(m["joinedAt"], int) and m["joinedAt"] > 1.7e12, view
        # Any JSON value; every member, the sender included, exactly once.
        messages = ["hello", 42, {"nested": [1, "two", None]}, None, [0.5], True, ""]
        for m in messages:
            ok(await a.call("say", {"room": room, "message": m}), {"room": room})
        for p in (a, b, c):
            await p.wait_events(len(messages))
            await p.quiet()
            assert p.events == [say_event(room, a.id, m) for m in messages], (p.kind, p.events)
        # Joining again changes nothing.
        ok(await b.call("roomAdd", {"room": room}))
        assert ok(await b.call("roomView", {"room": room}))["membersCount"] == 3
        ok(await b.call("roomLeave", {"room": room}), {"room": room})
        view = ok(await a.call("roomView", {"room": room}))
        assert view["membersCount"] == 2 and b.id not in view["members"], view
        # A former member no longer hears the room, nor may speak in it.
        b.events.clear()
        a.events.clear()
        ok(await a.call("say", {"room": room, "message": "after"}))
        await a.wait_events(1)
        await b.quiet()
        assert b.events == [], b.events
        err(await b.call("say", {"room": room, "message": "x"}), 403,
            'you are not a member of room "%s"' % room)
        # roomView is for members (the list holds connection ids), as in ActionHero.
        err(await b.call("roomView", {"room": room}), 403,
            'you are not a member of room "%s"' % room)
        # Leaving a room one is not in is fine; a room that does not exist is 404.
        ok(await b.call("roomLeave", {"room": room}))
        err(await b.call("roomLeave", {"room": "nowhere"}), 404, 'room "nowhere" not found')
        for p in (a, b, c):
            await p.close()

    run(go())


@pytest.mark.parametrize("kind", ["websocket", "socket"])
def test_errors(g, kind):
    async def go():
        p = await Peer.open(g, kind)
        err(await p.call("roomView", {"room": "nope"}), 404, 'room "nope" not found')
        err(await p.call("say", {"room": "nope", "message": 1}), 404, 'room "nope" not found')
        required = {"room": ["This field is required."]}
        err(await p.call("roomAdd", {}), 422, required)
        err(await p.call("roomAdd"), 422, required)
        err(await p.call("roomAdd", {"room": ""}), 422, required)
        err(await p.call("roomAdd", {"room": None}), 422, required)
        err(await p.call("roomAdd", {"room": 5}), 422, {"room": ["must be a string"]})
        err(await p.call("roomView", {"room": ["x"]}), 422, {"room": ["must be a string"]})
        err(await p.call("roomAdd", {"room": "x" * 257}), 422, {"room": ["must be at most 256 bytes"]})
        ok(await p.call("roomAdd", {"room": "é" * 128}))  # 256 bytes
        ok(await p.call("roomAdd", {"room": "talk"}))
        err(await p.call("say", {"room": "talk"}), 422, {"message": ["This field is required."]})
        # request_id (and messageId) echoed as for actions
        await p.send_text(json.dumps({"action": "roomView", "room": "talk", "messageId": "m-1"}))
        while True:
            msg = await p.recv_one(gw.bound(TIMEOUT))
            if msg.get("messageId") == "m-1":
                break
        assert msg["status"] == 200 and msg["action"] == "roomView" and msg["route"] == "", msg
        assert list(msg) == ["errors", "data", "action", "route", "status", "messageId"], msg
        await p.close()

    run(go())


def test_rooms_per_connection_limit(g):
    async def go():
        p = await Peer.open(g)
        for i in range(5):
            ok(await p.call("roomAdd", {"room": "cap-%d" % i}))
        err(await p.call("roomAdd", {"room": "cap-5"}), 429,
            "too many rooms (rooms.maxRoomsPerConnection is 5)")
        ok(await p.call("roomAdd", {"room": "cap-1"}))  # already in: no new room
        ok(await p.call("roomLeave", {"room": "cap-0"}))
        ok(await p.call("roomAdd", {"room": "cap-5"}))
        await p.close()

    run(go())


def test_say_message_size(g):
    async def go():
        a = await Peer.open(g)
        b = await Peer.open(g, "socket")
        for p in (a, b):
            ok(await p.call("roomAdd", {"room": "big"}))
        ok(await a.call("say", {"room": "big", "message": "x" * 98}))  # 100 bytes as JSON
        err(await a.call("say", {"room": "big", "message": "x" * 99}), 413,
            "message too large (rooms.maxMessageBytes is 100)")
        err(await a.call("say", {"room": "big", "message": {"k": "x" * 100}}), 413)
        for p in (a, b):
            await p.wait_events(1)
            await p.quiet()
            assert p.events == [say_event("big", a.id, "x" * 98)], p.events
        await a.close()
        await b.close()

    run(go())


def test_middleware_refuses_and_rewrites(g):
    async def go():
        a = await Peer.open(g)
        b = await Peer.open(g, "socket")
        err(await a.call("roomAdd", {"room": "forbidden"}), 403, "no entry to forbidden")
        err(await a.call("roomAdd", {"room": "raises"}), 403, "raised refusal")
        err(await a.call("roomAdd", {"room": "buggy"}), 500, "The server experienced an internal error")
        err(await a.call("roomView", {"room": "forbidden"}), 404)  # a refused join creates nothing
        g.wait_for_log(r"room middleware roomRules join failed", 3)
        for room in ("shout", "stamped", "hotel"):
            ok(await a.call("roomAdd", {"room": room}))
            ok(await b.call("roomAdd", {"room": room}))
        ok(await a.call("say", {"room": "shout", "message": "hi there"}))
        ok(await a.call("say", {"room": "shout", "message": 7}))
        ok(await b.call("say", {"room": "stamped", "message": "x"}))
        err(await a.call("say", {"room": "shout", "message": "badword"}), 403, "mind your language")
        for p in (a, b):
            await p.wait_events(3)
            await p.quiet()
            assert p.events == [say_event("shout", a.id, "HI THERE"), say_event("shout", a.id, 7),
                                say_event("stamped", b.id, {"text": "x", "stamped": True})], p.events
        err(await a.call("roomLeave", {"room": "hotel"}), 403, "you can never leave")
        assert a.id in ok(await a.call("roomView", {"room": "hotel"}))["members"]
        await a.close()
        await b.close()

    run(go())


def redis_cmd(g, *args):
    host, port = g.config["redis"]["url"].split("//")[1].split("/")[0].split(":")
    import socket
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(gw.resp_encode(*args))
        return gw.resp_read(s.makefile("rb"), text=True)


def key(g, name):
    return g.config["redis"]["prefix"] + name


def wait_until(fn, timeout=5.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gw.bound(timeout)

    async def go():
        while loop.time() < deadline:
            value = await fn()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError("timed out waiting for " + what)
    return go()


@pytest.mark.parametrize("kind", ["websocket", "socket"])
def test_leave_on_close(g, kind):
    room = "closing-" + kind

    async def go():
        a = await Peer.open(g, kind)
        b = await Peer.open(g)
        ok(await a.call("roomAdd", {"room": room}))
        ok(await a.call("roomAdd", {"room": "hotel"}))  # its leave hook refuses; a close still leaves
        ok(await b.call("roomAdd", {"room": room}))
        ok(await b.call("roomAdd", {"room": "hotel"}))
        gone = a.id
        await a.close()

        async def left():
            view = ok(await b.call("roomView", {"room": room}))
            hotel = ok(await b.call("roomView", {"room": "hotel"}))
            return gone not in view["members"] and gone not in hotel["members"] and view

        view = await wait_until(left, what="the closed connection to leave")
        assert view["membersCount"] == 1, view
        leaves = redis_cmd(g, "LRANGE", key(g, "test:leaves"), 0, -1)
        assert "%s %s" % (gone, room) in leaves and "%s hotel" % gone in leaves, leaves
        # The worker's set of memberships no longer holds it either.
        workers = [k for k in redis_cmd(g, "KEYS", key(g, "rooms:worker:*"))]
        for w in workers:
            for entry in redis_cmd(g, "SMEMBERS", w):
                assert not entry.startswith(gone + " "), (w, entry)
        # Delivery goes on for the others.
        ok(await b.call("say", {"room": room, "message": "still here"}))
        await b.wait_events(1)
        await b.close()

    run(go())


def test_auto_room_goes_with_its_last_member(g):
    async def go():
        a = await Peer.open(g)
        ok(await a.call("roomAdd", {"room": "ephemeral"}))
        assert ok(await a.call("roomsApi", {"op": "exists", "room": "ephemeral"})) == {"result": True}
        ok(await a.call("roomLeave", {"room": "ephemeral"}))
        assert ok(await a.call("roomsApi", {"op": "exists", "room": "ephemeral"})) == {"result": False}
        # A room made with api.rooms.add stays when empty.
        ok(await a.call("roomsApi", {"op": "add", "room": "kept"}), {"result": True})
        ok(await a.call("roomsApi", {"op": "add", "room": "kept"}), {"result": False})
        ok(await a.call("roomAdd", {"room": "kept"}))
        ok(await a.call("roomLeave", {"room": "kept"}))
        view = ok(await a.call("roomsApi", {"op": "status", "room": "kept"}))["result"]
        assert view == {"room": "kept", "membersCount": 0, "members": {}}, view
        await a.close()

    run(go())


def test_api_rooms_from_an_action(g):
    async def go():
        a = await Peer.open(g)
        b = await Peer.open(g, "socket")
        web = g.client()
        api = lambda p, d: p.call("roomsApi", d)  # noqa: E731
        err(await api(a, {"op": "status", "room": "apiroom"}), 404, 'room "apiroom" not found')
        assert ok(await api(a, {"op": "pcallStatus", "room": "apiroom"}))["result"] == {
            "ok": False, "err": 'room "apiroom" not found'}
        err(await api(a, {"op": "addMember", "id": b.id, "room": "apiroom"}), 404)
        err(await api(a, {"op": "broadcast", "room": "apiroom", "message": 1}), 404)
        err(await api(a, {"op": "destroy", "room": "apiroom"}), 404, 'room "apiroom" not found')
        err(await api(a, {"op": "add", "room": ""}), 422, "api.rooms.add: room is required")
        ok(await api(a, {"op": "add", "room": "apiroom"}), {"result": True})
        # addMember/removeMember of another connection, by id; from the web too.
        ok(await api(a, {"op": "addMember", "id": b.id, "room": "apiroom"}), {"result": True})
        ok(await api(a, {"op": "addMember", "id": a.id, "room": "apiroom"}), {"result": True})
        err(await api(a, {"op": "addMember", "id": a.id, "room": "forbidden"}), 404)
        status, body = web.json("POST", "/api/roomsApi", {"op": "status", "room": "apiroom"})
        assert status == 200, body
        assert set(body["result"]["members"]) == {a.id, b.id}, body
        assert body["result"]["membersCount"] == 2, body
        assert ok(await b.call("whoami"))["rooms"] == ["apiroom"]
        # broadcast from the server: from null; from a connection: its id, say hooks run.
        status, body = web.json("POST", "/api/roomsApi", {"op": "broadcast", "room": "apiroom",
                                                          "message": {"k": "v"}})
        assert status == 200 and body["result"] is True, body
        err(await api(a, {"op": "broadcastSelf", "room": "apiroom", "message": "badword"}), 403,
            "mind your language")
        ok(await api(b, {"op": "broadcastSelf", "room": "apiroom", "message": "me"}))
        for p in (a, b):
            await p.wait_events(2)
            await p.quiet()
            assert p.events == [say_event("apiroom", None, {"k": "v"}),
                                say_event("apiroom", b.id, "me")], p.events
        ok(await api(a, {"op": "removeMember", "id": b.id, "room": "apiroom"}), {"result": True})
        ok(await api(a, {"op": "removeMember", "id": b.id, "room": "apiroom"}), {"result": False})
        assert ok(await b.call("whoami"))["rooms"] == []
        # destroy: the members are told and removed; the room is gone.
        ok(await b.call("roomAdd", {"room": "apiroom"}))
        a.events.clear()
        b.events.clear()
        status, body = web.json("POST", "/api/roomsApi", {"op": "destroy", "room": "apiroom"})
        assert status == 200 and body["result"] is True, body
        for p in (a, b):
            await p.wait_events(1)
            await p.quiet()
            assert p.events == [{"event": "roomDestroyed", "room": "apiroom"}], p.events
        err(await a.call("roomView", {"room": "apiroom"}), 404)
        err(await a.call("say", {"room": "apiroom", "message": 1}), 404)
        assert ok(await a.call("whoami"))["rooms"] == []
        assert redis_cmd(g, "EXISTS", key(g, "room:apiroom")) == 0
        web.close()
        await a.close()
        await b.close()

    run(go())


def test_not_actions_over_http(g):
    """Over HTTP the room messages are not actions (a web request has no lasting connection
    to be a member)."""
    for name in ("roomAdd", "roomLeave", "roomView", "say"):
        status, body = g.json("POST", "/api/" + name, {"room": "lobby"})
        assert status == 404 and body["error"] == "unknown action or invalid apiVersion", body


def test_auto_create_off_and_view_limit(gateway_bin, redis_url, tmp_path):
    config = room_config(tmp_path, redis_url, autoCreate=False, viewLimit=2)
    with gw.serving(tmp_path, config) as g2:
        async def go():
            peers = [await Peer.open(g2) for _ in range(3)]
            a = peers[0]
            err(await a.call("roomAdd", {"room": "closed"}), 404, 'room "closed" not found')
            ok(await a.call("roomsApi", {"op": "add", "room": "closed"}))
            for p in peers:
                ok(await p.call("roomAdd", {"room": "closed"}))
            view = ok(await a.call("roomView", {"room": "closed"}))
            assert view["membersCount"] == 3 and len(view["members"]) == 2, view
            assert view["truncated"] is True, view
            for p in peers:
                await p.close()

        run(go())


def test_clean_shutdown_leaves_no_members(gateway_bin, redis_url, tmp_path):
    """SIGTERM closes the connections; their memberships leave Redis before the exit."""
    config = room_config(tmp_path, redis_url)
    g2 = gw.Gateway(tmp_path, config).start()
    try:
        async def go():
            peers = [await Peer.open(g2, kind) for kind in ("websocket", "socket")]
            for p in peers:
                ok(await p.call("roomAdd", {"room": "bye"}))
                ok(await p.call("roomsApi", {"op": "add", "room": "stays"}))
                ok(await p.call("roomAdd", {"room": "stays"}))
            g2.stop()
            for p in peers:
                try:
                    await p.close()
                except Exception:
                    pass
        run(go())
    finally:
        g2.stop()
        problems = g2.teardown_problems()
        assert not problems, "%s\n%s" % ("; ".join(problems), g2.describe())
    assert redis_cmd(g2, "HLEN", key(g2, "room:stays")) == 0
    assert redis_cmd(g2, "EXISTS", key(g2, "room:bye")) == 0
    assert redis_cmd(g2, "HKEYS", key(g2, "rooms")) == ["stays"]
    assert redis_cmd(g2, "KEYS", key(g2, "rooms:worker:*")) == []


# -- several gateways on one Redis (the cluster: docs/realtime.md) ------------------------

# Fast presence, so a killed node's members go within a few seconds.
HEARTBEAT_MS, DEAD_AFTER_MS = 250, 1000
GONE_BOUND = (DEAD_AFTER_MS + HEARTBEAT_MS) / 1000.0 + 3.0


def node(make_gateway, tmp_path, redis, name, prefix, workers=1):
    wd = tmp_path / name
    os.makedirs(wd, exist_ok=True)
    config = room_config(wd, redis.tcp_url())
    config["redis"]["prefix"] = prefix
    config["cluster"] = {"heartbeat": HEARTBEAT_MS, "deadAfter": DEAD_AFTER_MS}
    args = ["--workers", str(workers)] if workers > 1 else []
    return make_gateway(config=config, workdir=wd, args=args)


async def spread(g, n_workers, kinds=("websocket", "socket"), limit=40):
    """Clients on g until every one of its n_workers workers holds at least one (bounded)."""
    peers, workers = [], set()
    for i in range(limit):
        p = await Peer.open(g, kinds[i % len(kinds)])
        peers.append(p)
        workers.add(p.worker)
        if len(workers) >= n_workers and len(peers) >= 2:
            return peers
    raise AssertionError("%d clients reached only workers %s" % (len(peers), workers))


def three_nodes(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    prefix = "rooms:%s:" % uuid.uuid4().hex[:6]
    a = node(make_gateway, tmp_path, redis, "a", prefix)
    b = node(make_gateway, tmp_path, redis, "b", prefix, workers=2)
    c = node(make_gateway, tmp_path, redis, "c", prefix)
    return redis, a, b, c


def test_say_reaches_every_node_exactly_once(make_gateway, private_redis, tmp_path):
    """A say from a client on C reaches the members on A and on both workers of B (and C's
    own), exactly once each; roomView from any node lists them all."""
    _, a, b, c = three_nodes(make_gateway, private_redis, tmp_path)

    async def go():
        on_a = await spread(a, 1)
        on_b = await spread(b, 2)
        sender = await Peer.open(c)
        members = on_a + on_b + [sender]
        assert len({p.worker for p in members}) == 4, [p.worker for p in members]
        for p in members:
            ok(await p.call("roomAdd", {"room": "R"}))
        for p in (on_a[0], on_b[0], sender):
            view = ok(await p.call("roomView", {"room": "R"}))
            assert view["membersCount"] == len(members), view
            assert set(view["members"]) == {m.id for m in members}, view
        messages = ["one", {"two": 2}, None]
        for m in messages:
            ok(await sender.call("say", {"room": "R", "message": m}))
        for p in members:
            await p.wait_events(len(messages))
        for p in members:
            await p.quiet()
            assert p.events == [say_event("R", sender.id, m) for m in messages], (p.worker, p.events)
        # api.rooms from an action on A: destroy tells the members on every node.
        for p in members:
            p.events.clear()
        ok(await on_a[0].call("roomsApi", {"op": "destroy", "room": "R"}))
        for p in members:
            await p.wait_events(1)
            await p.quiet()
            assert p.events == [{"event": "roomDestroyed", "room": "R"}], (p.worker, p.events)
            assert ok(await p.call("whoami"))["rooms"] == []
        for p in members:
            await p.close()

    run(go())


def test_add_and_remove_member_on_another_node(make_gateway, private_redis, tmp_path):
    """api.rooms.addMember/removeMember from an action on A, for a connection held by C: the
    holder applies it (its join hooks run there)."""
    _, a, b, c = three_nodes(make_gateway, private_redis, tmp_path)

    async def go():
        caller = await Peer.open(a)
        target = await Peer.open(c, "socket")
        ok(await caller.call("roomsApi", {"op": "add", "room": "remote"}))
        ok(await caller.call("roomsApi", {"op": "addMember", "id": target.id, "room": "remote"}),
           {"result": True})

        async def member():
            view = ok(await caller.call("roomsApi", {"op": "status", "room": "remote"}))["result"]
            return target.id in view["members"]
        await wait_until(member, what="the remote member to join")
        # The holder writes Redis first, then its own index when Redis answers (svc.join): a
        # whoami it reads between the two still says []. Wait for the holder's own view.

        async def holder_sees():
            return ok(await target.call("whoami"))["rooms"] == ["remote"]
        await wait_until(holder_sees, what="the holder to list the room on the connection")
        # The holder's join hooks decide: "forbidden" is refused there (logged), nothing joins.
        ok(await caller.call("roomsApi", {"op": "add", "room": "forbidden"}))
        ok(await caller.call("roomsApi", {"op": "addMember", "id": target.id, "room": "forbidden"}))
        c.wait_for_log(r"rooms: add refused.*forbidden", gw.bound(5))
        assert ok(await caller.call("roomsApi", {"op": "status", "room": "forbidden"}))["result"][
            "membersCount"] == 0
        # A say from A reaches the member on C.
        ok(await caller.call("roomsApi", {"op": "broadcast", "room": "remote", "message": "hi"}))
        await target.wait_events(1)
        assert target.events == [say_event("remote", None, "hi")]
        ok(await caller.call("roomsApi", {"op": "removeMember", "id": target.id, "room": "remote"}),
           {"result": True})

        async def left():
            view = ok(await caller.call("roomsApi", {"op": "status", "room": "remote"}))["result"]
            return target.id not in view["members"]
        await wait_until(left, what="the remote member to leave")
        assert ok(await target.call("whoami"))["rooms"] == []
        ok(await caller.call("roomsApi", {"op": "removeMember", "id": target.id, "room": "remote"}),
           {"result": False})
        await caller.close()
        await target.close()

    run(go())


def test_killed_node_members_leave_within_the_bound(make_gateway, private_redis, tmp_path):
    """kill -9 of a node: its members leave roomView within deadAfter + heartbeat (+ slack),
    and says go on reaching the others exactly once."""
    import signal
    import time
    redis, a, b, c = three_nodes(make_gateway, private_redis, tmp_path)
    # The victim: a one-worker node of its own (C), so kill -9 of its pid is the whole node.
    victim_node = c

    async def go():
        on_a = await spread(a, 1)
        on_b = await spread(b, 2)
        doomed = [await Peer.open(victim_node, kind) for kind in ("websocket", "socket")]
        for p in on_a + on_b + doomed:
            ok(await p.call("roomAdd", {"room": "K"}))
        view = ok(await on_a[0].call("roomView", {"room": "K"}))
        assert view["membersCount"] == len(on_a + on_b + doomed), view
        victim_node.expect_exit = -signal.SIGKILL
        os.kill(victim_node.pid, signal.SIGKILL)
        killed = time.monotonic()

        async def gone():
            v = ok(await on_a[0].call("roomView", {"room": "K"}))
            return not ({p.id for p in doomed} & set(v["members"])) and v
        v = await wait_until(gone, timeout=GONE_BOUND, what="the killed node's members to leave")
        took = time.monotonic() - killed
        print("the killed node's members left roomView %.2f s after the kill -9" % took)
        assert v["membersCount"] == len(on_a + on_b), v
        assert set(v["members"]) == {p.id for p in on_a + on_b}, v
        keys = redis.command("KEYS", a.config["redis"]["prefix"] + "rooms:worker:*")
        assert len(keys) == 3, keys  # A's worker and B's two; the victim's set is gone
        ok(await on_b[0].call("say", {"room": "K", "message": "still"}))
        for p in on_a + on_b:
            await p.wait_events(1)
            await p.quiet()
            assert p.events == [say_event("K", on_b[0].id, "still")], p.events
        for p in on_a + on_b:
            await p.close()
        for p in doomed:
            try:
                await p.close()
            except Exception:
                pass

    run(go())


def test_memberships_come_back_after_being_taken_for_dead(make_gateway, private_redis, tmp_path):
    """A worker the cluster took for dead (its beat gone from Redis, its memberships cleaned
    up by a survivor) writes its members back when it beats again (onResubscribed)."""
    redis = private_redis(tcp=True)
    prefix = "rooms:%s:" % uuid.uuid4().hex[:6]
    a = node(make_gateway, tmp_path, redis, "a", prefix)

    async def go():
        p = await Peer.open(a)
        q = await Peer.open(a, "socket")
        for peer in (p, q):
            ok(await peer.call("roomAdd", {"room": "back"}))
        ok(await p.call("roomsApi", {"op": "add", "room": "kept"}))
        ok(await q.call("roomAdd", {"room": "kept"}))
        # What a survivor's cleanup does, and the beat gone.
        redis.command("DEL", prefix + "room:back", prefix + "room:kept",
                      prefix + "rooms:worker:" + p.worker)
        redis.command("HDEL", prefix + "rooms", "back")
        redis.command("ZREM", prefix + "cluster:workers", p.worker)

        async def back():
            if not ok(await p.call("roomsApi", {"op": "exists", "room": "back"}))["result"]:
                return False
            v = ok(await p.call("roomView", {"room": "back"}))
            return v["membersCount"] == 2 and v
        v = await wait_until(back, what="the memberships to be written again")
        assert set(v["members"]) == {p.id, q.id}, v
        kept = ok(await q.call("roomView", {"room": "kept"}))
        assert set(kept["members"]) == {q.id}, kept
        a.wait_for_log(r"rooms: wrote this worker's memberships to Redis again", gw.bound(3))
        # ...and they still leave on close.
        await p.close()
        await q.close()

        async def empty():
            return redis.command("EXISTS", prefix + "room:back") == 0 and \
                redis.command("HLEN", prefix + "room:kept") == 0
        await wait_until(empty, what="the members to leave on close")

    run(go())


def test_close_while_redis_is_down_leaves_once_it_is_back(make_gateway, private_redis, tmp_path):
    """A member that closes while Redis is down is removed once Redis is back (the leave is
    retried), the others' memberships survive the restart, and says reach them again."""
    redis = private_redis(tcp=True)
    prefix = "rooms:%s:" % uuid.uuid4().hex[:6]
    a = node(make_gateway, tmp_path, redis, "a", prefix)

    async def go():
        p = await Peer.open(a)
        q = await Peer.open(a, "socket")
        for peer in (p, q):
            ok(await peer.call("roomAdd", {"room": "outage"}))
        since = a.log_size()
        redis.stop()
        err(await q.call("roomView", {"room": "outage"}), 503)
        await p.close()
        a.wait_for_log(r"could not remove a closed connection's memberships; retrying",
                       gw.bound(5), since=since)
        redis.start(keep_port=True)

        async def left():
            try:
                members = redis.command("HKEYS", prefix + "room:outage")
            except Exception:
                return False
            members = [m.decode() if isinstance(m, bytes) else m for m in members]
            return p.id not in members and members
        members = await wait_until(left, timeout=15, what="the closed member to be removed")
        assert members == [q.id], members
        v = ok(await q.call("roomView", {"room": "outage"}))
        assert set(v["members"]) == {q.id}, v
        # Broadcasts resume once the pub/sub connection is back.
        a.wait_for_log(r"subscribed again after an outage", gw.bound(10), since=since)
        ok(await q.call("say", {"room": "outage", "message": "back"}))
        await q.wait_events(1)
        assert q.events == [say_event("outage", q.id, "back")], q.events
        await q.close()

    run(go())


def test_check_lists_room_middleware_and_refuses_a_bad_hook(tmp_path, redis_url):
    config = room_config(tmp_path, redis_url)
    path = gw.write_config(str(tmp_path / "gateway.lua"), config)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "roomRules (room)" in res.stdout and "roomStamp (room)" in res.stdout, res.stdout
    bad = tmp_path / "bad_mw"
    os.makedirs(bad)
    (bad / "bad.lua").write_text('return { name = "bad", join = "not a function" }\n')
    config["paths"]["middleware"] = [str(bad)]
    gw.write_config(path, config)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 1, res.stdout + res.stderr
    assert "middleware bad: 'join' must be a function" in res.stdout + res.stderr, res.stderr
