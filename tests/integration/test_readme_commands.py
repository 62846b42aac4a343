"""The README's first two commands, read from README.md by scripts/readme-commands.sh (the
same reader .ci/run uses for the test command, which CI runs as written).

The run command serves until interrupted, so it is run here as written, from the repository,
with GATEWAY_PORT=0 (any free port; the command itself is untouched), asked for an action,
then interrupted as a user would (Ctrl-C: SIGINT to its process group). On a bare Debian,
both commands: test_bare_debian.py (GATEWAY_BARE_DEBIAN=1)."""

import os
import re
import signal
import subprocess
import time
import urllib.request

import gateway as gw

SCRIPT = os.path.join(gw.REPO, "scripts", "readme-commands.sh")


def readme_command(which, readme=None):
    args = [SCRIPT, which] + ([readme] if readme else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=10)


def test_first_block_holds_the_two_commands():
    run, test = readme_command("run"), readme_command("test")
    assert run.returncode == 0 and test.returncode == 0, (run.stderr, test.stderr)
    assert run.stdout.strip() == "scripts/bootstrap.sh run"
    assert test.stdout.strip() == "scripts/bootstrap.sh test"


def test_a_block_without_exactly_two_commands_fails(tmp_path):
    for body in ("make run\n", "a\nb  # two\nc\n", "# only a comment\n"):
        readme = tmp_path / "README.md"
        readme.write_text("# x\n\n```sh\n" + body + "```\n\n```sh\nnot this block\n```\n")
        res = readme_command("test", str(readme))
        assert res.returncode == 1, (body, res.stdout)
        assert "exactly two commands" in res.stderr
    readme.write_text("```\nfirst   # comment\n\n  second\n```\n")
    assert readme_command("run", str(readme)).stdout == "first\n"
    assert readme_command("test", str(readme)).stdout == "  second\n"


def _group_pids(pgid):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    pids.append(int(d))
            except ProcessLookupError:
                pass
    return pids


def test_readme_run_command_serves_then_stops_on_ctrl_c(gateway_bin, tmp_path):
    cmd = readme_command("run").stdout.strip()
    env = gw.child_env({"GATEWAY_PORT": "0"})
    err_path = tmp_path / "run.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(["bash", "-c", cmd], cwd=gw.REPO, env=env, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        port = None
        deadline = time.monotonic() + gw.bound(40)  # may rebuild what changed
        out = []
        while time.monotonic() < deadline and port is None:
            line = proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            out.append(line)
            m = gw.LISTENING_RE.search(line)
            if m:
                port = int(m.group(2))
        assert port, "no listening line: %s\n%s" % ("".join(out), err_path.read_text())
        with urllib.request.urlopen("http://127.0.0.1:%d/api/randomNumber?multiplier=10" % port,
                                    timeout=10) as r:
            assert r.status == 200
            assert b'"randomNumber"' in r.read()
        text = err_path.read_text()
        m = re.search(r"private redis-server at unix://(\S+)/redis\.sock", text)
        assert m, text
        redis_dir = m.group(1)
        assert os.path.isdir(redis_dir)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=gw.bound(15))
        deadline = time.monotonic() + gw.bound(5)
        while _group_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group_pids(proc.pid) == [], "processes left behind"
        text = err_path.read_text()
        assert "shutting down" in text
        assert not os.path.exists(redis_dir), "the private Redis folder was not removed"
    finally:
        if proc.poll() is None or _group_pids(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        proc.stdout.close()
