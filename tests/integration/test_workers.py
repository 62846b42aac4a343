"""Worker processes (SPEC §1 `--workers`; issue 12 "Workers"): each worker listens on a socket
of its own in one SO_REUSEPORT group (one shared socket where SO_REUSEPORT is unavailable), the
master restarts a crashed worker with a growing delay, and fans SIGHUP/SIGTERM out to them."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import gateway as gw

# Names the worker process that serves it (/proc/self/stat starts with the pid).
WORKER_PID_ACTION = """
return {
  name = "workerPid",
  description = "I report the process id of the worker serving me",
  run = function(api, data)
    local f = io.open("/proc/self/stat")
    data.response.pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
  end,
}
"""

STARTED_RE = r"worker (\d+) started \(pid (\d+)\)"
EXITED_RE = r"worker (\d+) \(pid %d\) exited with status (\d+); restarting in (\d+) ms"


def pid_config(tmp_path, workers, socket=False):
    actions = tmp_path / "pid_actions"
    actions.mkdir(exist_ok=True)
    (actions / "worker_pid.lua").write_text(WORKER_PID_ACTION)
    config = {"workers": workers, "paths": {"actions": [str(actions)]}}
    if socket:
        config["servers"] = {"socket": {"enabled": True, "port": 0}}
    return config


def listening_sockets(port):
    """How many TCP sockets listen on 'port' (any address), from /proc/net/tcp{,6}. A socket
    that is only bound (the master's, holding the port) is not listed."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def wait_listening_sockets(port, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        got = listening_sockets(port)
        if got == n or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def web_pid(g):
    """The pid of the worker that answers one request on a fresh connection."""
    status, body = g.get("/api/workerPid")
    assert status == 200, (status, body)
    return body["pid"]


def pids_answering(g, want, min_requests, max_requests):
    """Fresh connections, one request each, at least 'min_requests' and until every pid in
    'want' has answered (at most 'max_requests'); every one must be served. Returns the
    list of answering pids in order."""
    seen = []
    for i in range(max_requests):
        seen.append(web_pid(g))
        if i + 1 >= min_requests and set(want) <= set(seen):
            break
    return seen


def worker_pids(g, n, timeout=None):
    """The pids of the 'n' running workers (bounded wait until there are that many)."""
    deadline = time.monotonic() + (timeout or gw.bound(10))
    while True:
        children = g.children()
        if len(children) == n or time.monotonic() > deadline:
            return sorted(children)
        time.sleep(0.02)


# -- every worker listens and serves -------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.asan
def test_each_worker_listens_on_its_own_socket_and_serves(make_gateway, tmp_path, workers):
    g = make_gateway(pid_config(tmp_path, workers, socket=True))
    assert g.port != 0 and g.socket_port != 0, g.describe()
    children = worker_pids(g, workers)
    assert len(children) == workers, (children, g.describe())
    # One listening socket per worker on the port the master picked for `port = 0`; the
    # master's own socket only holds the port and is not among them.
    assert wait_listening_sockets(g.port, workers, gw.bound(10)) == workers, g.describe()
    assert wait_listening_sockets(g.socket_port, workers, gw.bound(10)) == workers, g.describe()
    assert g.stdout_text().count("listening web http://") == 1, g.stdout_text()
    assert g.stdout_text().count("listening socket tcp://") == 1, g.stdout_text()

    # Many fresh connections: all served, and the kernel spreads them over every worker.
    seen = pids_answering(g, children, min_requests=60, max_requests=400)
    assert set(seen) == set(children), (sorted(set(seen)), children)

    # The TCP socket listener too.
    socket_seen = set()
    for i in range(400):
        with g.line_client() as c:
            answer = c.call('{"action": "workerPid"}')
        assert answer["status"] == 200, answer
        socket_seen.add(answer["data"]["pid"])
        if i >= 30 and socket_seen == set(children):
            break
    assert socket_seen == set(children), (socket_seen, children)

    assert g.stop() == 0, g.describe()
    assert listening_sockets(g.port) == 0 and listening_sockets(g.socket_port) == 0


def test_fixed_port_with_workers(make_gateway, tmp_path):
    holder = {}

    def start():
        holder["port"] = gw.free_port()
        return make_gateway(pid_config(tmp_path, 2), port=holder["port"])

    g = gw.retry_port_in_use(start)
    assert g.port == holder["port"], g.describe()
    assert wait_listening_sockets(g.port, 2, gw.bound(10)) == 2, g.describe()
    assert web_pid(g) in g.children()


def test_port_in_use_is_refused_with_workers(make_gateway, tmp_path):
    """Joining a SO_REUSEPORT group is allowed to any process of the same user: the master
    must still refuse a port another gateway (or anything else) listens on, not share it."""
    first = make_gateway(pid_config(tmp_path, 2))
    assert wait_listening_sockets(first.port, 2, gw.bound(10)) == 2, first.describe()
    second = make_gateway(pid_config(tmp_path, 2), port=first.port, start=False, expect_exit=1)
    with pytest.raises(gw.PortInUse):
        second.start()
    assert second.returncode == 1, second.describe()
    assert "in use" in second.log_text(), second.describe()
    # The first one is untouched: its workers alone listen and serve.
    assert listening_sockets(first.port) == 2
    assert web_pid(first) in first.children()


# -- a crashed worker is restarted ---------------------------------------------------------


@pytest.mark.asan
def test_killed_worker_is_restarted_and_the_others_keep_serving(make_gateway, tmp_path):
    g = make_gateway(pid_config(tmp_path, 2), expect_exit=0)
    children = worker_pids(g, 2)
    assert len(children) == 2, g.describe()
    assert wait_listening_sockets(g.port, 2, gw.bound(10)) == 2, g.describe()
    victim, survivor = children
    offset = g.log_size()
    os.kill(victim, signal.SIGKILL)
    m = g.wait_for_log(EXITED_RE % victim, timeout=gw.bound(10), since=offset)
    assert m, g.describe()
    assert (m.group(2), m.group(3)) == ("137", "100"), m.group(0)

    # Its socket went with it, so every connection goes to the survivor until the new worker
    # listens: none is refused or dropped, while it is down and after.
    served = []
    restarted = None
    deadline = time.monotonic() + gw.bound(15)
    while time.monotonic() < deadline:
        served.append(web_pid(g))
        if restarted is None:
            started = g.wait_for_log(STARTED_RE, timeout=0, since=offset)
            if started:
                restarted = int(started.group(2))
        elif restarted in served and len(served) >= 20:
            break
    assert restarted is not None, g.describe()
    assert restarted not in children
    assert set(served) <= {survivor, restarted}, (served, survivor, restarted)
    assert restarted in served, "the restarted worker never answered: %s" % served
    assert sorted(g.children()) == sorted([survivor, restarted])
    assert listening_sockets(g.port) == 2


def test_repeated_crashes_back_off_and_sigterm_stops_during_the_wait(make_gateway, tmp_path):
    g = make_gateway(pid_config(tmp_path, 2))
    children = worker_pids(g, 2)
    assert len(children) == 2, g.describe()
    survivor = children[1]
    victim = children[0]
    delays = []
    for _ in range(4):
        offset = g.log_size()
        os.kill(victim, signal.SIGKILL)
        m = g.wait_for_log(EXITED_RE % victim, timeout=gw.bound(10), since=offset)
        assert m, g.describe()
        delays.append(int(m.group(3)))
        if len(delays) == 4:
            break
        started = g.wait_for_log(STARTED_RE, timeout=gw.bound(10), since=offset)
        assert started, g.describe()
        victim = int(started.group(2))
    # Each crash soon after a start doubles the delay.
    assert delays == [100, 200, 400, 800], delays

    # While the crashed one waits to be restarted, its socket is gone and the other one
    # serves every connection. (Checked only while the master has not forked it again.)
    for _ in range(5):
        pid, sockets = web_pid(g), listening_sockets(g.port)
        if re.search(STARTED_RE, g.log_since(offset)):
            break
        assert (pid, sockets) == (survivor, 1)
    # SIGTERM during the wait: the master stops the survivor, forks no one, exits 0.
    offset = g.log_size()
    g.signal(signal.SIGTERM)
    assert g.wait(gw.bound(10)) == 0, g.describe()
    assert not re.search(STARTED_RE, g.log_since(offset)), g.log_since(offset)
    assert listening_sockets(g.port) == 0


# -- signals reach every worker ------------------------------------------------------------


def test_sighup_reaches_every_worker(make_gateway, tmp_path):
    g = make_gateway(pid_config(tmp_path, 3))
    children = worker_pids(g, 3)
    assert len(children) == 3, g.describe()
    # Each has answered, so each has its signal handlers in place.
    assert set(pids_answering(g, children, 3, 400)) == set(children)
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    deadline = time.monotonic() + gw.bound(10)
    while g.log_since(offset).count("reload done") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = g.log_since(offset)
    assert log.count("SIGHUP: reloading") == 3 and log.count("reload done") == 3, log
    # Nobody was restarted for it, and all still serve.
    assert worker_pids(g, 3) == children
    assert "restarting" not in log, log
    assert set(pids_answering(g, children, 3, 400)) == set(children)


# Takes 0.3 CPU seconds to load: a worker is still loading well after the master forked it.
SLOW_LOAD_ACTION = """
local stop = os.clock() + 0.3
while os.clock() < stop do end
return { name = "slowLoad", description = "I take long to load", run = function() end }
"""


def test_sighup_while_a_worker_loads_does_not_kill_it(make_gateway, tmp_path):
    config = pid_config(tmp_path, 2)
    config["general"] = {"cpuTimeout": 60000}  # a loaded machine may stretch the load
    (tmp_path / "pid_actions" / "slow_load.lua").write_text(SLOW_LOAD_ACTION)
    g = make_gateway(config, start=False)
    g.start(timeout=gw.bound(20))
    children = worker_pids(g, 2)
    assert len(children) == 2, g.describe()
    # start() returns once the first worker listens; the other may still be loading
    # slow_load.lua. Both must serve before one is killed, or the one killed may be the
    # only one listening (connection refused until another has loaded).
    assert set(pids_answering(g, children, 2, 400)) == set(children), g.describe()
    offset = g.log_size()
    os.kill(children[0], signal.SIGKILL)
    started = g.wait_for_log(STARTED_RE, timeout=gw.bound(10), since=offset)
    assert started, g.describe()
    loading = int(started.group(2))
    g.signal(signal.SIGHUP)  # forwarded to the new worker while it loads its actions
    # It comes up and serves; nobody exits again. Its load (and the reload the SIGHUP asks
    # for) may take seconds on a loaded machine: ask until it answers, bounded in time.
    deadline = time.monotonic() + gw.bound(15)
    seen = []
    while loading not in seen and len(seen) < 20000 and time.monotonic() < deadline:
        seen.append(web_pid(g))
    assert loading in seen, (len(seen), set(seen))
    log = g.log_since(offset)
    assert len(re.findall(r"exited with status", log)) == 1, log
    assert sorted(g.children()) == sorted([children[1], loading])


def test_sigterm_stops_every_worker_and_the_master_exits_0(make_gateway, tmp_path):
    g = make_gateway(pid_config(tmp_path, 3, socket=True))
    children = worker_pids(g, 3)
    assert len(children) == 3, g.describe()
    # Each has answered, so each has its signal handlers in place and logs its shutdown.
    assert set(pids_answering(g, children, 3, 400)) == set(children)
    g.signal(signal.SIGTERM)
    assert g.wait(gw.bound(10)) == 0, g.describe()
    assert g.log_text().count("shutting down") == 3, g.log_text()
    for pid in children:
        assert not os.path.exists("/proc/%d" % pid) or _state(pid) == "Z", pid
    assert listening_sockets(g.port) == 0 and listening_sockets(g.socket_port) == 0


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# -- where SO_REUSEPORT is unavailable -----------------------------------------------------

# Makes setsockopt(SO_REUSEPORT) fail as on a system without it; everything else goes through.
NO_REUSEPORT_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (level == SOL_SOCKET && name == SO_REUSEPORT) {
        errno = ENOPROTOOPT;
        return -1;
    }
    if (!real) real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
    return real(fd, level, name, value, len);
}
"""


def test_without_reuseport_the_workers_share_one_socket(make_gateway, tmp_path):
    cc = shutil.which("cc")
    if not cc:
        pytest.fail("no C compiler (cc) to build the test's LD_PRELOAD shim", pytrace=False)
    src = tmp_path / "no_reuseport.c"
    src.write_text(NO_REUSEPORT_SHIM)
    lib = tmp_path / "no_reuseport.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True,
                   timeout=60)
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    g = make_gateway(pid_config(tmp_path, 2),
                     env={"LD_PRELOAD": str(lib), "ASAN_OPTIONS": asan})
    assert g.wait_for_log(r"SO_REUSEPORT: .*: the workers share one listening socket on "
                          r"127\.0\.0\.1 port %d" % g.port, timeout=gw.bound(5)), g.describe()
    children = worker_pids(g, 2)
    assert len(children) == 2, g.describe()
    assert listening_sockets(g.port) == 1
    seen = [web_pid(g) for _ in range(20)]
    assert set(seen) <= set(children), (seen, children)

    # A restarted worker takes the shared socket again.
    offset = g.log_size()
    os.kill(children[0], signal.SIGKILL)
    started = g.wait_for_log(STARTED_RE, timeout=gw.bound(10), since=offset)
    assert started, g.describe()
    assert listening_sockets(g.port) == 1
    restarted = int(started.group(2))
    assert sorted(worker_pids(g, 2)) == sorted([children[1], restarted])
    assert all(web_pid(g) in (children[1], restarted) for _ in range(20))
