"""Redis Sentinel (issue 17): with redis.sentinels and redis.masterName the gateway asks the
sentinels where the master is, checks ROLE there, and follows a failover.

All local: a redis-server master and a replica (REPLICAOF) from conftest's private_redis, and
one real sentinel (`redis-server sentinel.conf --sentinel`) on a private port with a folder
under tmp_path; or a fake sentinel in this process where a test needs the sentinel to lie.
Every process is stopped by PID at the end."""

import os
import re
import signal
import socket
import socketserver
import subprocess
import threading
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
REDIS_ACTIONS = os.path.join(HERE, "redis_actions")
CLUSTER_ACTIONS = os.path.join(HERE, "cluster_actions")

pytestmark = pytest.mark.asan

# The sentinel's own timings: low, so a failover takes a second or two.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def tcp_command(port, *args, timeout=5):
    """One command on a connection of its own to 127.0.0.1:port -> the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        s.sendall(gw.resp_encode(*args))
        return gw.resp_read(f, text=True)


def wait_until(what, fn, timeout, describe=lambda: ""):
    """Call fn() until it returns a true value (returned); bounded by 'timeout' seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (OSError, ConnectionError):
            v = None
        if v:
            return v
        assert time.monotonic() < deadline, "%s: not within %.0f s\n%s" % (what, timeout, describe())
        time.sleep(0.05)


class Sentinel:
    """A real sentinel: redis-server --sentinel on a private loopback port, monitoring
    'master' as "m" with a quorum of 1."""

    def __init__(self, binary, workdir, master_port, password=None):
        self.binary, self.dir = binary, str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = gw.free_port()
        self.conf = os.path.join(self.dir, "sentinel.conf")
        self.log_path = os.path.join(self.dir, "sentinel.log")
        lines = ["port %d" % self.port, "bind 127.0.0.1", "protected-mode no", "daemonize no",
                 "dir %s" % self.dir, "logfile %s" % self.log_path,
                 "sentinel monitor m 127.0.0.1 %d 1" % master_port,
                 "sentinel down-after-milliseconds m %d" % DOWN_AFTER_MS,
                 "sentinel failover-timeout m %d" % FAILOVER_TIMEOUT_MS,
                 "sentinel parallel-syncs m 1"]
        if password:
            lines.append("requirepass %s" % password)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.binary, self.conf, "--sentinel"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("the sentinel answers PING", lambda: self.command("PING") == "PONG",
                   gw.bound(10), self.log_text)
        return self

    def command(self, *args):
        return tcp_command(self.port, *args)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def master_port(self):
        return int(self.command("SENTINEL", "get-master-addr-by-name", "m")[1])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=gw.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=gw.STOP_TIMEOUT)


@pytest.fixture
def sentinels():
    """Factory: sentinels(binary, workdir, master_port) -> a started Sentinel, stopped by PID
    at teardown."""
    made = []

    def make(*a, **kw):
        s = Sentinel(*a, **kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


def replica_of(replica, master):
    """Make 'replica' replicate 'master' and wait (bounded) until its link is up."""
    assert replica.command("REPLICAOF", "127.0.0.1", str(master.port)) == "OK"
    wait_until("the replica's link to the master is up",
               lambda: replica.info("replication").get("master_link_status") == "up", gw.bound(10))


def role(server):
    r = server.command("ROLE")
    return r[0].decode() if isinstance(r[0], bytes) else r[0]


def get(server, k):
    v = server.command("GET", k)
    return v.decode() if isinstance(v, bytes) else v


def sentinel_config(sentinel_addrs, url="redis://127.0.0.1:1/0", **redis):
    # redis.url's host and port (here a port nothing listens on) are ignored with sentinels.
    return {"paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, REDIS_ACTIONS]},
            "redis": dict({"url": url, "sentinels": sentinel_addrs, "masterName": "m"}, **redis),
            "general": {"simultaneousActions": 1000, "actionTimeout": 10000}}


def incr(g, k):
    return g.json("POST", "/api/redisIncr", {"key": k}, timeout=15)


def wait_connected(g, timeout):
    def ok():
        status, body = g.get("/api/redisConnected")
        return status == 200 and body["connected"]
    wait_until("the gateway is connected to Redis", ok, timeout, g.describe)


@pytest.fixture
def cluster(private_redis, redis_binary, sentinels, tmp_path):
    """A master, its replica (in sync) and a sentinel that knows both."""
    master = private_redis(tcp=True)
    replica = private_redis(tcp=True)
    replica_of(replica, master)
    s = sentinels(redis_binary, tmp_path / "sentinel", master.port)

    def knows_replica():
        reps = s.command("SENTINEL", "replicas", "m")
        return any(dict(zip(r[::2], r[1::2])).get("port") == str(replica.port) and
                   "s_down" not in dict(zip(r[::2], r[1::2])).get("flags", "") for r in reps)
    wait_until("the sentinel knows the replica", knows_replica, gw.bound(15), s.log_text)
    return master, replica, s


class Caller:
    """Clients that keep calling redisIncr on one key while a test does something else;
    every answer's status is kept."""

    def __init__(self, g, k, threads=3):
        self.g, self.k = g, k
        self.statuses = []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop_flag.is_set():
            try:
                status, _ = incr(self.g, self.k)
            except OSError as e:  # the gateway itself must not drop a request
                status = repr(e)
            self.statuses.append(status)
            time.sleep(0.01)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=gw.bound(20))
        assert not any(t.is_alive() for t in self.threads), "a caller is still waiting"


def follow(g, master, replica, since, k):
    """After a failover from 'master' to 'replica': the gateway logs the switch and its
    writes land on the new master, within the bound."""
    assert g.wait_for_log(r'master "m" switched: 127\.0\.0\.1:%d -> 127\.0\.0\.1:%d'
                          % (master.port, replica.port), timeout=gw.bound(20), since=since)

    def write_lands():
        status, body = incr(g, k)
        return status == 200 and get(replica, k) == str(body["value"])
    wait_until("a write through the gateway lands on the new master", write_lands, gw.bound(10),
               g.describe)
    assert role(replica) == "master"


def test_discovers_the_master_and_follows_a_failover(cluster, make_gateway):
    master, replica, s = cluster
    g = make_gateway(sentinel_config(["127.0.0.1:%d" % s.port]))
    wait_connected(g, gw.bound(10))
    assert re.search(r'sentinel 127\.0\.0\.1:%d: master "m" is at 127\.0\.0\.1:%d' % (s.port, master.port),
                     g.log_text())
    # redis.url's host and port were not used: the write is on the sentinel's master.
    k = "itest:sentinel:%s" % uuid.uuid4().hex[:10]
    status, body = incr(g, k)
    assert (status, body["value"]) == (200, 1), body
    assert get(master, k) == "1"
    assert g.wait_for_log(r"listening for \+switch-master", timeout=gw.bound(5))

    since = g.log_size()
    with Caller(g, k) as calls:
        wait_until("the callers get answers", lambda: len(calls.statuses) >= 5, gw.bound(10))
        assert s.command("SENTINEL", "FAILOVER", "m") == "OK"
        follow(g, master, replica, since, "itest:sentinel:%s" % uuid.uuid4().hex[:10])
        n = len(calls.statuses)
        wait_until("the callers get answers after the switch", lambda: len(calls.statuses) >= n + 5,
                   gw.bound(10))
    # Each call was answered: done, or 503 "redis unavailable" for one in flight at the switch.
    assert set(calls.statuses) <= {200, 503}, calls.statuses
    assert calls.statuses[-1] == 200
    assert g.wait_for_log(r"redis: connected to redis://127\.0\.0\.1:%d/0 \(master \"m\"\)" % replica.port,
                          timeout=1, since=since)


def test_follows_a_killed_master(cluster, make_gateway):
    master, replica, s = cluster
    g = make_gateway(dict(sentinel_config(["127.0.0.1:%d" % s.port]), workers=2))
    wait_connected(g, gw.bound(10))
    k = "itest:sentinel:%s" % uuid.uuid4().hex[:10]
    assert incr(g, k)[0] == 200
    since = g.log_size()
    with Caller(g, k) as calls:
        master.kill()  # SIGKILL: the sentinel notices after down-after-milliseconds
        follow(g, master, replica, since, "itest:sentinel:%s" % uuid.uuid4().hex[:10])
    assert set(calls.statuses) <= {200, 503}, calls.statuses
    assert calls.statuses[-1] == 200
    # Each worker follows on its own.
    wait_until("both workers use the new master", lambda: len(re.findall(
        r"redis: connected to redis://127\.0\.0\.1:%d/0" % replica.port, g.log_since(since))) == 2,
        gw.bound(10), g.describe)
    g.assert_serving()


def test_a_dead_sentinel_is_replaced_by_the_next(cluster, sentinels, redis_binary, make_gateway,
                                                 tmp_path):
    master, replica, s1 = cluster
    s2 = sentinels(redis_binary, tmp_path / "sentinel2", master.port)
    wait_until("the second sentinel knows the replica",
               lambda: s2.command("SENTINEL", "replicas", "m"), gw.bound(15), s2.log_text)
    g = make_gateway(sentinel_config(["127.0.0.1:%d" % s1.port, "127.0.0.1:%d" % s2.port]))
    wait_connected(g, gw.bound(10))
    assert g.wait_for_log(r"sentinel 127\.0\.0\.1:%d: listening for \+switch-master" % s1.port,
                          timeout=gw.bound(5))
    since = g.log_size()
    s1.stop()
    assert g.wait_for_log(r"sentinel 127\.0\.0\.1:%d: listening for \+switch-master" % s2.port,
                          timeout=gw.bound(10), since=since)
    assert s2.command("SENTINEL", "FAILOVER", "m") == "OK"
    follow(g, master, replica, since, "itest:sentinel:%s" % uuid.uuid4().hex[:10])
    assert re.search(r"switched: .* \(from sentinel 127\.0\.0\.1:%d\)" % s2.port, g.log_since(since))


# -- the cluster's subscriber connection ------------------------------------------------------


def lrange(server, k):
    return [x.decode() if isinstance(x, bytes) else x for x in server.command("LRANGE", k, 0, -1)]


def test_the_cluster_subscriber_follows_a_failover(cluster, make_gateway):
    """Two nodes hear each other over pub/sub on the master; after a failover both the
    command and the subscriber connection of each use the new master, every node says it
    subscribed again (onResubscribed), and a message published on one reaches both."""
    master, replica, s = cluster
    nodes = []
    for _ in range(2):
        cfg = sentinel_config(["127.0.0.1:%d" % s.port])
        cfg["paths"]["actions"].append(CLUSTER_ACTIONS)
        cfg["redis"]["prefix"] = "sent:"
        nodes.append(make_gateway(cfg))
    for g in nodes:
        wait_connected(g, gw.bound(10))
        assert g.wait_for_log(r"redis subscriber: connected to redis://127\.0\.0\.1:%d/0" % master.port,
                              timeout=gw.bound(10))
    wait_until("both nodes beat", lambda: len(master.command("ZRANGE", "sent:cluster:workers", 0, -1)) == 2,
               gw.bound(10))
    since = [g.log_size() for g in nodes]
    assert s.command("SENTINEL", "FAILOVER", "m") == "OK"
    for g, off in zip(nodes, since):
        for who in ("redis", "redis subscriber"):
            assert g.wait_for_log(r"%s: connected to redis://127\.0\.0\.1:%d/0 \(master \"m\"\)"
                                  % (who, replica.port), timeout=gw.bound(20), since=off), who
    wait_until("both nodes subscribed again",
               lambda: len(set(lrange(replica, "sent:test:resubscribed"))) == 2, gw.bound(10))
    tag = uuid.uuid4().hex[:8]
    status, body = nodes[0].json("POST", "/api/cluster_publish", {"tag": tag})
    assert status == 200 and body["published"] is True, body
    heard = wait_until("both nodes hear the message",
                       lambda: len(lrange(replica, "sent:test:echo:" + tag)) == 2 and
                       lrange(replica, "sent:test:echo:" + tag), gw.bound(5))
    assert len({h.split(" from ")[0] for h in heard}) == 2, heard


# -- a sentinel that names a replica -------------------------------------------------------


class FakeSentinel(socketserver.ThreadingTCPServer):
    """Answers SENTINEL get-master-addr-by-name with whatever 'self.port_named' says, after
    AUTH when 'password' is set; SUBSCRIBE is acknowledged and then silent."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port_named, password=None):
        self.port_named, self.password = port_named, password
        self.asked = self.connections = 0
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


class FakeHandler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server
        srv.connections += 1
        authed = srv.password is None
        while True:
            try:
                cmd = gw.resp_read(self.rfile, text=True)
            except (ConnectionError, OSError, ValueError):
                return
            name = cmd[0].upper()
            if name == "AUTH":
                authed = cmd[1] == srv.password
                self.wfile.write(b"+OK\r\n" if authed else b"-WRONGPASS invalid password\r\n")
            elif not authed:
                self.wfile.write(b"-NOAUTH Authentication required.\r\n")
            elif name == "SENTINEL" and cmd[2] == "m":
                srv.asked += 1
                self.wfile.write(gw.resp_encode("127.0.0.1", str(srv.port_named)))
            elif name == "SENTINEL":
                self.wfile.write(b"*-1\r\n")
            elif name == "SUBSCRIBE":
                self.wfile.write(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
            else:
                self.wfile.write(b"-ERR unknown command\r\n")
            self.wfile.flush()


@pytest.fixture
def fake_sentinel():
    made = []

    def make(*a, **kw):
        f = FakeSentinel(*a, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


def test_a_replica_named_as_master_is_refused_until_promoted(private_redis, fake_sentinel,
                                                               make_gateway, tmp_path):
    master = private_redis(tcp=True)
    replica = private_redis(tcp=True)
    replica_of(replica, master)
    fake = fake_sentinel(replica.port, password="s3cret")  # lies: names the replica
    dead = gw.free_port()  # nothing listens there: the next sentinel is asked
    g = make_gateway(sentinel_config(["127.0.0.1:%d" % dead, "127.0.0.1:%d" % fake.port],
                                     sentinelPassword="s3cret"))
    assert g.wait_for_log(r"ROLE says it is not the master", timeout=gw.bound(10))
    status, body = incr(g, "itest:sentinel:refused")
    assert status == 503 and gw.has_error(body, "redis unavailable"), (status, body)
    assert get(replica, "itest:sentinel:refused") is None
    # Promoted: the next attempt (backoff at most 1 s) finds ROLE master.
    assert replica.command("REPLICAOF", "NO", "ONE") == "OK"
    wait_connected(g, gw.bound(10))
    assert incr(g, "itest:sentinel:promoted")[0] == 200
    assert get(replica, "itest:sentinel:promoted") == "1"
    # The sentinel's name moves: the poll (every 5 s) moves the gateway with it.
    since = g.log_size()
    fake.port_named = master.port
    assert g.wait_for_log(r'master "m" switched: 127\.0\.0\.1:%d -> 127\.0\.0\.1:%d'
                          % (replica.port, master.port), timeout=gw.bound(10), since=since)
    wait_until("writes land on the master the sentinel names",
               lambda: incr(g, "itest:sentinel:moved")[0] == 200 and
               get(master, "itest:sentinel:moved") is not None, gw.bound(10), g.describe)
    # The connection that asked is kept for the next question: the +switch-master listener's
    # and the questions' (one more after a question that got no answer in time).
    assert fake.asked >= 3 and fake.connections < fake.asked, (fake.asked, fake.connections)


def test_wrong_sentinel_password_is_logged_and_retried(fake_sentinel, private_redis, make_gateway,
                                                       tmp_path):
    master = private_redis(tcp=True)
    fake = fake_sentinel(master.port, password="right")
    g = make_gateway(sentinel_config(["127.0.0.1:%d" % fake.port], sentinelPassword="wrong"))
    assert g.wait_for_log(r'no sentinel named master "m" \(last: sentinel 127\.0\.0\.1:%d: AUTH '
                          r'failed: WRONGPASS' % fake.port, timeout=gw.bound(10))
    status, body = incr(g, "itest:sentinel:nopass")
    assert status == 503 and gw.has_error(body, "redis unavailable"), (status, body)
    g.assert_serving()


# -- --check -------------------------------------------------------------------------------


@pytest.mark.parametrize("redis, want", [
    ({"sentinels": ["127.0.0.1:26379"]}, r"redis\.masterName: required with redis\.sentinels"),
    ({"sentinels": ["127.0.0.1:port"], "masterName": "m"},
     r'redis\.sentinels: "127\.0\.0\.1:port": the port must be a number from 1 to 65535'),
    ({"sentinels": ["127.0.0.1:0"], "masterName": "m"}, r"the port must be a number"),
    ({"sentinels": ["[::1:26379"], "masterName": "m"}, r"missing '\]'"),
    ({"sentinels": [":26379"], "masterName": "m"}, r"no host"),
    ({"masterName": "m"}, r"redis\.masterName: set, but redis\.sentinels is empty"),
    ({"sentinels": ["127.0.0.1:26379"], "masterName": "my master"}, r"no spaces"),
    ({"sentinels": "127.0.0.1:26379", "masterName": "m"}, r"redis\.sentinels: expected a list"),
    ({"sentinels": ["127.0.0.1:%d" % (26379 + i) for i in range(17)], "masterName": "m"},
     r"at most 16 sentinels"),
])
def test_check_refuses_bad_sentinel_settings(tmp_path, redis, want):
    cfg = gw.default_config(str(tmp_path))
    cfg["redis"] = redis
    path = gw.write_config(str(tmp_path / "gateway.lua"), cfg)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 1, res
    assert re.search(r"gateway\.lua:\d+: " + want, res.stderr) or re.search(want, res.stderr), res.stderr


def test_check_accepts_sentinel_settings(tmp_path):
    cfg = gw.default_config(str(tmp_path))
    cfg["redis"] = {"sentinels": ["127.0.0.1:26379", "[::1]:26380", "sentinel.local", "/run/s.sock"],
                    "masterName": "mymaster", "sentinelPassword": "pw"}
    path = gw.write_config(str(tmp_path / "gateway.lua"), cfg)
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 0, res.stderr


def test_an_acl_user_without_role_trusts_the_sentinels(private_redis, fake_sentinel, make_gateway):
    master = private_redis(tcp=True)
    assert master.command("ACL", "SETUSER", "app", "on", ">apppw", "~*", "+@all", "-role") == "OK"
    fake = fake_sentinel(master.port)
    g = make_gateway(sentinel_config(["127.0.0.1:%d" % fake.port],
                                     url="redis://app:apppw@127.0.0.1:1/0"))
    wait_connected(g, gw.bound(10))
    assert g.wait_for_log(r"cannot check that it is the master \(ROLE: NOPERM", timeout=1)
    assert incr(g, "itest:sentinel:acl")[0] == 200
    assert get(master, "itest:sentinel:acl") == "1"
