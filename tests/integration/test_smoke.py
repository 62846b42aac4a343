"""The black-box smoke (scripts/smoke.py) for a short while: mutated HTTP requests (pipelined
too), WebSocket frames after a valid handshake and TCP lines, from a fixed seed, against a
gateway with two workers and the TCP server on. After every batch the gateway must still
answer health requests with both workers in place; at teardown it must exit cleanly with no
sanitizer report. Marked `asan`: it runs again against the sanitizer build. Longer runs:
`python3 scripts/smoke.py --gateway build/gateway --seconds 3600` (docs/reliability.md)."""

import os
import subprocess
import sys

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

SMOKE = os.path.join(gw.REPO, "scripts", "smoke.py")
SECONDS = float(os.environ.get("SMOKE_SECONDS", "10"))
SEED = int(os.environ.get("SMOKE_SEED", "14"))


def test_smoke_keeps_serving(make_gateway, tmp_path):
    g = make_gateway({"workers": 2, "servers": {"socket": {"enabled": True, "port": 0}},
                      "logging": {"level": "warning"}})
    g.wait_socket_listening()
    log = tmp_path / "smoke-inputs.jsonl"
    cmd = [sys.executable, SMOKE, "--port", str(g.port), "--socket-port", str(g.socket_port),
           "--pid", str(g.pid), "--seconds", str(SECONDS), "--seed", str(SEED), "--log", str(log)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=SECONDS + 120)
    text = out.stdout.decode(errors="replace")
    assert out.returncode == 0, "%s\ninputs: %s\n%s" % (text, log, g.describe())
    assert "the gateway kept serving" in text
    assert g.alive()
    g.assert_serving()
