"""docs/c-api.md's tutorial, followed as written: every block marked `<!-- tutorial-file: PATH
-->` is written to PATH under a fresh folder, every block marked `<!-- tutorial-run -->` runs
there (from a copy of the repository's core/ headers, as in the repository), then the gateway
starts with the tutorial's config and the action answers as the tutorial says."""

import os
import re
import shutil
import subprocess

import gateway as gw

DOC = os.path.join(gw.REPO, "docs", "c-api.md")
MARKED_BLOCK = re.compile(r"<!-- tutorial-(file: (\S+)|run) -->\n```\w*\n(.*?)```", re.S)


def test_c_api_tutorial_works_as_written(make_gateway, tmp_path):
    blocks = MARKED_BLOCK.findall(open(DOC).read())
    files = [(path, body) for kind, path, body in blocks if kind.startswith("file")]
    runs = [body for kind, _, body in blocks if kind == "run"]
    assert [p for p, _ in files] == ["myapp/modules/hello.c", "myapp/gateway.lua",
                                     "myapp/actions/hello_greet.lua"], files
    assert len(runs) == 1, runs
    shutil.copytree(os.path.join(gw.REPO, "core"), tmp_path / "core")
    for path, body in files:
        os.makedirs(os.path.dirname(tmp_path / path), exist_ok=True)
        (tmp_path / path).write_text(body)
    for script in runs:
        res = subprocess.run(["bash", "-euc", script], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, script + res.stdout + res.stderr
    # Step 3's config as written (copied next to it by the harness), on a free port; no Redis.
    g = make_gateway(config=(tmp_path / "myapp" / "gateway.lua").read_text(),
                     workdir=tmp_path / "myapp")
    status, body = g.get("/api/helloGreet?name=Ann")
    assert status == 200, body
    assert body["greeting"] == "Howdy, Ann!", body
