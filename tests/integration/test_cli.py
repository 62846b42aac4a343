"""The command line: --check, startup errors, usage, ports and environment (SPEC §1, §2)."""

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
    port = gw.free_port()
    res = gw.run_cli(["--config", config_file(), "--check", "--port", str(port)])
    assert res.returncode == 0, _output(res)
    with socket.socket() as s:  # the port is still free
        s.bind(("127.0.0.1", port))


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
    assert res.stderr.strip(), "bad usage should say what is wrong on stderr"


def test_version(gateway_bin):
    res = gw.run_cli(["--version"], timeout=5)
    assert res.returncode == 0, _output(res)
    assert res.stdout.strip()


def test_help(gateway_bin):
    res = gw.run_cli(["--help"], timeout=5)
    assert res.returncode == 0, _output(res)
    assert "--config" in res.stdout


# -- ports and environment ----------------------------------------------------------------

def test_env_port_used_without_flag(make_gateway):
    port = gw.free_port()
    g = make_gateway(port=None, env={"GATEWAY_PORT": str(port)})
    assert g.port == port, g.stdout_text()
    g.assert_serving()


def test_port_flag_beats_env(make_gateway):
    env_port, flag_port = gw.free_port(), gw.free_port()
    g = make_gateway(port=flag_port, env={"GATEWAY_PORT": str(env_port)})
    assert g.port == flag_port, g.stdout_text()
    g.assert_serving()


def test_env_log_level_beats_config(make_gateway):
    g = make_gateway({"logging": {"level": "debug"}}, env={"GATEWAY_LOG_LEVEL": "error"})
    assert g.get("/api/randomNumber")[0] == 200
    assert not g.wait_for_log(r"action=randomNumber", timeout=0.5), g.log_text()


def test_listening_line_shows_real_port(make_gateway):
    g = make_gateway()
    assert g.port and g.port != 0
    assert "listening web http://127.0.0.1:%d" % g.port in g.stdout_text()


@pytest.mark.asan
def test_port_in_use(config_file):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = gw.run_cli(["--config", config_file(), "--port", str(port)], timeout=5)
    assert res.returncode == 1, _output(res)
    assert res.stderr.strip(), "a port in use should be explained on stderr"
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


def test_workers_share_the_port_and_stop_together(make_gateway):
    g = make_gateway({"workers": 2})
    statuses = [g.request("GET", "/api/randomNumber").status for _ in range(20)]
    assert statuses == [200] * 20
    children = g.children()
    assert children, "workers = 2 should run worker processes"
    assert g.signal(signal.SIGTERM) is None and g.wait(10) == 0, g.describe()
    deadline = time.monotonic() + 5
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if os.path.exists("/proc/%d" % pid)
                 and _state(pid) != "Z"]
        time.sleep(0.05)
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
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _state(pid) not in ("Z", "gone")]
        time.sleep(0.05)
    assert not alive, "workers outlived a killed master: %s\n%s" % (alive, g.describe())


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
