"""scripts/check-layers.py: core/'s floors and circles (docs/architecture.md).

The real tree must pass; small trees made here must fail for each rule the
script keeps: an include that runs up a floor, a circle on one floor, and a
call into a floor above found only in the object files."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "check-layers.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=60)


def tree(tmp_path, files):
    core = tmp_path / "core"
    for path, text in files.items():
        p = core / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(core)


def test_the_core_keeps_its_floors():
    objects = os.path.join(ROOT, "build", "obj")
    args = ["--objects", objects] if os.path.isdir(objects) else []
    res = run(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no circle" in res.stdout


def test_an_include_up_a_floor_is_refused(tmp_path):
    core = tree(tmp_path, {
        "base/log.h": '#include "vm/vm.h"\n',
        "base/log.c": '#include "base/log.h"\n',
        "vm/vm.h": "int vm(void);\n",
        "vm/vm.c": '#include "vm/vm.h"\n#include "base/log.h"\n',
    })
    res = run("--core", core)
    assert res.returncode == 1
    assert "base/log uses vm/vm, a floor above it" in res.stdout, res.stdout
    assert '#include "vm/vm.h" in base/log.h' in res.stdout


def test_a_circle_on_one_floor_is_refused(tmp_path):
    core = tree(tmp_path, {
        "net/a.c": '#include "net/b.h"\n',
        "net/a.h": "",
        "net/b.c": '#include "net/c.h"\n',
        "net/b.h": "",
        "net/c.c": '#include "net/a.h"\n',
        "net/c.h": "",
        "main.c": '#include "net/a.h"\n',
    })
    res = run("--core", core)
    assert res.returncode == 1
    assert "circle: net/a, net/b, net/c" in res.stdout, res.stdout


def test_a_call_up_a_floor_is_found_in_the_objects(tmp_path):
    # No include ties them: only the symbol vm_run, defined by vm/vm.o and
    # called by base/gw.o, does.
    core = tree(tmp_path, {
        "base/gw.c": "int vm_run(void);\nint gw(void) { return vm_run(); }\n",
        "vm/vm.c": "int vm_run(void) { return 1; }\n",
    })
    objects = tmp_path / "obj"
    for unit in ("base/gw", "vm/vm"):
        (objects / os.path.dirname(unit)).mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-c", os.path.join(core, unit + ".c"), "-o", str(objects / (unit + ".o"))],
                       check=True, timeout=60)
    assert run("--core", core).returncode == 0  # the includes alone see nothing
    res = run("--core", core, "--objects", str(objects))
    assert res.returncode == 1
    assert "base/gw uses vm/vm, a floor above it: uses vm_run" in res.stdout, res.stdout
