"""SIGHUP re-reads gateway.lua (docs/install.md "Reload"): the keys that can change live are
applied, one log line each; every other changed key gets a line saying it needs a restart and
keeps its value; a config that fails to load keeps the one in force. Real SIGHUPs to a
real gateway, with one process and with workers."""

import copy
import re
import signal
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

CONFIG_VIEW = """return {
  name = "configView",
  description = "I show what api.config holds",
  run = function(api, data, next)
    data.response.actionTimeout = api.config.general.actionTimeout
    data.response.simultaneousActions = api.config.general.simultaneousActions
    data.response.urlPathForActions = api.config.servers.web.urlPathForActions
    data.response.level = api.config.logging.level
    data.response.filtered = api.config.logging.filteredParams[1]
    local f = io.open("/proc/self/stat")  -- the pid of the worker serving it
    data.response.pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
    next()
  end,
}
"""


def _config(tmp_path, redis_url):
    actions = tmp_path / "reload_actions"
    actions.mkdir(exist_ok=True)
    (actions / "config_view.lua").write_text(CONFIG_VIEW)
    wd = tmp_path / "gw"
    wd.mkdir(exist_ok=True)
    config = gw.default_config(str(wd), redis_url,
                               actions=[gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, str(actions)])
    config["general"]["actionTimeout"] = 60000
    config["logging"]["level"] = "info"
    return wd, config


def _reload(g, config=None, text=None, expect=r"reload done"):
    if config is not None or text is not None:
        gw.write_config(g.config_path, text if text is not None else config)
        g.config = text if text is not None else config
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(expect, timeout=gw.bound(5), since=offset), g.log_since(offset)
    return g.log_since(offset)


def _post(g, size):
    return g.request("POST", "/api/echo_params", body=b"x=" + b"a" * size,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}).status


def test_live_keys_apply_and_others_wait_for_a_restart(make_gateway, tmp_path, redis_url):
    wd, config = _config(tmp_path, redis_url)
    g = make_gateway(config=config, workdir=wd)
    assert _post(g, 3000) == 200
    assert g.get("/api/configView")[1]["actionTimeout"] == 60000

    new = copy.deepcopy(config)
    new["general"]["actionTimeout"] = 300
    new["general"]["simultaneousActions"] = 9
    new["servers"]["web"]["maxBodySize"] = 1000
    new["servers"]["web"]["urlPathForActions"] = "v2"   # needs a restart
    new["redis"]["url"] = "redis://127.0.0.1:1/0"       # needs a restart (and is not shown)
    new["logging"]["filteredParams"] = ["secret"]
    new["logging"]["level"] = "warning"  # so "reload done" (notice) is not logged
    log = _reload(g, new, expect=r"changes applied")

    assert re.search(r"reload: general\.actionTimeout: 60000 -> 300 \(applied\)", log), log
    assert re.search(r"reload: general\.simultaneousActions: 5 -> 9 \(applied\)", log), log
    assert re.search(r"reload: servers\.web\.maxBodySize: 1048576 -> 1000 \(applied\)", log), log
    assert re.search(r'reload: logging\.level: "info" -> "warning" \(applied\)', log), log
    assert re.search(r'reload: servers\.web\.urlPathForActions: "api" -> "v2" needs a restart: '
                     r'not applied', log), log
    assert re.search(r"reload: redis\.url: \(hidden\) -> \(hidden\) needs a restart", log), log
    assert "127.0.0.1:1/0" not in log
    assert re.search(r'reload: logging\.filteredParams: \{"password"\} -> \{"secret"\} \(applied\)', log), log
    assert re.search(r"reload: \S+: 5 changes applied, 2 waiting for a restart", log), log

    # Applied: the new limits, api.config, the log level (info lines are gone).
    offset = g.log_size()
    status, body = g.get("/api/configView")  # still under /api: the path waits for a restart
    assert status == 200, body
    assert body == {**body, "actionTimeout": 300, "simultaneousActions": 9,
                    "urlPathForActions": "api", "level": "warning", "filtered": "secret"}
    assert _post(g, 3000) == 413
    assert _post(g, 500) == 200
    assert g.get("/api/never_next", timeout=5)[0] == 504       # actionTimeout 300 ms
    assert g.request("GET", "/v2/configView").status == 404
    assert "action=configView" not in g.log_since(offset)       # level warning
    assert "redis://127.0.0.1:1/0" not in g.log_text()  # Redis stays on the old URL


def test_a_config_that_fails_keeps_the_one_in_force(make_gateway, tmp_path, redis_url):
    wd, config = _config(tmp_path, redis_url)
    config["servers"]["web"]["maxBodySize"] = 1000
    g = make_gateway(config=config, workdir=wd)
    good = open(g.config_path).read()

    log = _reload(g, text=good.replace("return {", "return {{", 1), expect=r"reload done")
    assert re.search(r"error reload: keeping the config in force: .*gateway-\d+\.lua:\d+:", log), log
    assert _post(g, 3000) == 413

    bad_type = copy.deepcopy(config)
    bad_type["servers"]["web"]["maxBodySize"] = "big"
    bad_type["general"]["actionTimeout"] = 300
    log = _reload(g, bad_type)
    assert re.search(r"keeping the config in force: \S+gateway-\d+\.lua:\d+: servers\.web\.maxBodySize: "
                     r"expected an integer, got string", log), log
    assert "(applied)" not in log
    assert g.get("/api/configView")[1]["actionTimeout"] == 60000

    # A good file again applies. A long list is shown cut short.
    config["servers"]["web"]["maxBodySize"] = 5000
    config["logging"]["filteredParams"] = ["param%d" % i for i in range(60)]
    log = _reload(g, config)
    assert "servers.web.maxBodySize: 1000 -> 5000 (applied)" in log
    line = re.search(r"reload: logging\.filteredParams: .*", log).group(0)
    assert line.startswith('reload: logging.filteredParams: {"password"} -> {"param0", "param1", ')
    assert line.endswith('...} (applied)') and len(line) < 250, line
    assert _post(g, 3000) == 200


def test_every_worker_applies_the_reload(make_gateway, tmp_path, redis_url):
    wd, config = _config(tmp_path, redis_url)
    g = make_gateway(config=config, workdir=wd, args=["--workers", "2"])
    # A worker still loading ignores SIGHUP: wait until both have answered (each has its
    # signal handlers in place then).
    deadline = time.monotonic() + gw.bound(10)
    while len(g.children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    children, seen = set(g.children()), set()
    for _ in range(400):
        seen.add(g.get("/api/configView")[1]["pid"])
        if seen >= children:
            break
    assert len(children) == 2 and seen >= children, (children, seen)
    new = copy.deepcopy(config)
    new["servers"]["web"]["maxBodySize"] = 1000
    new["workers"] = 3
    offset = g.log_size()
    gw.write_config(g.config_path, new)
    g.signal(signal.SIGHUP)
    # --workers on the command line beats the file: workers stays 2, unchanged.
    deadline = time.monotonic() + gw.bound(10)
    while g.log_since(offset).count("reload done") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = g.log_since(offset)
    assert log.count("servers.web.maxBodySize: 1048576 -> 1000 (applied)") == 2, log
    assert log.count("reload done") == 2, log
    assert "workers" not in log.replace("worker ", ""), log
    # New connections land on either worker: every one has the new limit.
    assert all(_post(g, 3000) == 413 for _ in range(8))
