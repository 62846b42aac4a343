"""`gateway generate action|middleware|handler|task NAME [--dir DIR]` (README "Generating
files"): each kind into a new project, which `gateway --check` then loads and whose
generated specs pass under busted with the spec helper (docs/testing.md)."""

import os
import subprocess

import pytest

import gateway as gw

KINDS = {
    # kind: (the file, its spec)
    "action": ("actions/{}.lua", "tests/actions/{}_spec.lua"),
    "middleware": ("middleware/{}.lua", "tests/middleware/{}_spec.lua"),
    "handler": ("actions/{}.lua", "tests/handlers/{}_spec.lua"),
    "task": ("tasks/{}.lua", "tests/tasks/{}_spec.lua"),
}


def _output(res):
    return res.stdout + "\n" + res.stderr


def _project(tmp_path):
    project = tmp_path / "myapp"
    project.mkdir()
    (project / "gateway.lua").write_text('return { name = "myapp" }\n')
    return project


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_each_kind_is_generated_loaded_and_its_spec_passes(tmp_path):
    project = _project(tmp_path)
    for kind in KINDS:
        name = "my" + kind.capitalize()
        res = gw.run_cli(["generate", kind, name], cwd=str(project))
        assert res.returncode == 0, _output(res)
        for rel in KINDS[kind]:
            path = rel.format(name)
            assert (project / path).is_file(), path
            assert "created " + path in res.stdout, res.stdout
        if kind == "task":
            assert "tasks run where the config has tasks = { enabled = true }" in res.stdout
            assert "so make run idempotent" in (project / "tasks/myTask.lua").read_text()
    assert (project / ".busted").is_file()

    res = gw.run_cli(["--config", str(project / "gateway.lua"), "--check"])
    assert res.returncode == 0, _output(res)
    for name in ("myAction", "myMiddleware"):
        assert name in res.stdout, res.stdout
    assert "handlers: 1 (2 routes)" in res.stdout, res.stdout
    assert "myTask (queue default)" in res.stdout, res.stdout  # loaded from tasks/

    # The generated specs, as the project runs them: `busted` in its folder (.busted
    # names Lua 5.4, the gateway's lua/ folder and tests/).
    env = gw.child_env({"GATEWAY_LOG_LEVEL": "crit"})
    proc = subprocess.run(["busted", "--output=plainTerminal"], cwd=str(project), env=env,
                          capture_output=True, text=True, timeout=gw.bound(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failures / 0 errors" in proc.stdout, proc.stdout
    # Every spec ran: 3 action, 1 middleware, 3 handler, 3 task.
    assert "10 successes" in proc.stdout, proc.stdout


def test_dir_option_writes_there(tmp_path):
    res = gw.run_cli(["generate", "action", "elsewhere", "--dir", str(tmp_path / "p")])
    assert res.returncode == 0, _output(res)
    assert (tmp_path / "p/actions/elsewhere.lua").is_file()
    assert (tmp_path / "p/tests/actions/elsewhere_spec.lua").is_file()
    assert "created %s/actions/elsewhere.lua" % (tmp_path / "p") in res.stdout


def test_refuses_to_overwrite_and_writes_nothing(tmp_path):
    project = _project(tmp_path)
    assert gw.run_cli(["generate", "action", "taken"], cwd=str(project)).returncode == 0
    action = project / "actions/taken.lua"
    action.write_text("-- mine\n")
    res = gw.run_cli(["generate", "action", "taken"], cwd=str(project))
    assert res.returncode == 1, _output(res)
    assert "actions/taken.lua already exists; nothing was written" in res.stderr
    assert action.read_text() == "-- mine\n"

    # Only the spec exists: the action is not written either.
    (project / "tests/handlers").mkdir(parents=True)
    (project / "tests/handlers/items_spec.lua").write_text("-- my spec\n")
    before = _files(project)
    res = gw.run_cli(["generate", "handler", "items"], cwd=str(project))
    assert res.returncode == 1, _output(res)
    assert "tests/handlers/items_spec.lua already exists" in res.stderr
    assert _files(project) == before


@pytest.mark.asan
@pytest.mark.parametrize("name", ["1abc", "a-b", "../evil", "a/b", "", "x" * 65, "a b", "é"])
def test_refuses_a_bad_name(tmp_path, name):
    project = _project(tmp_path)
    res = gw.run_cli(["generate", "action", name], cwd=str(project))
    assert res.returncode == 2, _output(res)
    assert "is not a valid name" in res.stderr
    assert _files(project) == ["gateway.lua"]


@pytest.mark.asan
@pytest.mark.parametrize("args,message", [
    (["generate"], "usage: gateway generate"),
    (["generate", "action"], "usage: gateway generate"),
    (["generate", "widget", "x"], 'cannot generate "widget"'),
    (["generate", "action", "x", "y"], 'unexpected argument "y"'),
    (["generate", "action", "x", "--dir"], "--dir needs a folder"),
    (["generate", "action", "x", "--force"], 'unknown option "--force"'),
])
def test_bad_usage(tmp_path, args, message):
    project = _project(tmp_path)
    res = gw.run_cli(args, cwd=str(project))
    assert res.returncode == 2, _output(res)
    assert message in res.stderr
    assert _files(project) == ["gateway.lua"]


def test_help_names_generate():
    res = gw.run_cli(["--help"])
    assert res.returncode == 0
    assert "gateway generate action|middleware|handler|task NAME [--dir DIR]" in res.stdout
