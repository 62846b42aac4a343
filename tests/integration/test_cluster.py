"""The cluster (docs/realtime.md): gateway processes sharing one redis-server hear each other
over Redis pub/sub, api.connections.send reaches a connection on any worker or node, a
killed worker is cleaned up after by exactly one survivor, a Redis restart is survived, and
two gateways with different redis.prefix on one Redis stay apart.

Three gateways A (two workers), B and C, each with the TCP socket server, on a private
redis-server; tests/integration/cluster_actions/cluster_probe.lua records in Redis what each
worker hears (under its redis.prefix), so the test reads it there."""

import asyncio
import json
import os
import signal
import time

import pytest

import gateway as gw
import promtext

CLUSTER_ACTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster_actions")

# The defaults (gateway.lua.example): a worker killed with -9 is cleaned up after within
# deadAfter + heartbeat = 6 s of its last beat; the test allows for the sweep's own work.
HEARTBEAT_MS, DEAD_AFTER_MS = 1000, 5000
GONE_BOUND = (DEAD_AFTER_MS + HEARTBEAT_MS) / 1000.0 + 2.0


def cluster_config(workdir, redis, prefix, extra=None):
    config = gw.default_config(str(workdir), redis.tcp_url(),
                               actions=[gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, CLUSTER_ACTIONS])
    config["redis"]["prefix"] = prefix
    config = gw.deep_merge(config, {"servers": {"socket": {"enabled": True, "port": 0}}})
    return gw.deep_merge(config, extra)


def start_node(make_gateway, tmp_path, redis, name, prefix="cl:", workers=1, extra=None):
    wd = tmp_path / name
    os.makedirs(wd, exist_ok=True)
    args = ["--workers", str(workers)] if workers > 1 else []
    return make_gateway(config=cluster_config(wd, redis, prefix, extra), workdir=wd, args=args)


def three(make_gateway, tmp_path, redis, prefix="cl:"):
    a = start_node(make_gateway, tmp_path, redis, "a", prefix, workers=2)
    b = start_node(make_gateway, tmp_path, redis, "b", prefix)
    c = start_node(make_gateway, tmp_path, redis, "c", prefix)
    return a, b, c


def workers_of(redis, prefix):
    return sorted(x.decode() if isinstance(x, bytes) else x
                  for x in redis.command("ZRANGE", prefix + "cluster:workers", 0, -1))


def wait_workers(redis, prefix, n, timeout=None):
    """Wait (bounded) until n workers beat under 'prefix'; returns their ids."""
    deadline = time.monotonic() + (timeout or gw.bound(10))
    while time.monotonic() < deadline:
        ids = workers_of(redis, prefix)
        if len(ids) >= n:
            return ids
        time.sleep(0.05)
    raise AssertionError("only %s beat under %s" % (workers_of(redis, prefix), prefix))


def lrange(redis, key):
    return [x.decode() if isinstance(x, bytes) else x for x in redis.command("LRANGE", key, 0, -1)]


def wait_list(redis, key, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = lrange(redis, key)
        if len(items) >= n:
            return items
        time.sleep(0.05)
    return lrange(redis, key)


def connect_clients(g, n):
    """n TCP clients on g (spread over its workers by the kernel), each with its id."""
    out = []
    for _ in range(n):
        c = g.line_client()
        env = c.call('{"action": "connection_info"}')
        assert env["status"] == 200, env
        out.append((c, env["data"]["id"]))
    return out


def push(g, to, message):
    status, body = g.json("POST", "/api/push_to", {"to": to, "message": message})
    assert status == 200, body
    return body["sent"]


def metric(g, name, **labels):
    r = g.request("GET", "/metrics")
    assert r.status == 200, r
    samples, _, _ = promtext.parse(r.body.decode("utf-8"))
    return promtext.value(samples, name, **labels)


def call(g, method, path, body=None):
    status, answer = g.json(method, path, body)
    assert status == 200, answer
    return answer


def assert_nothing_more(client, wait=0.3):
    """No further line arrives within 'wait' seconds (a duplicate would come right away)."""
    try:
        line = client.read_line(timeout=wait)
    except AssertionError as e:
        assert "no complete line" in str(e), e
        return
    raise AssertionError("an extra line arrived: %r" % (line,))


# -- api.connections.send across workers and nodes --------------------------------------------


@pytest.mark.asan
def test_send_reaches_a_connection_on_another_node_exactly_once(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a, b, c = three(make_gateway, tmp_path, redis)
    wait_workers(redis, "cl:", 4)
    # Enough clients that both of A's workers hold some (the kernel spreads them).
    clients = connect_clients(a, 6)
    ids = [cid for _, cid in clients]
    assert len(set(ids)) == len(ids), ids  # unique across A's two workers too
    for i, (client, cid) in enumerate(clients):
        sender = c if i % 2 == 0 else b
        assert push(sender, cid, {"n": i, "to": cid}) is True
    for i, (client, cid) in enumerate(clients):
        assert json.loads(client.read_line(timeout=gw.bound(5))) == {"n": i, "to": cid}
    # From A itself: the other worker's connections are reached through the cluster too.
    for i, (client, cid) in enumerate(clients):
        assert push(a, cid, "plain %d" % i) is True
    for i, (client, cid) in enumerate(clients):
        assert client.read_line(timeout=gw.bound(5)) == b"plain %d" % i
    for client, _ in clients:
        assert_nothing_more(client)
        client.close()


def test_send_reaches_a_websocket_on_another_node(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a = start_node(make_gateway, tmp_path, redis, "a", workers=2)
    c = start_node(make_gateway, tmp_path, redis, "c")
    wait_workers(redis, "cl:", 3)

    async def go():
        sockets = [await a.ws_connect() for _ in range(4)]
        try:
            ids = []
            for ws in sockets:
                await ws.send(json.dumps({"action": "connection_info"}))
                env = json.loads(await asyncio.wait_for(ws.recv(), gw.bound(5)))
                ids.append(env["data"]["id"])
            for i, cid in enumerate(ids):
                assert await asyncio.to_thread(push, c, cid, {"ws": i}) is True
            got = [json.loads(await asyncio.wait_for(ws.recv(), gw.bound(5))) for ws in sockets]
            extra = []
            for ws in sockets:
                try:
                    extra.append(await asyncio.wait_for(ws.recv(), 0.3))
                except asyncio.TimeoutError:
                    pass
            return got, extra
        finally:
            for ws in sockets:
                await ws.close()

    got, extra = asyncio.run(go())
    assert got == [{"ws": i} for i in range(4)]
    assert extra == []


def test_subscriber_authenticates_like_the_command_connection(make_gateway, private_redis, tmp_path):
    """A Redis with a password, and a database other than 0: the pub/sub connection does AUTH
    (and SELECT, which channels ignore) as the command connection does."""
    redis = private_redis(tcp=True, password="s3cret")
    url = "redis://:s3cret@127.0.0.1:%d/3" % redis.port
    nodes = []
    for name in ("a", "c"):
        wd = tmp_path / name
        os.makedirs(wd, exist_ok=True)
        config = cluster_config(wd, redis, "cl:")
        config["redis"]["url"] = url
        nodes.append(make_gateway(config=config, workdir=wd))
    a, c = nodes
    deadline = time.monotonic() + gw.bound(10)
    while len(redis.command("ZRANGE", "cl:cluster:workers", 0, -1, db=3)) < 2:
        assert time.monotonic() < deadline, "the workers did not beat in db 3"
        time.sleep(0.05)
    assert metric(a, "gateway_redis_subscriber_connected") == 1
    [(client, cid)] = connect_clients(a, 1)
    assert push(c, cid, {"auth": True}) is True
    assert json.loads(client.read_line(timeout=gw.bound(5))) == {"auth": True}
    client.close()


def test_send_to_an_unknown_id_is_published_and_dropped(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    c = start_node(make_gateway, tmp_path, redis, "c")
    wait_workers(redis, "cl:", 1)
    # True means published: the holder is not known to the sender.
    assert push(c, "no-such-connection", {"x": 1}) is True
    c.assert_serving()


def test_send_while_redis_is_down_returns_false(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    c = start_node(make_gateway, tmp_path, redis, "c")
    wait_workers(redis, "cl:", 1)
    since = c.log_size()
    redis.kill()
    assert c.wait_for_log(r"lost the connection", timeout=gw.bound(5), since=since)
    assert push(c, "somewhere-else", {"x": 1}) is False
    # A connection of its own still gets it: local first.
    [(client, cid)] = connect_clients(c, 1)
    assert push(c, cid, {"local": True}) is True
    assert json.loads(client.read_line(timeout=gw.bound(5))) == {"local": True}
    client.close()


# -- cluster messages ------------------------------------------------------------------------------


@pytest.mark.asan
def test_publish_reaches_every_worker_once_sender_included(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a, b, c = three(make_gateway, tmp_path, redis)
    ids = wait_workers(redis, "cl:", 4)
    assert call(c, "POST", "/api/cluster_publish", {"tag": "t1"})["published"] is True
    heard = wait_list(redis, "cl:test:echo:t1", 4, gw.bound(5))
    time.sleep(0.3)  # a duplicate would come right behind
    heard = lrange(redis, "cl:test:echo:t1")
    receivers = sorted(h.split(" from ")[0] for h in heard)
    assert receivers == ids, heard
    senders = {h.split(" from ")[1] for h in heard}
    assert len(senders) == 1 and senders <= set(ids), heard


def test_command_is_sent_without_waiting_and_refuses_what_api_redis_refuses(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    g = start_node(make_gateway, tmp_path, redis, "g")
    wait_workers(redis, "cl:", 1)
    answer = call(g, "POST", "/api/cluster_command", {"key": "k1"})
    assert answer["sent"] is True and answer["refused"] is True, answer
    deadline = time.monotonic() + gw.bound(5)
    while redis.command("GET", "cl:test:k1") != b"set":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    redis.kill()
    assert g.wait_for_log(r"redis: lost the connection", timeout=gw.bound(5), since=0)
    answer = call(g, "POST", "/api/cluster_command", {"key": "k2"})
    assert answer["sent"] is False and answer["why"] == "redis unavailable", answer


def test_different_prefixes_do_not_hear_each_other(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    x = start_node(make_gateway, tmp_path, redis, "x", prefix="px:")
    y = start_node(make_gateway, tmp_path, redis, "y", prefix="py:")
    wait_workers(redis, "px:", 1)
    wait_workers(redis, "py:", 1)
    [(client, cid)] = connect_clients(x, 1)
    assert push(y, cid, {"from": "y"}) is True  # published, on y's channel only
    assert call(y, "POST", "/api/cluster_publish", {"tag": "iso"})["published"] is True
    # y hears itself; x hears nothing of y's.
    assert len(wait_list(redis, "py:test:echo:iso", 1, gw.bound(5))) == 1
    assert push(x, cid, {"from": "x"}) is True  # the control: x's own send arrives
    assert json.loads(client.read_line(timeout=gw.bound(5))) == {"from": "x"}
    assert_nothing_more(client)
    assert lrange(redis, "px:test:echo:iso") == []
    client.close()


# -- Redis restarted --------------------------------------------------------------------------------


@pytest.mark.asan
def test_redis_restart_resubscribes_and_sends_resume(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a = start_node(make_gateway, tmp_path, redis, "a", workers=2)
    c = start_node(make_gateway, tmp_path, redis, "c")
    wait_workers(redis, "cl:", 3)
    clients = connect_clients(a, 4)
    assert metric(c, "gateway_redis_subscriber_connected") == 1
    since_a, since_c = a.log_size(), c.log_size()
    redis.stop()
    assert c.wait_for_log(r"redis subscriber: lost the connection", timeout=gw.bound(5), since=since_c)
    assert metric(c, "gateway_redis_subscriber_connected") == 0
    redis.start(keep_port=True)
    # Every worker subscribes again and says so (onResubscribed).
    resubscribed = wait_list(redis, "cl:test:resubscribed", 3, gw.bound(10))
    assert len(set(resubscribed)) == 3, resubscribed
    assert a.wait_for_log(r"subscribed again after an outage", timeout=gw.bound(5), since=since_a)
    assert metric(c, "gateway_redis_subscriber_connected") == 1
    out_before = metric(c, "gateway_cluster_messages_total", direction="out")
    for i, (client, cid) in enumerate(clients):
        assert push(c, cid, {"after": i}) is True
    assert metric(c, "gateway_cluster_messages_total", direction="out") == out_before + len(clients)
    assert metric(c, "gateway_cluster_messages_total", direction="in") >= len(clients)
    for i, (client, cid) in enumerate(clients):
        assert json.loads(client.read_line(timeout=gw.bound(5))) == {"after": i}
        assert_nothing_more(client, 0.1)
        client.close()


def test_redis_outage_longer_than_dead_after_reaps_no_live_worker(make_gateway, private_redis, tmp_path):
    """Every beat in Redis is stale when it comes back; nobody may judge the others before
    they had the chance to beat again."""
    redis = private_redis(tcp=True)
    fast = {"cluster": {"heartbeat": 200, "deadAfter": 1000}}
    a = start_node(make_gateway, tmp_path, redis, "a", extra=fast)
    b = start_node(make_gateway, tmp_path, redis, "b", extra=fast)
    ids = wait_workers(redis, "cl:", 2)
    time.sleep(1.2)  # both have been beating for deadAfter: they sweep
    since = a.log_size()
    redis.stop()
    assert a.wait_for_log(r"redis: lost the connection", timeout=gw.bound(5), since=since)
    time.sleep(2.0)  # twice deadAfter
    redis.start(keep_port=True)
    assert b.wait_for_log(r"cluster: subscribed again", timeout=gw.bound(5), since=0)
    time.sleep(3 * 1.2)  # several sweeps by both, after deadAfter of healthy beats
    assert lrange(redis, "cl:test:gone") == []
    assert workers_of(redis, "cl:") == ids


# -- presence -------------------------------------------------------------------------------------------


@pytest.mark.asan
def test_killed_node_is_cleaned_up_once_within_the_bound(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a, b, c = three(make_gateway, tmp_path, redis)
    ids = wait_workers(redis, "cl:", 4)
    victim = call(b, "GET", "/api/cluster_id")["id"]
    assert victim in ids
    b.expect_exit = -signal.SIGKILL
    os.kill(b.pid, signal.SIGKILL)
    killed = time.monotonic()
    gone = wait_list(redis, "cl:test:gone", 1, gw.bound(GONE_BOUND))
    took = time.monotonic() - killed
    assert gone, "no survivor ran onWorkerGone within %.1f s" % gw.bound(GONE_BOUND)
    assert gone[0].split(" by ")[0] == victim, gone
    assert gone[0].split(" by ")[1] in ids and gone[0].split(" by ")[1] != victim, gone
    assert took <= gw.bound(GONE_BOUND), took
    print("onWorkerGone ran %.2f s after the kill -9" % took)
    # Exactly once in the cluster: two more sweep rounds change nothing.
    time.sleep(2 * HEARTBEAT_MS / 1000.0 + 0.5)
    assert lrange(redis, "cl:test:gone") == gone
    assert victim not in workers_of(redis, "cl:")
    assert redis.command("EXISTS", "cl:cluster:reap:" + victim) == 0
    b.stop()


def test_killed_two_worker_node_each_worker_cleaned_up_once(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a, b, c = three(make_gateway, tmp_path, redis)
    before = wait_workers(redis, "cl:", 4)
    survivors = {call(b, "GET", "/api/cluster_id")["id"], call(c, "GET", "/api/cluster_id")["id"]}
    victims = set(before) - survivors
    assert len(victims) == 2, (before, survivors)
    a.expect_exit = -signal.SIGKILL
    os.killpg(a.pid, signal.SIGKILL)  # the master and both workers, as a node losing power
    gone = wait_list(redis, "cl:test:gone", 2, gw.bound(GONE_BOUND))
    time.sleep(2 * HEARTBEAT_MS / 1000.0 + 0.5)
    gone = lrange(redis, "cl:test:gone")
    assert sorted(g.split(" by ")[0] for g in gone) == sorted(victims), gone
    assert {g.split(" by ")[1] for g in gone} <= survivors, gone
    assert sorted(workers_of(redis, "cl:")) == sorted(survivors)
    a.stop()


def test_clean_shutdown_leaves_at_once_and_is_not_reaped(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    a = start_node(make_gateway, tmp_path, redis, "a")
    b = start_node(make_gateway, tmp_path, redis, "b")
    ids = wait_workers(redis, "cl:", 2)
    leaving = call(b, "GET", "/api/cluster_id")["id"]
    assert b.stop() == 0
    assert leaving not in workers_of(redis, "cl:")
    assert set(workers_of(redis, "cl:")) == set(ids) - {leaving}
    time.sleep((DEAD_AFTER_MS + 2 * HEARTBEAT_MS) / 1000.0)
    assert lrange(redis, "cl:test:gone") == []
    a.assert_serving()


def test_cluster_disabled_stays_in_process(make_gateway, private_redis, tmp_path):
    redis = private_redis(tcp=True)
    g = start_node(make_gateway, tmp_path, redis, "g", extra={"cluster": {"enabled": False}})
    assert call(g, "GET", "/api/cluster_id")["distributed"] is False
    assert call(g, "POST", "/api/cluster_publish", {"tag": "local"})["published"] is True
    assert len(wait_list(redis, "cl:test:echo:local", 1, gw.bound(5))) == 1
    assert workers_of(redis, "cl:") == []
    # api.connections.send reaches this worker's connections only: false for any other id.
    assert push(g, "elsewhere", {"x": 1}) is False
    [(client, cid)] = connect_clients(g, 1)
    assert push(g, cid, {"here": 1}) is True
    assert json.loads(client.read_line(timeout=gw.bound(5))) == {"here": 1}
    client.close()
    assert metric(g, "gateway_redis_subscriber_connected") == 0


def test_dead_after_below_three_heartbeats_is_a_startup_error(private_redis, tmp_path):
    redis = private_redis(tcp=True)
    wd = tmp_path / "bad"
    os.makedirs(wd, exist_ok=True)
    config = cluster_config(wd, redis, "cl:", {"cluster": {"heartbeat": 1000, "deadAfter": 2000}})
    out = gw.run_cli(["--config", gw.write_config(str(wd / "bad.lua"), config), "--check"])
    assert out.returncode == 1, out
    assert "cluster.deadAfter: must be at least 3 times cluster.heartbeat" in out.stderr, out.stderr
