"""Fixtures for the integration suite: the binary, a private Redis, and gateways.

`gateway` is one gateway per test module with the default test config (example actions, the
test actions and middleware of this folder). `make_gateway(**overrides)` starts one with a
config of its own for a single test. Both are stopped by PID at teardown; a failing test gets
the logs of every gateway that was running appended to its report.
"""

import os
import shutil
import signal

import pytest

import gateway as gw

# A hard bound per test on top of the bounded waits inside the tests.
TEST_TIME_LIMIT = 60


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "asan: abuse tests, run again against the sanitizer build (make test-asan)")


def pytest_report_header(config):
    return "gateway binary: %s" % gw.gateway_binary()


@pytest.fixture(scope="session")
def gateway_bin():
    path = gw.gateway_binary()
    if not os.access(path, os.X_OK):
        pytest.fail("gateway binary not found or not executable: %s (run `make`, or set "
                    "GATEWAY_BIN)" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def redis_binary():
    """Path of redis-server. Missing, it fails the tests that need it (never skips them):
    `make test` installs it, and a suite that silently skips a hundred tests proves nothing."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server not found (install Debian's redis-server, or run `make test`, "
                    "which does)", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def redis_url(redis_binary):
    """URL of a private redis-server on loopback TCP for the whole session."""
    server = gw.RedisServer(redis_binary, tcp=True).start()
    try:
        yield server.tcp_url()
    finally:
        server.cleanup()


@pytest.fixture
def private_redis(redis_binary):
    """Factory: private_redis(start=True, **RedisServer kwargs) -> gw.RedisServer. Every one made is
    stopped by PID and its folder removed at teardown, even when the test failed midway."""
    made = []

    def make(start=True, **kw):
        r = gw.RedisServer(redis_binary, **kw)
        made.append(r)
        return r.start() if start else r

    yield make
    problems = []
    for r in made:
        try:
            r.cleanup()
        except Exception as e:  # one that would not stop must not keep the others running
            problems.append("redis-server pid %s: %r" % (r.proc and r.proc.pid, e))
    assert not problems, problems


def _check_teardown(g, what="gateway"):
    """A stopped gateway ended as its test expected: exit status (0 unless the test set
    g.expect_exit), no worker left behind, no sanitizer report."""
    problems = g.teardown_problems()
    assert not problems, "the %s: %s\n%s" % (what, "; ".join(problems), g.describe())


class _SharedGateway:
    """The module's gateway, restarted if a test killed it (that test fails at teardown)."""

    def __init__(self, workdir, config):
        self.workdir, self.config = workdir, config
        self.g = None
        self.dead = []

    def get(self):
        if self.g is None or not self.g.alive():
            if self.g is not None:
                self.g.stop()
                self.dead.append(self.g)
            self.g = gw.Gateway(self.workdir, self.config).start()
        return self.g

    def stop(self):
        if self.g is not None:
            self.g.stop()


@pytest.fixture(scope="module")
def _shared_gateway(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gw")
    shared = _SharedGateway(workdir, gw.default_config(str(workdir), redis_url))
    try:
        yield shared
    finally:
        shared.stop()
        for g in shared.dead + ([shared.g] if shared.g else []):
            _check_teardown(g, "module's shared gateway (reported at the module's last test)")


@pytest.fixture
def gateway(_shared_gateway, request):
    """The shared gateway of a module, with the default test config. A test after which it is
    no longer running fails at teardown (with its log); the next test gets a fresh one."""
    g = _shared_gateway.get()
    yield g
    call = getattr(request.node, "rep_call", None)
    if not g.alive() and call is not None and call.failed:
        g.stop()  # the failure already shows the log; the next test gets a fresh gateway
    elif not g.alive():
        text = g.describe()
        g.stop()
        pytest.fail("the gateway died during this test\n" + text, pytrace=False)


@pytest.fixture
def make_gateway(gateway_bin, redis_url, tmp_path):
    """Factory: make_gateway(overrides=None, start=True, **Gateway kwargs) -> Gateway.

    'overrides' is deep-merged into the default test config (or pass config= to replace it).
    Every gateway made is stopped at the end of the test."""
    made = []

    def make(overrides=None, config=None, start=True, workdir=None, **kw):
        wd = workdir or tmp_path / ("gw%d" % len(made))
        os.makedirs(wd, exist_ok=True)
        if config is None:
            config = gw.deep_merge(gw.default_config(str(wd), redis_url), overrides)
        g = gw.Gateway(wd, config, **kw)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    for g in made:
        g.stop()
    for g in made:
        _check_teardown(g)


@pytest.fixture(autouse=True)
def _time_limit():
    """Fail a test that runs longer than TEST_TIME_LIMIT instead of hanging the suite."""

    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %d s" % TEST_TIME_LIMIT)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
    if report.when in ("setup", "call") and report.failed:
        for g in list(gw.RUNNING):
            report.sections.append(("gateway pid %s" % g.pid, g.describe()))
