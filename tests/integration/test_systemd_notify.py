"""systemd's readiness protocol (docs/install.md "systemd"): with NOTIFY_SOCKET set, the
gateway sends READY=1 once it listens (with workers, once, from the first worker) and
STOPPING=1 when a shutdown starts; a path starting with '@' is an abstract socket."""

import os
import signal
import socket

import pytest

import gateway as gw

pytestmark = pytest.mark.asan


def _listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path if not path.startswith("@") else "\0" + path[1:])
    s.settimeout(gw.bound(5))
    return s


def _messages(s, timeout):
    out = []
    s.settimeout(timeout)
    try:
        while True:
            out.append(s.recv(4096).decode())
    except socket.timeout:
        pass
    return out


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_then_stopping(make_gateway, tmp_path, abstract):
    path = "@gw-notify-%d-%d" % (os.getpid(), abstract) if abstract else str(tmp_path / "notify")
    s = _listen(path)
    try:
        g = make_gateway(env={"NOTIFY_SOCKET": path})
        assert s.recv(4096) == b"READY=1"  # sent after the listening line was printed
        assert g.get("/api/randomNumber")[0] == 200
        g.signal(signal.SIGTERM)
        assert s.recv(4096) == b"STOPPING=1"
        assert g.wait(gw.bound(10)) == 0
    finally:
        s.close()


def test_one_ready_with_workers(make_gateway, tmp_path):
    path = str(tmp_path / "notify")
    s = _listen(path)
    try:
        g = make_gateway(env={"NOTIFY_SOCKET": path}, args=["--workers", "2"])
        assert g.wait_for_log(r"worker 1 started", timeout=gw.bound(5))
        assert s.recv(4096) == b"READY=1"
        # Both workers up and serving, and still one READY=1.
        for _ in range(4):
            assert g.get("/api/randomNumber")[0] == 200
        assert _messages(s, 0.5) == []
    finally:
        s.close()


def test_no_socket_no_harm(make_gateway, tmp_path):
    for value in (str(tmp_path / "missing"), "relative/path", "@", ""):
        g = make_gateway(env={"NOTIFY_SOCKET": value})
        assert g.get("/api/randomNumber")[0] == 200
        g.stop()
