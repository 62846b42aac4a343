"""Shutdown on SIGTERM/SIGINT and reload on SIGHUP (SPEC §1)."""

import os
import signal
import socket
import threading
import time

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

GOOD_ACTION = """return {
  name = "%(name)s",
  description = "added at %(name)s",
  run = function(api, data, next)
    data.response.name = "%(name)s"
    next()
  end,
}
"""


def _in_background(fn):
    """Run fn() in a thread; returns (thread, result list holding its value or exception)."""
    out = []

    def target():
        try:
            out.append(fn())
        except Exception as e:  # reported by the test
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _start_in_flight(g, path):
    """Send a slow request from a thread and wait until the gateway has taken it (the test
    connection middleware logs every connection it creates, in the same loop turn that then
    starts the action: once the line is there, the action is in flight)."""
    offset = g.log_size()
    t, out = _in_background(lambda: g.request("GET", path, timeout=10))
    assert g.wait_for_log(r"connLogger create", timeout=5, since=offset), g.describe()
    return t, out


def _result(t, out):
    t.join(10)
    assert out, "the in-flight request did not finish"
    assert not isinstance(out[0], Exception), "the in-flight request failed: %r" % out[0]
    return out[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_lets_in_flight_action_finish(make_gateway, sig):
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000}})
    t, out = _start_in_flight(g, "/api/sleepTest?sleepDuration=700")
    t0 = time.monotonic()
    g.signal(sig)
    r = _result(t, out)
    assert r.status == 200, r.body
    assert r.json()["sleepDuration"] == 700
    rc = g.wait(10)
    assert rc == 0, "exit status after %s: %r\n%s" % (sig.name, rc, g.describe())
    assert time.monotonic() - t0 < gw.bound(5), "shutdown should end soon after the action finished"


def test_shutdown_refuses_new_work(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000}})
    idle = g.client()
    assert idle.request("GET", "/api/randomNumber").status == 200
    t, out = _start_in_flight(g, "/api/sleepTest?sleepDuration=900")
    offset = g.log_size()
    g.signal(signal.SIGTERM)
    # Logged as the shutdown starts; the listener is closed in the same loop turn, before the
    # loop reads anything more from any socket.
    assert g.wait_for_log(r"shutting down: waiting for 1 in-flight actions", timeout=5,
                          since=offset), g.describe()

    # An action on a connection that was already open gets 503.
    r = idle.request("GET", "/api/randomNumber")
    assert r.status == 503, r.body
    assert r.json()["error"] == "the server is shutting down"
    idle.close()

    # New connections are no longer accepted.
    with pytest.raises(OSError):
        with socket.create_connection((g.host, g.port), timeout=2) as s:
            s.sendall(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(1):
                raise ConnectionResetError("closed without an answer")

    assert _result(t, out).status == 200
    assert g.wait(10) == 0


def test_answers_finishing_at_shutdown_are_all_sent(make_gateway):
    # Many actions finish in the same loop turn as a shutdown check: every answer must
    # still be written before the connections are closed (nothing acknowledged is lost).
    g = make_gateway({"general": {"actionTimeout": 5000, "shutdownTimeout": 5000}})
    offset = g.log_size()
    jobs = [_in_background(lambda: g.request("GET", "/api/sleepTest?sleepDuration=400", timeout=10))
            for _ in range(40)]
    deadline = time.monotonic() + 10
    while g.log_since(offset).count("connLogger create") < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert g.log_since(offset).count("connLogger create") == 40, g.describe()
    offset = g.log_size()
    g.signal(signal.SIGTERM)
    assert g.wait_for_log(r"shutting down: waiting for 40 in-flight actions", timeout=5,
                          since=offset), g.describe()
    statuses = []
    for t, out in jobs:
        r = _result(t, out)
        statuses.append(r.status)
    assert statuses == [200] * 40, statuses
    assert g.wait(10) == 0


def test_shutdown_timeout_bounds_the_wait(make_gateway):
    g = make_gateway({"general": {"actionTimeout": 0, "shutdownTimeout": 300}})
    t, out = _start_in_flight(g, "/api/never_next")
    t0 = time.monotonic()
    g.signal(signal.SIGTERM)
    rc = g.wait(10)
    elapsed = time.monotonic() - t0
    assert rc == 0, g.describe()
    assert elapsed < gw.bound(3.0), "shutdownTimeout 300 ms, took %.2f s" % elapsed
    assert g.wait_for_log(r"shutdownTimeout reached with 1 actions still running", timeout=1), \
        g.describe()
    t.join(10)
    # Its connection was closed without an answer (the action never finished).
    assert out and isinstance(out[0], ConnectionResetError), out


# -- SIGHUP -------------------------------------------------------------------------------

@pytest.fixture
def reload_gateway(make_gateway, tmp_path):
    actions = tmp_path / "hup_actions"
    actions.mkdir()
    (actions / "hup_one.lua").write_text(GOOD_ACTION % {"name": "hup_one"})
    g = make_gateway({"paths": {"actions": [gw.EXAMPLE_ACTIONS, str(actions)]}})
    return g, actions


def _wait_status(g, path, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        r = g.request("GET", path)
        if r.status == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_sighup_adds_action_without_dropping_connections(reload_gateway):
    g, actions = reload_gateway
    pid = g.pid
    with g.client() as c:
        assert c.request("GET", "/api/hup_one").status == 200
        assert g.request("GET", "/api/hup_two").status == 404
        local = c.local_port()

        (actions / "hup_two.lua").write_text(GOOD_ACTION % {"name": "hup_two"})
        g.signal(signal.SIGHUP)
        r = _wait_status(g, "/api/hup_two", 200)
        assert r.status == 200, r.body
        assert r.json()["name"] == "hup_two"

        # Same process, and the keep-alive connection opened before the reload still works.
        assert g.alive() and g.pid == pid
        r = c.request("GET", "/api/hup_two")
        assert r.status == 200, r.body
        assert c.local_port() == local, "the keep-alive connection was dropped by the reload"
        assert c.request("GET", "/api/hup_one").status == 200
    g.assert_serving()


def test_sighup_with_broken_action_keeps_old_set(reload_gateway):
    g, actions = reload_gateway
    (actions / "hup_two.lua").write_text(GOOD_ACTION % {"name": "hup_two"})
    g.signal(signal.SIGHUP)
    assert _wait_status(g, "/api/hup_two", 200).status == 200

    offset = g.log_size()
    # One good new action and one broken one: the reload is refused as a whole.
    (actions / "hup_three.lua").write_text(GOOD_ACTION % {"name": "hup_three"})
    (actions / "hup_bad.lua").write_text(
        'return { name = "hupBad", run = function(api, data, next) next() end }\n')
    g.signal(signal.SIGHUP)
    logged = g.wait_for_log(r"reload failed, keeping the loaded actions: .*hup_bad\.lua.*"
                            r"Action hupBad is missing 'action\.description'", timeout=5,
                            since=offset)
    assert logged, "a failed reload must log why\n" + g.log_since(offset)
    assert "reload done" not in g.log_since(offset), g.log_since(offset)
    assert g.alive()
    assert g.request("GET", "/api/hup_one").status == 200
    assert g.request("GET", "/api/hup_two").status == 200
    assert g.request("GET", "/api/hup_three").status == 404, "a refused reload changes nothing"
    assert g.request("GET", "/api/hupBad").status == 404
    g.assert_serving()

    # Fixing the file makes the next reload succeed.
    os.remove(str(actions / "hup_bad.lua"))
    g.signal(signal.SIGHUP)
    assert _wait_status(g, "/api/hup_three", 200).status == 200


def test_sighup_removes_deleted_action(reload_gateway):
    g, actions = reload_gateway
    (actions / "hup_two.lua").write_text(GOOD_ACTION % {"name": "hup_two"})
    g.signal(signal.SIGHUP)
    assert _wait_status(g, "/api/hup_two", 200).status == 200
    os.remove(str(actions / "hup_two.lua"))
    g.signal(signal.SIGHUP)
    assert _wait_status(g, "/api/hup_two", 404).status == 404
    assert g.request("GET", "/api/hup_one").status == 200


def test_sighup_during_in_flight_action(reload_gateway):
    g, actions = reload_gateway
    t, out = _start_in_flight(g, "/api/sleepTest?sleepDuration=400")
    (actions / "hup_two.lua").write_text(GOOD_ACTION % {"name": "hup_two"})
    g.signal(signal.SIGHUP)
    r = _result(t, out)
    assert r.status == 200, r.body
    assert r.json()["sleepDuration"] == 400
    assert _wait_status(g, "/api/hup_two", 200).status == 200
    g.assert_serving()


def test_repeated_sighup_under_load(reload_gateway):
    g, actions = reload_gateway
    stop = threading.Event()
    statuses, errors = [], []

    def load():
        while not stop.is_set():
            try:
                statuses.append(g.request("GET", "/api/hup_one").status)
            except Exception as e:  # a dropped or refused request fails the test
                errors.append(e)
                return

    t = threading.Thread(target=load, daemon=True)
    t.start()
    offset = g.log_size()
    for _ in range(10):
        last = g.log_size()
        g.signal(signal.SIGHUP)
        time.sleep(0.03)  # spreads the signals over the load (not a synchronization)
    # Keep the load on until a reload is done after the last signal was sent, and every reload
    # that started is done (each is one loop callback; signals sent close together may be
    # delivered as one, so the count is not fixed).
    assert g.wait_for_log(r"reload done", timeout=10, since=last), g.describe()
    deadline = time.monotonic() + 10
    while True:
        log = g.log_since(offset)
        if log.count("SIGHUP: reloading") == log.count("reload done"):
            break
        assert time.monotonic() < deadline, log
        time.sleep(0.02)
    stop.set()
    t.join(10)
    assert not t.is_alive() and not errors, errors
    assert statuses and set(statuses) == {200}, statuses
    assert "reload failed" not in g.log_since(offset), g.log_since(offset)
    assert g.alive() and g.request("GET", "/api/hup_one").status == 200
