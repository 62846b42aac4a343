"""The README's two commands, as written, as root in a bare Debian bookworm (what a
`debian:bookworm` container is: debootstrap's minbase, no make, compiler or pkg-config).

Slow (it installs the toolchain and every test package, then runs the whole suite inside), so
it runs only with GATEWAY_BARE_DEBIAN=1. GATEWAY_BARE_DEBIAN_ROOT names a pristine minbase tree
to copy (made once with `debootstrap --variant=minbase bookworm DIR`); without it the test runs
debootstrap itself. It needs root, `unshare`, and Debian's mirror. The tree gets the repository's
files (tracked and untracked, not ignored ones: no build/), a resolv.conf, and a policy-rc.d that
stops package scripts from starting services (as in a container, where no init runs). Each
command runs in a private mount namespace (proc and /dev mounted into the tree, gone with it);
the network is the host's, so the run command gets GATEWAY_PORT=0 and is asked from here.
GATEWAY_BARE_DEBIAN_SKIP_TEST=1 runs the run command only."""

import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

import gateway as gw

pytestmark = pytest.mark.skipif(os.environ.get("GATEWAY_BARE_DEBIAN") != "1",
                                reason="slow: set GATEWAY_BARE_DEBIAN=1 (root, debootstrap)")

INSTALL_BOUND = 1800  # s: apt-get of the toolchain and the build, on a shared machine
TEST_BOUND = 5400     # s: the whole suite, inside


def readme_command(which):
    return subprocess.run([os.path.join(gw.REPO, "scripts", "readme-commands.sh"), which],
                          capture_output=True, text=True, check=True, timeout=10).stdout.strip()


def in_tree(root, command, cwd="/root/gateway"):
    """argv running 'command' (bash) as root in 'root', from 'cwd', with a clean
    environment, in a mount namespace of its own."""
    inner = ("cd " + cwd + " && exec env -i HOME=/root TERM=dumb LANG=C.UTF-8 "
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin %s bash -c %s"
             % (os.environ.get("GATEWAY_BARE_ENV", ""), _quote(command)))
    setup = ("mount -t proc proc %(r)s/proc && mount --rbind /dev %(r)s/dev && "
             "mount --make-rslave %(r)s/dev && exec chroot %(r)s bash -c %(i)s"
             % {"r": _quote(root), "i": _quote(inner)})
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", setup]


def _quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def _procs_in(root):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/root" % d) == root:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


@pytest.fixture
def bare_root(tmp_path):
    signal.alarm(0)  # debootstrap and the commands are bounded below, past the suite's limit
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("needs root and unshare", pytrace=False)
    root = str(tmp_path / "root")
    pristine = os.environ.get("GATEWAY_BARE_DEBIAN_ROOT")
    if pristine:
        subprocess.run(["cp", "-a", pristine, root], check=True, timeout=600)
    else:
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root,
                        "http://deb.debian.org/debian"], check=True, timeout=1800,
                       stdout=subprocess.DEVNULL)
    for tool in ("make", "gcc", "cc", "pkg-config"):
        assert not any(os.path.exists(root + d + "/" + tool) for d in ("/usr/bin", "/bin")), \
            "not a bare tree: %s is there" % tool
    shutil.copy("/etc/resolv.conf", root + "/etc/resolv.conf")
    with open(root + "/usr/sbin/policy-rc.d", "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(root + "/usr/sbin/policy-rc.d", 0o755)
    dest = root + "/root/gateway"
    os.makedirs(dest)
    files = subprocess.run(["git", "-C", gw.REPO, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True).stdout
    subprocess.run("tar -C %s --null -T - -cf - | tar -C %s -xf -" % (_quote(gw.REPO), _quote(dest)),
                   shell=True, input=files, check=True, timeout=300)
    yield root
    for pid in _procs_in(root):  # nothing should be left; never let anything outlive the test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_readme_commands_on_bare_debian(bare_root, tmp_path):
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen(in_tree(bare_root, "GATEWAY_PORT=0 " + readme_command("run")),
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        port, deadline = None, time.monotonic() + INSTALL_BOUND
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            m = gw.LISTENING_RE.search(line)
            port = m and int(m.group(2))
        assert port, "run command: no listening line\n" + (tmp_path / "run.log").read_text()[-4000:]
        with urllib.request.urlopen("http://127.0.0.1:%d/api/randomNumber" % port, timeout=10) as r:
            assert r.status == 200 and b"randomNumber" in r.read()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    deadline = time.monotonic() + 30
    while _procs_in(bare_root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _procs_in(bare_root) == [], "the run command left processes behind"
    if os.environ.get("GATEWAY_BARE_DEBIAN_SKIP_TEST") == "1":
        return
    with open(tmp_path / "test.log", "wb") as out:
        res = subprocess.run(in_tree(bare_root, readme_command("test")), stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             timeout=TEST_BOUND, start_new_session=True)
    tail = (tmp_path / "test.log").read_text(errors="replace")[-6000:]
    print(tail)
    assert res.returncode == 0, "test command failed:\n" + tail


def _containerfile_stages(path):
    """[(base image, name, [(instruction, argument)])] from a Containerfile: lines joined at
    a trailing backslash, comments dropped."""
    stages, joined = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#") and not joined:
            continue
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        line, joined = (joined + line).strip(), ""
        if not line:
            continue
        op, _, arg = line.partition(" ")
        if op == "FROM":
            image, _, name = arg.partition(" AS ")
            stages.append((image.strip(), name.strip(), []))
        else:
            stages[-1][2].append((op, arg.strip()))
    return stages


def test_containerfile_stages_in_chroots(tmp_path, redis_url):
    """No container engine here: each stage of the Containerfile is played in a copy of the
    bare tree (debian:bookworm-slim is minbase less docs), its RUN lines run as written, its
    COPY lines copied, then the final image's ENTRYPOINT and CMD run as its USER, with
    GATEWAY_REDIS_URL and --port 0 added, and asked for the example action."""
    import json
    signal.alarm(0)
    pristine = os.environ.get("GATEWAY_BARE_DEBIAN_ROOT")
    if not pristine or os.geteuid() != 0:
        pytest.fail("needs root and GATEWAY_BARE_DEBIAN_ROOT (a debootstrap'd minbase)", pytrace=False)
    roots = {}
    final = None
    for image, name, steps in _containerfile_stages(os.path.join(gw.REPO, "Containerfile")):
        assert image in ("debian:bookworm", "debian:bookworm-slim"), image
        root = str(tmp_path / (name or "final"))
        subprocess.run(["cp", "-a", pristine, root], check=True, timeout=600)
        shutil.copy("/etc/resolv.conf", root + "/etc/resolv.conf")
        with open(root + "/usr/sbin/policy-rc.d", "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(root + "/usr/sbin/policy-rc.d", 0o755)
        workdir, user, entry, cmd = "/", None, [], []
        for op, arg in steps:
            if op == "WORKDIR":
                workdir = arg
                os.makedirs(root + arg, exist_ok=True)
            elif op == "RUN":
                res = subprocess.run(in_tree(root, arg, cwd=workdir),
                                     capture_output=True, text=True, timeout=INSTALL_BOUND)
                assert res.returncode == 0, (arg, res.stdout[-3000:], res.stderr[-3000:])
            elif op == "COPY" and arg == ". .":
                files = subprocess.run(["git", "-C", gw.REPO, "ls-files", "-z", "--cached",
                                        "--others", "--exclude-standard"],
                                       capture_output=True, check=True).stdout
                subprocess.run("tar -C %s --null -T - -cf - | tar -C %s -xf -"
                               % (_quote(gw.REPO), _quote(root + workdir)),
                               shell=True, input=files, check=True, timeout=300)
            elif op == "COPY" and arg.startswith("--from="):
                stage, src, dst = arg[len("--from="):].split()
                subprocess.run(["cp", "-a", "-T", roots[stage] + src, root + dst], check=True)
            elif op == "USER":
                user = arg
            elif op == "ENTRYPOINT":
                entry = json.loads(arg)
            elif op == "CMD":
                cmd = json.loads(arg)
            else:
                assert op in ("EXPOSE",), "step not played here: %s %s" % (op, arg)
        roots[name] = root
        final = (root, workdir, user, entry + cmd)
    root, workdir, user, argv = final
    argv = argv + ["--port", "0"]
    # the user's shell-free command, as the image would run it
    line = "exec runuser -u %s -- env GATEWAY_REDIS_URL=%s %s" % (
        user, redis_url, " ".join(_quote(a) for a in argv))
    proc = subprocess.Popen(in_tree(root, line, cwd=workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        m = None
        deadline = time.monotonic() + 30
        while not m and time.monotonic() < deadline:
            out = proc.stdout.readline().decode()
            if not out:
                break
            m = gw.LISTENING_RE.search(out)
        assert m, proc.stderr.read1(8000) if proc.poll() is not None else "no listening line"
        assert m.group(1) == "0.0.0.0"
        with urllib.request.urlopen("http://127.0.0.1:%s/api/hello?name=Ada" % m.group(2),
                                    timeout=10) as r:
            assert json.loads(r.read())["greeting"] == "hello, Ada"
        os.killpg(proc.pid, signal.SIGTERM)  # docker stop
        proc.wait(timeout=30)
        assert b"shutting down" in proc.stderr.read(), "no clean shutdown"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    for r in roots.values():
        assert _procs_in(r) == []
