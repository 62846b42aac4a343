"""C modules linked into the binary (`make STATIC_MODULES=examples/modules/hello`): the config
lists them by name without a path, they work as the loaded .so does, --check says "(linked
in)", and the gateway's own modules (api.redis, ...) are there in every build. Builds a second
gateway binary in a temporary folder (a few seconds)."""

import os
import subprocess

import pytest

import gateway as gw

HELLO_DIR = os.path.join(gw.REPO, "examples", "modules", "hello")
MODULE_ACTIONS = os.path.join(gw.HERE, "module_actions")


@pytest.fixture(scope="module")
def static_gateway(tmp_path_factory):
    build = tmp_path_factory.mktemp("static-build")
    res = subprocess.run(["make", "-s", "-C", gw.REPO, "-j2", "BUILD=%s" % build,
                          "STATIC_MODULES=%s" % HELLO_DIR, "%s/gateway" % build],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return str(build / "gateway")


def _config(tmp_path, redis_url, modules):
    base = gw.default_config(str(tmp_path), redis_url, actions=[MODULE_ACTIONS], middleware=[])
    base["modules"] = modules
    return base


def test_linked_module_listed_without_path(make_gateway, tmp_path, redis_url, static_gateway):
    g = make_gateway(config=_config(tmp_path, redis_url, [
        {"name": "hello", "config": {"greeting": "Linked"}}]), binary=static_gateway)
    status, body = g.get("/api/helloGreet?name=Ann")
    assert status == 200, body
    assert body["greeting"] == "Linked, Ann!", body
    # Its middleware and async function work as the .so's do.
    r = g.request("GET", "/api/helloWait?ms=20")
    assert r.status == 200 and r.headers.get("X-Hello") == "Linked", (r.status, dict(r.headers))
    assert g.wait_for_log(r'loaded, greeting "Linked".*module=hello'), g.log_text()


def test_check_says_linked_in(tmp_path, redis_url, static_gateway):
    path = gw.write_config(str(tmp_path / "gateway.lua"),
                           _config(tmp_path, redis_url, [{"name": "hello"}]))
    res = subprocess.run([static_gateway, "--config", path, "--check"], capture_output=True,
                         text=True, timeout=10, env=gw.child_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "modules: 1" in res.stdout and "hello  (linked in)" in res.stdout, res.stdout


def test_linked_module_not_loaded_unless_listed(make_gateway, tmp_path, redis_url, static_gateway):
    g = make_gateway(config=_config(tmp_path, redis_url, []), binary=static_gateway)
    status, body = g.get("/api/helloGreet?name=Ann")
    assert status == 500, body  # api.hello is nil: the action fails
    assert gw.error_text(body) == "The server experienced an internal error", body
    r = g.request("GET", "/api/helloGreet?name=A")
    assert r.status == 500 and r.headers.get("X-Hello") is None, dict(r.headers)
    assert "module=hello" not in g.log_text(), g.log_text()


def test_without_path_and_not_linked_in(tmp_path, redis_url):
    # The normal build links no STATIC_MODULES: a module without a path is a startup error.
    path = gw.write_config(str(tmp_path / "gateway.lua"),
                           _config(tmp_path, redis_url, [{"name": "hello"}]))
    res = gw.run_cli(["--config", path], timeout=10)
    assert res.returncode == 1, res.stdout + res.stderr
    assert ('module "hello": modules[1] has no path, and no module of that name is linked in'
            in res.stderr), res.stderr
