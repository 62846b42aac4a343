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


def in_tree(root, command):
    """argv running 'command' (bash) as root in 'root', from /root/gateway, with a clean
    environment, in a mount namespace of its own."""
    inner = ("cd /root/gateway && exec env -i HOME=/root TERM=dumb LANG=C.UTF-8 "
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
