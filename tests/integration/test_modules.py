"""C modules (issue 6, core/gateway.h): the example `hello` module loaded from the config,
called from a Lua action over HTTP and WebSocket, its async api.hello.wait (the loop keeps
serving meanwhile; a client that leaves or an actionTimeout cancels it), its Redis call
api.hello.incr (gateway_redis_command; 503 while Redis is unreachable), its global C middleware
(gateway_register_middleware: the X-Hello header), and the startup errors for a bad path, a
module without gateway_module_init and an API-version mismatch. Marked `asan`: `make
test-asan` runs them again against the sanitizer build. `make test` builds the module."""

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

HELLO_SO = os.path.join(gw.REPO, "build", "modules", "hello.so")
MODULE_ACTIONS = os.path.join(gw.HERE, "module_actions")


@pytest.fixture(scope="module")
def hello_so():
    if not os.path.exists(HELLO_SO):
        pytest.fail("%s not built (run `make modules`)" % HELLO_SO, pytrace=False)
    return HELLO_SO


def _config(tmp_path, redis_url, modules, actions=(MODULE_ACTIONS,)):
    base = gw.default_config(str(tmp_path), redis_url, actions=list(actions), middleware=[])
    base["modules"] = modules
    return base


def _build_so(tmp_path, name, source):
    """Compile a one-file module into tmp_path/<name>.so with gateway.h on the include path."""
    src = tmp_path / (name + ".c")
    src.write_text(source)
    out = tmp_path / (name + ".so")
    cflags = subprocess.run(["pkg-config", "--cflags", "lua5.4", "libuv"], capture_output=True,
                            text=True, check=True).stdout.split()
    subprocess.run([shutil.which("cc") or "cc", "-shared", "-fPIC", *cflags,
                    "-I" + os.path.join(gw.REPO, "core"), "-o", str(out), str(src)], check=True)
    return str(out)


def _output(res):
    return res.stdout + "\n" + res.stderr


def _start_error(tmp_path, redis_url, modules, mode):
    path = gw.write_config(str(tmp_path / "gateway.lua"), _config(tmp_path, redis_url, modules))
    res = gw.run_cli(["--config", path] + (["--check"] if mode == "check" else []), timeout=10)
    assert res.returncode == 1, _output(res)
    assert "listening" not in res.stdout, _output(res)
    assert not any(m in res.stderr for m in gw.SANITIZER_MARKERS), _output(res)
    return _output(res)


# -- loaded and called --------------------------------------------------------------------

def test_hello_over_http(make_gateway, tmp_path, redis_url, hello_so):
    # The path is relative to the config file's folder.
    os.makedirs(tmp_path / "gw0" / "modules")
    shutil.copy(hello_so, tmp_path / "gw0" / "modules" / "hello.so")
    g = make_gateway(config=_config(tmp_path / "gw0", redis_url, [
        {"name": "hello", "path": "modules/hello.so", "config": {"greeting": "Howdy"}}]))
    status, body = g.get("/api/helloGreet?name=Ann")
    assert status == 200, body
    assert body["greeting"] == "Howdy, Ann!", body
    assert "string expected" in body["misuse"], body
    assert g.wait_for_log(r'loaded, greeting "Howdy".*module=hello'), g.log_text()


def test_hello_default_greeting_over_websocket(make_gateway, tmp_path, redis_url, hello_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}]))

    async def go():
        async with g.ws_connect() as ws:
            await ws.send(json.dumps({"action": "helloGreet", "params": {"name": "Bo"},
                                      "request_id": "m1"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    env = asyncio.run(asyncio.wait_for(go(), 30))
    assert env["status"] == 200, env
    assert env["data"]["greeting"] == "Hello, Bo!", env


def test_check_lists_modules(tmp_path, redis_url, hello_so):
    path = gw.write_config(str(tmp_path / "gateway.lua"), _config(
        tmp_path, redis_url, [{"name": "hello", "path": hello_so}]))
    res = gw.run_cli(["--config", path, "--check"], timeout=10)
    assert res.returncode == 0, _output(res)
    assert "modules: 1" in res.stdout and "hello  " + hello_so in res.stdout, res.stdout


# -- async: api.hello.wait(ms) ------------------------------------------------------------

def test_hello_wait_does_not_block_the_loop(make_gateway, tmp_path, redis_url, hello_so):
    # Long enough for ten requests on a slow build; the order in the log is what is checked.
    ms = int(gw.bound(2.0) * 1000)
    config = _config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}],
                     actions=[MODULE_ACTIONS, gw.EXAMPLE_ACTIONS])
    config["general"]["actionTimeout"] = ms + 10000
    g = make_gateway(config=config)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        offset = g.log_size()
        waiting = pool.submit(g.get, "/api/helloWait?ms=%d" % ms, timeout=ms / 1000 + 10)
        assert g.wait_for_log(r"helloWait waiting ms=%d" % ms, timeout=10, since=offset), \
            g.log_text()
        for _ in range(10):
            status, body = g.get("/api/randomNumber")
            assert status == 200, body
        status, body = waiting.result(timeout=ms / 1000 + 10)
        elapsed = time.monotonic() - started
    assert status == 200, body
    assert body["waited"] == ms, body
    assert elapsed >= ms / 1000 - 0.01, elapsed
    # All ten were answered while the wait was pending: the gateway logged them after the wait
    # began and before the waiting action completed (one process writes its log in order).
    done = [line.split(" action=")[1].split()[0] for line in g.log_since(offset).splitlines()
            if " action=" in line]
    assert done == ["randomNumber"] * 10 + ["helloWait"], done
    assert "number expected" in body["misuse"], body
    assert "only be called from an action" in body["in_coroutine"], body


def test_hello_wait_cancelled_when_websocket_client_leaves(make_gateway, tmp_path, redis_url,
                                                          hello_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}]))

    async def go():
        async with g.ws_connect() as ws:
            await ws.send(json.dumps({"action": "helloWait", "params": {"ms": 800},
                                      "request_id": "w1"}))
            # Blocks this (single) client coroutine: nothing else runs meanwhile.
            assert g.wait_for_log(r"helloWait waiting ms=800", timeout=10), g.log_text()
        # closed mid-wait

    asyncio.run(asyncio.wait_for(go(), 30))
    assert g.wait_for_log(r"wait\(800\) cancelled.*module=hello", timeout=5), g.log_text()
    time.sleep(1.0)  # past the timer: it must never fire into the freed wait
    status, body = g.get("/api/helloWait?ms=10")
    assert status == 200 and body["waited"] == 10, body
    assert "wait(10) cancelled" not in g.log_text()


def test_hello_wait_past_action_timeout(make_gateway, tmp_path, redis_url, hello_so):
    config = _config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}])
    config["general"]["actionTimeout"] = 200
    g = make_gateway(config=config)
    # The 504 comes at the 200 ms actionTimeout: well before the wait would end, even with the
    # bound widened for a slow build.
    limit = gw.bound(1.2)
    ms = int((limit + 1.0) * 1000)
    started = time.monotonic()
    status, body = g.get("/api/helloWait?ms=%d" % ms)
    assert status == 504, body
    assert gw.error_text(body) == "action timed out", body
    assert time.monotonic() - started < limit
    assert g.wait_for_log(r"wait\(%d\) cancelled.*module=hello" % ms, timeout=5), g.log_text()
    # Past the timer: it must never fire into the freed wait (the point of this sleep).
    time.sleep(max(0.0, started + ms / 1000 + 0.3 - time.monotonic()))
    status, body = g.get("/api/helloWait?ms=10")
    assert status == 200 and body["waited"] == 10, body


# -- startup errors -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["start", "check"])
def test_missing_file(tmp_path, redis_url, mode):
    out = _start_error(tmp_path, redis_url, [{"name": "hello", "path": "nope/hello.so"}], mode)
    assert 'module "hello": cannot load' in out, out
    assert "nope/hello.so" in out, out  # dlerror's text names the file


def test_missing_init(tmp_path, redis_url):
    so = _build_so(tmp_path, "noinit", "#include <gateway.h>\nGATEWAY_MODULE_DECLARE();\n")
    out = _start_error(tmp_path, redis_url, [{"name": "noinit", "path": so}], "start")
    assert 'module "noinit"' in out and "gateway_module_init" in out, out


def test_missing_version(tmp_path, redis_url):
    so = _build_so(tmp_path, "nover", "#include <gateway.h>\n"
                   "int gateway_module_init(struct gateway_module *m) { (void)m; return 0; }\n")
    out = _start_error(tmp_path, redis_url, [{"name": "nover", "path": so}], "start")
    assert 'module "nover"' in out and "gateway_module_api_version" in out, out


def test_version_mismatch(tmp_path, redis_url):
    so = _build_so(tmp_path, "future", "#include <gateway.h>\n"
                   "const int gateway_module_api_version = 999;\n"
                   "int gateway_module_init(struct gateway_module *m) { (void)m; return 0; }\n")
    out = _start_error(tmp_path, redis_url, [{"name": "future", "path": so}], "start")
    assert 'module "future": built for module API 999, this gateway has 1' in out, out


def test_init_failure(tmp_path, redis_url):
    so = _build_so(tmp_path, "sad", "#include <gateway.h>\nGATEWAY_MODULE_DECLARE();\n"
                   "int gateway_module_init(struct gateway_module *m) { (void)m; return 7; }\n")
    out = _start_error(tmp_path, redis_url, [{"name": "sad", "path": so}], "start")
    assert 'module "sad": gateway_module_init failed (returned 7)' in out, out


def test_name_taken_by_builtin(tmp_path, redis_url, hello_so):
    out = _start_error(tmp_path, redis_url, [{"name": "redis", "path": hello_so}], "start")
    assert 'module "redis": api.redis is already taken' in out, out


# -- Redis: api.hello.incr(key) (gateway_redis_command) -------------------------------------

def test_hello_incr_counts_in_redis(make_gateway, tmp_path, redis_url, hello_so):
    g = make_gateway(config=_config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}]))
    key = "itest:hello:incr:%d:%d" % (os.getpid(), time.monotonic_ns())
    values = []
    for _ in range(3):
        status, body = g.get("/api/helloIncr?key=" + key)
        assert status == 200, body
        values.append(body["value"])
    assert values == [1, 2, 3], values


def test_hello_incr_redis_unreachable(make_gateway, tmp_path, redis_url, hello_so):
    config = _config(tmp_path, None, [{"name": "hello", "path": hello_so}],
                     actions=[MODULE_ACTIONS, gw.EXAMPLE_ACTIONS])
    config["redis"] = {"url": "unix://" + str(tmp_path / "no-redis.sock")}
    g = make_gateway(config=config)
    for _ in range(2):
        status, body = g.get("/api/helloIncr?key=k")
        assert status == 503, body
        assert "redis unavailable" in json.dumps(body), body
        status, body = g.get("/api/randomNumber")
        assert status == 200, body


# -- C middleware: the hello module's global "hello" middleware ------------------------------

def test_hello_global_middleware_sets_header(make_gateway, tmp_path, redis_url, hello_so):
    config = _config(tmp_path, redis_url, [{"name": "hello", "path": hello_so,
                                            "config": {"greeting": "Hi"}}],
                     actions=[MODULE_ACTIONS, gw.EXAMPLE_ACTIONS])
    g = make_gateway(config=config)
    for path in ("/api/randomNumber", "/api/helloGreet?name=Cy"):
        r = g.request("GET", path)
        assert r.status == 200, (path, r.status)
        assert r.headers.get("X-Hello") == "Hi", (path, dict(r.headers))
    # Returning nil, "message" from the C preProcessor fails the request.
    status, body = g.get("/api/randomNumber?helloBlock=1")
    assert status == 400, body  # SPEC 5: a middleware error without a status
    assert gw.error_text(body) == "blocked by hello", body
    assert "randomNumber" not in body, body  # the action did not run
    # Still there after a reload (SIGHUP re-reads middleware).
    offset = g.log_size()
    g.signal(signal.SIGHUP)
    assert g.wait_for_log(r"reload done", timeout=5, since=offset), g.log_text()
    r = g.request("GET", "/api/randomNumber")
    assert r.status == 200 and r.headers.get("X-Hello") == "Hi", dict(r.headers)


def test_hello_wait_cancelled_at_shutdown_before_free(make_gateway, tmp_path, redis_url, hello_so):
    # SIGTERM with a wait pending past shutdownTimeout: the wait's cancel runs (and may log)
    # before gateway_module_free, and the process exits cleanly.
    config = _config(tmp_path, redis_url, [{"name": "hello", "path": hello_so}])
    config["general"]["shutdownTimeout"] = 300
    config["logging"] = dict(config.get("logging", {}), level="debug")
    g = make_gateway(config=config)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(g.raw, b"GET /api/helloWait?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n", 10)
        assert g.wait_for_log(r"helloWait waiting ms=5000", timeout=10), g.log_text()
        g.signal(signal.SIGTERM)
        assert g.wait(timeout=5) == 0, g.describe()
        pending.result(timeout=10)
    log = g.log_text()
    assert "wait(5000) cancelled" in log, log
    assert log.index("wait(5000) cancelled") < log.rindex("unloading"), log
    assert not g.sanitizer_reports(), log
