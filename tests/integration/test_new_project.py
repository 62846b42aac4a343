"""`gateway new DIR` (docs/install.md "A project of your own"): the layout it writes, that it
never overwrites, and that the project serves from any folder (paths in a config are relative
to the config file's folder) and its busted spec passes."""

import os
import subprocess

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

FILES = ("gateway.lua", "routes.lua", "actions/hello.lua", "middleware/requireUser.lua",
         "public/index.html", "tests/hello_spec.lua", "README.md")


def test_new_writes_the_layout(gateway_bin, tmp_path):
    res = gw.run_cli(["new", "myapp"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    for f in FILES:
        assert (tmp_path / "myapp" / f).is_file(), f
        assert "created myapp/%s" % f in res.stdout
    assert "gateway --config myapp/gateway.lua" in res.stdout
    text = (tmp_path / "myapp" / "gateway.lua").read_text()
    assert 'name = "myapp"' in text and 'prefix = "myapp:"' in text
    res = gw.run_cli(["--config", "myapp/gateway.lua", "--check"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "hello (versions 1)  %s/myapp/actions/hello.lua" % tmp_path in res.stdout
    assert "requireUser" in res.stdout and "routes: 1" in res.stdout


def test_new_never_overwrites(gateway_bin, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / ".git").write_text("x")          # hidden files count
    (tmp_path / "afile").write_text("x")
    for target, why in (("full", "exists and is not empty"), ("afile", "not a folder"),
                        ("missing/parent/app", "No such file")):
        res = gw.run_cli(["new", target], cwd=str(tmp_path))
        assert res.returncode == 1 and why in res.stderr, (target, res.stderr)
    assert sorted(os.listdir(tmp_path / "full")) == [".git"]
    assert (tmp_path / "afile").read_text() == "x"
    (tmp_path / "empty").mkdir()
    assert gw.run_cli(["new", "empty/"], cwd=str(tmp_path)).returncode == 0   # an empty folder is fine
    assert 'name = "empty"' in (tmp_path / "empty" / "gateway.lua").read_text()
    for args in (["new"], ["new", "a", "b"], ["new", "--config"]):
        res = gw.run_cli(args, cwd=str(tmp_path))
        assert res.returncode == 2 and "usage: gateway new DIR" in res.stderr, args


def test_new_project_serves_from_another_folder(gateway_bin, redis_url, tmp_path):
    assert gw.run_cli(["new", "myapp"], cwd=str(tmp_path)).returncode == 0
    app = tmp_path / "myapp"
    text = (app / "gateway.lua").read_text()
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    g = gw.Gateway(str(tmp_path), text, cwd=str(elsewhere), args=["--redis", redis_url])
    g.config_path = str(app / "gateway.lua")  # the project's own file, written back as it is
    try:
        g.start()
        assert g.get("/api/hello?name=%20Ada%20&shout=yes")[1]["greeting"] == "HELLO, ADA"
        status, body = g.get("/api/hello")
        assert status == 422 and body["error"] == "name is a required parameter for this action"
        assert g.get("/api/hello/Grace")[1]["greeting"] == "hello, Grace"
        r = g.request("GET", "/public/")
        assert r.status == 200 and b"<h1>myapp</h1>" in r.body
        # A new action and a SIGHUP: served without a restart.
        (app / "actions" / "bye.lua").write_text(
            'return { name = "bye", description = "d", run = function(api, data, next)\n'
            '  data.response.bye = true next() end }\n')
        offset = g.log_size()
        g.signal(__import__("signal").SIGHUP)
        assert g.wait_for_log(r"reload done", timeout=gw.bound(5), since=offset)
        assert g.get("/api/bye")[1]["bye"] is True
    finally:
        g.stop()
    assert g.teardown_problems() == []


def test_new_project_spec_passes(gateway_bin, tmp_path):
    assert gw.run_cli(["new", "myapp"], cwd=str(tmp_path)).returncode == 0
    res = subprocess.run(["busted", "--lua=lua5.4", "tests"], cwd=str(tmp_path / "myapp"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 success / 0 failures" in res.stdout
