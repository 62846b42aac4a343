"""The command line: --check, startup errors, usage, ports and environment (SPEC §1, §2)."""

import json
import os
import re
import signal
import socket
import time

import pytest

import gateway as gw


@pytest.fixture
def config_file(gateway_bin, redis_url, tmp_path):
    """Factory: config_file(overrides=None, actions=None, text=None) -> path of a config."""

    def make(overrides=None, actions=None, text=None, name="gateway.lua"):
        path = str(tmp_path / name)
        if text is not None:
            return gw.write_config(path, text)
        base = gw.default_config(str(tmp_path), redis_url, actions=actions)
        return gw.write_config(path, gw.deep_merge(base, overrides))

    return make


def _output(res):
    return res.stdout + "\n" + res.stderr


# -- --check ------------------------------------------------------------------------------

def test_check_good_config(config_file):
    res = gw.run_cli(["--config", config_file(), "--check"])
    assert res.returncode == 0, _output(res)
    out = _output(res)
    for name in ("randomNumber", "moneyInCents", "echo_params", "versioned"):
        assert name in out, "--check should list the actions it found:\n" + out
    for name in ("globalEarly", "perActionA", "connLogger"):
        assert name in out, "--check should list the middleware it found:\n" + out
    assert "listening" not in res.stdout, "--check must not start listening"


def test_check_does_not_bind_the_port(config_file):
    # Hold the port bound and listening: a gateway that tried to bind it would fail with
    # "in use" (exit 1), so the exit 0 of --check shows it never tried.
    path = config_file()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = gw.run_cli(["--config", path, "--check", "--port", str(port)], timeout=10)
        assert res.returncode == 0, _output(res)
        assert "listening" not in res.stdout, _output(res)
        # The control: the same command without --check does bind, and fails.
        started = gw.run_cli(["--config", path, "--port", str(port)], timeout=10)
        assert started.returncode == 1, _output(started)
        assert "port %d" % port in started.stderr and "in use" in started.stderr, \
            _output(started)


# -- configuration errors -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["start", "check"])
@pytest.mark.asan
def test_unknown_top_level_key(config_file, mode):
    path = config_file({"bogusKey": 1})
    res = gw.run_cli(["--config", path] + (["--check"] if mode == "check" else []), timeout=5)
    assert res.returncode == 1, _output(res)
    assert "bogusKey" in _output(res)
    assert "listening" not in res.stdout


@pytest.mark.parametrize("mode", ["start", "check"])
@pytest.mark.asan
def test_wrong_type_names_the_key(config_file, mode):
    path = config_file({"servers": {"web": {"port": "x"}}})
    res = gw.run_cli(["--config", path] + (["--check"] if mode == "check" else []), timeout=5)
    assert res.returncode == 1, _output(res)
    assert "servers.web.port" in _output(res), _output(res)
    assert "listening" not in res.stdout


def test_wrong_type_nested_general(config_file):
    res = gw.run_cli(["--config", config_file({"general": {"actionTimeout": "soon"}}),
                      "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert "general.actionTimeout" in _output(res), _output(res)


@pytest.mark.asan
def test_config_syntax_error_names_file(config_file):
    path = config_file(text="return {\n  name = ,\n}\n", name="broken.lua")
    res = gw.run_cli(["--config", path, "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert re.search(r"broken\.lua:2\b", _output(res)), "name the file and line:\n" + _output(res)


def test_action_syntax_error_names_file_and_line(config_file, tmp_path):
    actions = tmp_path / "syntax_actions"
    actions.mkdir()
    (actions / "syntax_error.lua").write_text('return {\n  name = "x",\n  description = ,\n}\n')
    res = gw.run_cli(["--config", config_file(actions=[str(actions)]), "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert re.search(r"syntax_error\.lua:3\b", _output(res)), _output(res)


def test_action_raising_at_load_time(config_file, tmp_path):
    actions = tmp_path / "raising_actions"
    actions.mkdir()
    (actions / "raises.lua").write_text('error("cannot load me")\n')
    res = gw.run_cli(["--config", config_file(actions=[str(actions)]), "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert "raises.lua" in _output(res) and "cannot load me" in _output(res), _output(res)


def test_missing_config_file(tmp_path, gateway_bin):
    res = gw.run_cli(["--config", str(tmp_path / "absent.lua"), "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert "absent.lua" in _output(res)


# -- action load errors -------------------------------------------------------------------

BAD_ACTIONS = {
    "no_description": ('return { name = "noDesc", run = function(api, data, next) next() end }',
                       "Action noDesc is missing 'action.description'"),
    "no_name": ('return { description = "x", run = function(api, data, next) next() end }',
                "an action is missing 'action.name'"),
    "no_run": ('return { name = "noRun", description = "x" }',
               "Action noRun has no run method"),
    "reserved_input": ('return { name = "reservedInput", description = "x", '
                       'inputs = { callback = {} }, run = function(api, data, next) next() end }',
                       "callback"),
}


@pytest.mark.parametrize("mode", ["start", "check"])
@pytest.mark.parametrize("case", sorted(BAD_ACTIONS))
@pytest.mark.asan
def test_bad_action_file(config_file, tmp_path, case, mode):
    source, message = BAD_ACTIONS[case]
    actions = tmp_path / "bad_actions"
    actions.mkdir()
    (actions / ("%s_action.lua" % case)).write_text(source + "\n")
    path = config_file(actions=[gw.EXAMPLE_ACTIONS, str(actions)])
    res = gw.run_cli(["--config", path, "--port", "0"] + (["--check"] if mode == "check" else []),
                     timeout=5)
    out = _output(res)
    assert res.returncode == 1, out
    assert "%s_action.lua" % case in out, "the error must name the file:\n" + out
    assert message in out, out
    assert "listening" not in res.stdout


def test_duplicate_action_version(config_file, tmp_path):
    actions = tmp_path / "dup_actions"
    actions.mkdir()
    for n in (1, 2):
        (actions / ("dup%d.lua" % n)).write_text(
            'return { name = "dupAction", description = "d", version = 3, '
            'run = function(api, data, next) next() end }\n')
    res = gw.run_cli(["--config", config_file(actions=[str(actions)]), "--check"], timeout=5)
    assert res.returncode == 1, _output(res)
    assert "dupAction" in _output(res)


# -- usage --------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--nope"], ["--port"], ["--config"]])
def test_bad_usage_exits_2(gateway_bin, args):
    res = gw.run_cli(args, timeout=5)
    assert res.returncode == 2, _output(res)
    assert 'unknown or incomplete option "%s"' % args[0] in res.stderr, _output(res)
    assert "usage: gateway" in res.stderr and res.stdout == "", _output(res)


@pytest.mark.parametrize("flag, value, message", [
    ("--workers", "0", "--workers needs a number from 1 to 256"),
    ("--workers", "257", "--workers needs a number from 1 to 256"),
    ("--workers", "two", "--workers needs a number from 1 to 256"),
    ("--port", "65536", "--port needs a number from 0 to 65535"),
    ("--port", "-1", "--port needs a number from 0 to 65535"),
])
def test_bad_number_exits_2(gateway_bin, flag, value, message):
    res = gw.run_cli([flag, value, "--check"], timeout=5)
    assert res.returncode == 2, _output(res)
    assert '%s, got "%s"' % (message, value) in res.stderr, _output(res)


def test_version(gateway_bin):
    res = gw.run_cli(["--version"], timeout=5)
    assert res.returncode == 0, _output(res)
    assert re.fullmatch(r"gateway \d+\.\d+\S*\n", res.stdout), res.stdout


def test_help(gateway_bin):
    res = gw.run_cli(["--help"], timeout=5)
    assert res.returncode == 0, _output(res)
    for flag in ("--config", "--host", "--port", "--workers", "--redis", "--log-level",
                 "--check", "--version", "--help"):
        assert flag in res.stdout, (flag, res.stdout)


# -- ports and environment ----------------------------------------------------------------

def _start_on_a_free_port(make_gateway, kw):
    """make_gateway(**kw(port)) on a port from free_port(), chosen again when another process
    takes it first (that race is the machine's, not the test's)."""
    def start():
        port = gw.free_port()
        g = make_gateway(start=False, **kw(port))
        try:
            g.start()
        except gw.PortInUse:
            g.expect_exit = 1  # it lost the race for the port: a start error, as it should
            raise
        return g, port
    return gw.retry_port_in_use(start)


def test_env_port_used_without_flag(make_gateway):
    g, port = _start_on_a_free_port(
        make_gateway, kw=lambda port: {"port": None, "env": {"GATEWAY_PORT": str(port)}})
    assert g.port == port, g.stdout_text()
    g.assert_serving()


def test_port_flag_beats_env(make_gateway):
    env_port = gw.free_port()
    g, flag_port = _start_on_a_free_port(
        make_gateway, kw=lambda port: {"port": port, "env": {"GATEWAY_PORT": str(env_port)}})
    assert g.port == flag_port != env_port, g.stdout_text()
    g.assert_serving()


def test_env_log_level_beats_config(make_gateway):
    g = make_gateway({"logging": {"level": "debug"}}, env={"GATEWAY_LOG_LEVEL": "error"})
    assert g.get("/api/randomNumber")[0] == 200
    # An action's log line is written before its response is sent: had it been logged at
    # "error" it would be in the file now, so its absence is conclusive without a wait.
    assert "action=randomNumber" not in g.log_text(), g.log_text()


def test_listening_line_shows_real_port(make_gateway):
    g = make_gateway()  # --port 0
    lines = [line for line in g.stdout_text().splitlines() if line.startswith("listening")]
    assert len(lines) == 1, g.stdout_text()
    m = re.fullmatch(r"listening web http://127\.0\.0\.1:(\d+)", lines[0])
    assert m, lines
    port = int(m.group(1))
    assert 0 < port < 65536, lines
    # Not the port the harness parsed from that same line: a request of our own on the printed
    # port, answered by this gateway (its connection id is in this gateway's log).
    offset = g.log_size()
    with socket.create_connection(("127.0.0.1", port), timeout=gw.REQUEST_TIMEOUT) as s:
        s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    status, _, body = gw.split_raw_response(raw)
    assert status == 200, raw
    conn_id = json.loads(body)["requesterInformation"]["id"]
    assert g.wait_for_log(r"action=randomNumber .*connection=%s" % re.escape(conn_id),
                          timeout=5, since=offset), g.describe()


@pytest.mark.asan
def test_port_in_use(config_file):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = gw.run_cli(["--config", config_file(), "--port", str(port)], timeout=5)
    assert res.returncode == 1, _output(res)
    assert "port %d" % port in res.stderr and "in use" in res.stderr, \
        "a port in use should be explained on stderr:\n" + _output(res)
    assert "listening" not in res.stdout


# -- config details -----------------------------------------------------------------------

def test_relative_paths_are_relative_to_the_config_file(make_gateway, tmp_path):
    confdir = tmp_path / "conf"
    (confdir / "acts").mkdir(parents=True)
    (confdir / "acts" / "rel.lua").write_text(
        'return { name = "relAction", description = "found relative to the config", '
        'run = function(api, data, next) data.response.rel = true; next() end }\n')
    (confdir / "routes.lua").write_text("return {}\n")
    config = {"paths": {"actions": ["acts"], "middleware": [], "routes": "routes.lua",
                        "public": "."},
              "servers": {"web": {"port": 0}}}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    g = make_gateway(config=config, workdir=confdir, cwd=str(cwd))
    status, body = g.get("/api/relAction")
    assert status == 200, body
    assert body["rel"] is True


def test_url_path_for_actions(make_gateway):
    g = make_gateway({"servers": {"web": {"urlPathForActions": "v1"}}})
    status, body = g.get("/v1/randomNumber")
    assert status == 200, body
    assert g.request("GET", "/api/randomNumber").status == 404


# -- --host -------------------------------------------------------------------------------

def _ipv6_loopback():
    """True when this machine has ::1 (a container may run without IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _other_family_refused(host, port):
    """The loopback of the other address family on 'port' refuses connections: the gateway
    listens on 'host' only."""
    other = ("::1", socket.AF_INET6) if host == "127.0.0.1" else ("127.0.0.1", socket.AF_INET)
    if other[1] == socket.AF_INET6 and not _ipv6_loopback():
        return True
    with socket.socket(other[1], socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((other[0], port))
        except ConnectionRefusedError:
            return True
    return False


def _assert_listens_on(g, host):
    shown = "[%s]" % host if ":" in host else host
    assert re.fullmatch(r"listening web http://%s:%d" % (re.escape(shown), g.port),
                        g.stdout_text()), g.stdout_text()
    assert g.host == host, g.stdout_text()
    g.assert_serving()  # over 'host', as the harness connects to the printed address
    assert _other_family_refused(host, g.port), "also listening beside %s:%d" % (host, g.port)


HOSTS = [pytest.param("127.0.0.1", id="ipv4"),
         pytest.param("::1", id="ipv6", marks=pytest.mark.skipif(
             not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine"))]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.asan
def test_host_flag(make_gateway, host):
    g = make_gateway(args=["--host", host])
    _assert_listens_on(g, host)


@pytest.mark.parametrize("config_host, flag_host", [
    pytest.param("::1", "127.0.0.1", id="ipv6-config-ipv4-flag", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")),
    pytest.param("127.0.0.1", "::1", id="ipv4-config-ipv6-flag", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")),
])
def test_host_flag_beats_config(make_gateway, config_host, flag_host):
    g = make_gateway({"servers": {"web": {"host": config_host}}}, args=["--host", flag_host])
    _assert_listens_on(g, flag_host)


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_config_host_used_without_flag(make_gateway):
    g = make_gateway({"servers": {"web": {"host": "::1"}}})
    _assert_listens_on(g, "::1")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.300", ""])
def test_host_flag_not_an_address(config_file, host):
    res = gw.run_cli(["--config", config_file(), "--port", "0", "--host", host], timeout=10)
    assert res.returncode == 1, _output(res)
    assert 'cannot listen on "%s": not a numeric IP address' % host in res.stderr, _output(res)
    assert "listening" not in res.stdout


# -- --workers ----------------------------------------------------------------------------

# An action that names the worker process serving it.
WORKER_PID_ACTION = """
return {
  name = "workerPid",
  description = "I report my process id",
  run = function(api, data, next)
    local f = io.open("/proc/self/stat")
    data.response.pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
    next()
  end,
}
"""


def _wait_gone(pids, timeout=10.0):
    """Wait (bounded) until none of 'pids' runs (zombies count as gone); returns the rest."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _state(pid) not in ("Z", "gone")]
        if alive:
            time.sleep(0.05)
    return alive


@pytest.mark.parametrize("config_workers, flag_workers", [(1, 3), (3, 2)])
@pytest.mark.asan
def test_workers_flag_beats_config_and_every_worker_serves(make_gateway, tmp_path,
                                                           config_workers, flag_workers):
    actions = tmp_path / "pid_actions"
    actions.mkdir()
    (actions / "worker_pid.lua").write_text(WORKER_PID_ACTION)
    g = make_gateway({"workers": config_workers, "paths": {"actions": [str(actions)]}},
                     args=["--workers", str(flag_workers)])
    children = g.children()
    assert len(children) == flag_workers, (children, g.describe())

    # Fresh connections until every worker has answered: each listens on a SO_REUSEPORT
    # socket of its own and the kernel spreads new connections over them.
    answers = []
    for i in range(400):
        answers.append(g.get("/api/workerPid"))
        if i >= 30 and {body.get("pid") for _, body in answers} == set(children):
            break
    assert all(status == 200 for status, _ in answers), answers
    assert sorted({body["pid"] for _, body in answers}) == sorted(children), (answers, children)

    # Stopping the master stops every worker.
    assert g.stop() == 0, g.describe()
    assert _wait_gone(children) == [], children


def test_workers_share_the_port_and_stop_together(make_gateway):
    g = make_gateway({"workers": 2})
    statuses = [g.request("GET", "/api/randomNumber").status for _ in range(20)]
    assert statuses == [200] * 20
    children = g.children()
    assert len(children) == 2, "workers = 2 should run two worker processes: %s" % children
    g.signal(signal.SIGTERM)
    assert g.wait(10) == 0, g.describe()
    alive = _wait_gone(children, timeout=5)
    for pid in alive:  # do not leave them behind, but fail
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived the gateway: %s" % alive


def test_workers_stop_when_the_master_is_killed(make_gateway):
    """A master killed outright cannot forward a shutdown; its workers must not keep serving
    orphaned (the kernel sends them SIGTERM)."""
    g = make_gateway({"workers": 2}, expect_exit=-signal.SIGKILL)
    children = g.children()
    assert len(children) == 2, g.describe()
    os.kill(g.pid, signal.SIGKILL)
    assert g.wait(10) == -signal.SIGKILL
    alive = _wait_gone(children, timeout=10)
    assert not alive, "workers outlived a killed master: %s\n%s" % (alive, g.describe())


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
