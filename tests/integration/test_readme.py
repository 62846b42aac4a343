"""Every `curl` command in README.md's code blocks, run as written against a live gateway
with the example config (gateway.lua.example, as `make run` serves it), its host and port
rewritten to the test's. A command passes when curl succeeds and the status is below 400,
unless the README shows the answer (`HTTP/1.1 422 ...` after a `$ curl -i`) or a comment
says it is an error; JSON shown after a command must match the answer where the README
spells a value out. The tour's own files (a ```lua block starting `-- actions/NAME.lua`)
are loaded beside the example actions, and a token shown as `3f9c...` is the one the
previous answer gave, as a reader would paste it."""

import json
import os
import re
import shlex
import subprocess

import gateway as gw

README = os.path.join(gw.REPO, "README.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
HOSTS = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost):8080")
TOKEN_PLACEHOLDER = re.compile(r"\b[0-9a-f]{4}\.\.\.(?:[0-9a-f]{2})?")
STATUS_LINE = re.compile(r"^HTTP/1\.[01] (\d{3})")
ERROR_COMMENT = re.compile(r"#\s*(?:answers?\s+)?([45]\d\d)\b(?!\s+without)")


def readme_blocks():
    return FENCE.findall(open(README).read())


def tour_files():
    """{relative path: text} of the README's files (```lua blocks naming their path)."""
    files = {}
    for lang, body in readme_blocks():
        m = re.match(r"-- (actions/[\w/]+\.lua)\n", body)
        if lang == "lua" and m:
            files[m.group(1)] = body
    return files


def curl_commands():
    """[(command, shown output lines, expected status or None)] in README order."""
    found = []
    for _lang, body in readme_blocks():
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            text = line[2:] if line.startswith("$ ") else line
            if not re.match(r"\s*curl\s", text):
                i += 1
                continue
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            command, _, comment = _split_comment(text)
            shown = []
            j = i + 1
            # What follows a `$ curl` up to the next prompt, or the `# ...` lines after a
            # plain one, is the answer the README shows.
            while j < len(lines):
                nxt = lines[j]
                if line.startswith("$ ") and not nxt.startswith("$ ") and not re.match(r"\s*curl\s", nxt):
                    shown.append(nxt)
                elif not line.startswith("$ ") and nxt.startswith("# "):
                    shown.append(nxt[2:])
                else:
                    break
                j += 1
            expected = None
            for s in shown:
                m = STATUS_LINE.match(s)
                if m:
                    expected = int(m.group(1))
            m = ERROR_COMMENT.search("#" + comment) if comment else None
            if expected is None and m:
                expected = int(m.group(1))
            found.append((command, shown, expected))
            i = j
    return found


def _split_comment(text):
    """The command without a trailing `# comment` outside quotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        list(lexer)
    except ValueError:
        return text, "", ""
    # shlex cannot tell where the comment began: find a ` #` outside quotes by hand.
    quote = None
    for k, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or text[k - 1].isspace()):
            return text[:k].rstrip(), "#", text[k + 1:].strip()
    return text, "", ""


def _shown_values(shown):
    """Top-level "key":value pairs the README spells out in a JSON answer it shows."""
    pairs = {}
    for s in shown:
        if not s.lstrip().startswith("{"):
            continue
        for key, value in re.findall(r'"(\w+)":("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)', s):
            if "..." in value:
                continue
            pairs.setdefault(key, json.loads(value))
    return pairs


def _flatten(value, out=None):
    out = {} if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            out.setdefault(k, v)
            _flatten(v, out)
    elif isinstance(value, list):
        for v in value:
            _flatten(v, out)
    return out


def test_readme_lists_its_curl_commands():
    commands = [c for c, _, _ in curl_commands()]
    # The first screen's, the tour's and the sessions' commands at least.
    assert any("randomNumber?multiplier=10" in c for c in commands), commands
    assert any("/api/hello" in c for c in commands), commands
    assert any("/api/login" in c for c in commands), commands
    assert "actions/hello.lua" in tour_files()


def test_every_readme_curl_command_works(make_gateway, redis_url, tmp_path):
    tour = tmp_path / "tour"
    for rel, text in tour_files().items():
        path = tour / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo = gw.REPO
    # The example config as `make run` serves it, on a free port and the test's Redis; its
    # relative paths made absolute (this file is not beside the example's).
    config = """
local c = dofile(%(example)s)
c.servers.web.port = 0
c.redis.url = %(redis)s
c.redis.prefix = "readme:"
c.paths.actions = { %(actions)s, %(tour)s }
c.paths.middleware = { %(middleware)s }
c.paths.routes = %(routes)s
c.paths.public = %(public)s
return c
""" % {k: json.dumps(v) for k, v in {
        "example": os.path.join(repo, "gateway.lua.example"), "redis": redis_url,
        "actions": os.path.join(repo, "actions"), "tour": str(tour / "actions"),
        "middleware": os.path.join(repo, "middleware"), "routes": os.path.join(repo, "routes.lua"),
        "public": os.path.join(repo, "public")}.items()}
    g = make_gateway(config=config)
    base = g.url

    token = None
    ran = 0
    for command, shown, expected in curl_commands():
        assert HOSTS.search(command), "a README curl command this test cannot point at the gateway: " + command
        cmd = HOSTS.sub(base, command)
        if TOKEN_PLACEHOLDER.search(cmd):
            assert token, "the README uses a token before any answer gave one: " + command
            cmd = TOKEN_PLACEHOLDER.sub(token, cmd)
        body_file = tmp_path / "body"
        args = shlex.split(cmd) + ["-sS", "-o", str(body_file), "-w", "%{http_code}",
                                   "--max-time", str(gw.bound(10))]
        res = subprocess.run(args, capture_output=True, text=True, timeout=gw.bound(20))
        assert res.returncode == 0, "curl failed: %s\n%s" % (command, res.stderr)
        status = int(res.stdout.strip())
        text = body_file.read_text()
        if expected is None:
            assert status < 400, "README: %s\nanswered %d: %s" % (command, status, text)
        else:
            assert status == expected, "README: %s\nshows %d, answered %d: %s" % (command, expected, status, text)
        answer = text.split("\r\n\r\n", 1)[-1] if text.startswith("HTTP/") else text
        try:
            decoded = json.loads(answer)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            flat = _flatten(decoded)
            for key, value in _shown_values(shown).items():
                assert flat.get(key) == value, "README: %s\nshows %s=%r, the answer has %r" % (
                    command, key, value, flat.get(key))
            if isinstance(decoded.get("token"), str):
                token = decoded["token"]
        ran += 1
    assert ran >= 6, ran


def test_readme_specs_pass_with_the_example_actions(tmp_path):
    """README's busted specs (a ```lua block starting `-- tests/..._spec.lua`), run as a
    project of the example actions runs them."""
    specs = {}
    for lang, body in readme_blocks():
        m = re.match(r"-- (tests/[\w/]+_spec\.lua)\n", body)
        if lang == "lua" and m:
            specs[m.group(1)] = body
    assert specs, "README has no spec block"
    project = tmp_path / "project"
    for rel, text in specs.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    repo = gw.REPO
    (project / "gateway.lua").write_text("""
local c = dofile(%s)
c.paths.actions = { %s }
c.paths.middleware = { %s }
return c
""" % (json.dumps(os.path.join(repo, "gateway.lua.example")), json.dumps(os.path.join(repo, "actions")),
       json.dumps(os.path.join(repo, "middleware"))))
    env = gw.child_env({"GATEWAY_LOG_LEVEL": "crit"})
    proc = subprocess.run(["busted", "--lua=lua5.4", "--lpath=" + os.path.join(repo, "lua", "?.lua"),
                           "--output=plainTerminal", "tests"], cwd=str(project), env=env,
                          capture_output=True, text=True, timeout=gw.bound(60))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failures / 0 errors" in proc.stdout, proc.stdout
