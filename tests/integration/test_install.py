"""`make install` (docs/install.md): the layout, a relocatable Lua runtime, a C module built
against the installed gateway.pc, the man page and the systemd unit.

The module fixture copies the sources to a temporary folder, runs `make install
DESTDIR=<tmp>/dest PREFIX=/usr` there, then renames the source copy, so the installed binary
cannot fall back on the source tree it was built from (its baked-in lua/ is gone)."""

import os
import re
import shutil
import signal
import subprocess

import pytest

import gateway as gw


def _copy_sources(dest):
    """The repository's files (git's tracked and untracked ones, not the ignored build/), or,
    outside a git checkout (a tarball, the bare-Debian test's copy), everything but build/."""
    if os.path.isdir(os.path.join(gw.REPO, ".git")) and shutil.which("git"):
        files = subprocess.run(["git", "-C", gw.REPO, "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], capture_output=True, check=True).stdout
        os.makedirs(dest)
        subprocess.run("tar -C '%s' --null -T - -cf - | tar -C '%s' -xf -" % (gw.REPO, dest),
                       shell=True, input=files, check=True, timeout=120)
    else:
        shutil.copytree(gw.REPO, dest, symlinks=True,
                        ignore=lambda d, names: ["build"] if d == gw.REPO else [])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    signal.alarm(0)  # a full build; bounded by the timeout below
    base = tmp_path_factory.mktemp("install")
    src, dest = str(base / "src"), str(base / "dest")
    _copy_sources(src)
    res = subprocess.run(["make", "-C", src, "-j2", "install", "DESTDIR=" + dest, "PREFIX=/usr"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    os.rename(src, src + "-moved")
    return {"base": str(base), "dest": dest, "usr": dest + "/usr", "moved_src": src + "-moved",
            "src": src}


def run(args, **kw):
    kw.setdefault("timeout", 30)
    return subprocess.run(args, capture_output=True, text=True, env=gw.child_env(kw.pop("env", None)),
                          **kw)


def test_layout(installed):
    usr = installed["usr"]
    for path in ("bin/gateway", "share/gateway/lua/gateway/runtime.lua",
                 "share/gateway/lua/gateway/new.lua", "share/gateway/gateway.lua.example",
                 "include/gateway/gateway.h", "lib/pkgconfig/gateway.pc",
                 "share/man/man1/gateway.1", "lib/systemd/system/gateway.service",
                 "lib/gateway/lua/gateway/core.so"):
        assert os.path.exists(os.path.join(usr, path)), path
    assert os.access(usr + "/bin/gateway", os.X_OK)
    unit = open(usr + "/lib/systemd/system/gateway.service").read()
    assert "ExecStart=/usr/bin/gateway --config /etc/gateway/gateway.lua" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    res = run(["groff", "-man", "-Tascii", "-ww", usr + "/share/man/man1/gateway.1"],
              env={"GROFF_NO_SGR": "1"})
    page = re.sub(".\b", "", res.stdout)
    assert res.returncode == 0 and res.stderr == "", res.stderr  # groff's warnings
    for word in ("--config FILE", "gateway new DIR", "SIGHUP", "GATEWAY_LUA_DIR", "NOTIFY_SOCKET",
                 "share/gateway/lua", "gateway.pc"):
        assert word in page, word


def test_systemd_unit_verifies(installed, tmp_path):
    usr = installed["usr"]
    unit = open(usr + "/lib/systemd/system/gateway.service").read()
    unit = unit.replace("/usr/bin/gateway", usr + "/bin/gateway")
    path = tmp_path / "gateway.service"
    path.write_text(unit)
    res = run(["systemd-analyze", "verify", "--man=no", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr.strip() == "", res.stderr


def test_installed_binary_uses_its_own_lua_dir(installed, tmp_path):
    usr = installed["usr"]
    res = run([usr + "/bin/gateway", "--check"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "lua %s/share/gateway/lua\n" % usr in res.stdout
    # Moved as a whole, it still finds it.
    moved = installed["base"] + "/elsewhere"
    shutil.copytree(usr, moved, symlinks=True)
    res = run([moved + "/bin/gateway", "--check"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "lua %s/share/gateway/lua\n" % moved in res.stdout
    # GATEWAY_LUA_DIR beats it; a wrong one fails with the reason.
    res = run([usr + "/bin/gateway", "--check"], cwd=str(tmp_path),
              env={"GATEWAY_LUA_DIR": str(tmp_path / "nowhere")})
    assert res.returncode == 1 and "gateway.runtime" in res.stderr, res.stderr
    res = run([usr + "/bin/gateway", "--check"], cwd=str(tmp_path),
              env={"GATEWAY_LUA_DIR": os.path.join(gw.REPO, "lua")})
    assert res.returncode == 0 and "lua %s/lua\n" % gw.REPO in res.stdout


def test_build_tree_binary_falls_back_on_its_sources(gateway_bin, tmp_path):
    res = gw.run_cli(["--check"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "lua %s/lua\n" % gw.REPO in res.stdout


def test_installed_gateway_serves_a_new_project_with_a_module(installed, redis_url, tmp_path):
    usr = installed["usr"]
    gateway = usr + "/bin/gateway"
    # A C module built against the installed header and gateway.pc only.
    env = {"PKG_CONFIG_PATH": usr + "/lib/pkgconfig"}
    cflags = run(["pkg-config", "--cflags", "gateway"], env=env)
    assert cflags.returncode == 0, cflags.stderr
    assert "-I%s/lib/pkgconfig/../../include/gateway" % usr in cflags.stdout
    assert gw.REPO not in cflags.stdout
    res = run(["pkg-config", "--modversion", "gateway"], env=env)
    assert res.stdout.strip() == gw.run_cli(["--version"]).stdout.split()[1]

    res = run([gateway, "new", "myapp"], cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    app = tmp_path / "myapp"
    (app / "modules").mkdir()
    shutil.copy(os.path.join(gw.REPO, "examples/modules/hello/hello.c"), app / "modules")
    res = run(["sh", "-c", "cc -shared -fPIC -Wall $(pkg-config --cflags gateway) "
               "-o modules/hello.so modules/hello.c"], cwd=str(app), env=env)
    assert res.returncode == 0, res.stderr
    (app / "actions" / "greet.lua").write_text(
        'return { name = "greet", description = "d", inputs = { name = { required = true } },\n'
        '  run = function(api, data, next) data.response.greeting = api.hello.greet(data.params.name)'
        ' next() end }\n')
    text = (app / "gateway.lua").read_text()
    text = text.replace('  logging = { level = "info" },',
                        '  logging = { level = "info" },\n'
                        '  modules = { { name = "hello", path = "modules/hello.so",'
                        ' config = { greeting = "Hi" } } },')
    (app / "gateway.lua").write_text(text)

    # From another folder: paths in the config are relative to its own folder.
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    g = gw.Gateway(str(tmp_path), text, binary=gateway, cwd=str(elsewhere),
                   args=["--redis", redis_url])
    g.config_path = str(app / "gateway.lua")
    try:
        g.start()
        assert g.get("/api/hello?name=Ada")[1]["greeting"] == "hello, Ada"
        assert g.get("/api/hello/Grace")[1]["greeting"] == "hello, Grace"  # routes.lua
        assert g.get("/api/greet?name=Ada")[1]["greeting"] == "Hi, Ada!"    # the C module
        assert b"<h1>myapp</h1>" in g.request("GET", "/public/").body       # public/
        assert not os.path.exists(installed["src"])
    finally:
        g.stop()
    assert g.teardown_problems() == []


def test_uninstall_removes_every_file(installed):
    """Last in this file: it empties the installed tree."""
    res = subprocess.run(["make", "-C", installed["moved_src"], "uninstall",
                          "DESTDIR=" + installed["dest"], "PREFIX=/usr"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    left = [os.path.join(d, f) for d, _, files in os.walk(installed["dest"]) for f in files]
    assert left == [], left
