"""Timer work at shutdown (issue 14): work an action scheduled with api.timer.after before
SIGTERM either runs within general.shutdownTimeout or is logged as dropped, never silently
lost. A timer due before the drain's deadline keeps the drain open until it has run (and
its callback has finished, Redis calls included); one due later is logged as dropped with
when it was due.

Fixture: timer_actions/schedule.lua."""

import os
import re
import signal
import time
import uuid

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
TIMERS = os.path.join(HERE, "timer_actions")

pytestmark = pytest.mark.asan


def start(make_gateway, tmp_path, redis_url, shutdown_timeout=5000):
    wd = tmp_path / "timers"
    os.makedirs(str(wd), exist_ok=True)
    config = gw.default_config(str(wd), redis_url, actions=[TIMERS])
    config["general"]["shutdownTimeout"] = shutdown_timeout
    return make_gateway(config=config, workdir=wd)


def schedule(g, **params):
    key = "itest:timers:" + uuid.uuid4().hex
    # Redis must be up for the short timer's SET: retry while the client connects.
    deadline = time.monotonic() + gw.bound(5)
    while True:
        status, body = g.json("POST", "/api/schedule", dict(key=key, **params))
        if status != 503:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert status == 200 and body["scheduled"] is True, body
    return key


def test_due_timer_runs_and_a_late_one_is_logged_dropped(make_gateway, tmp_path, redis_url):
    g = start(make_gateway, tmp_path, redis_url)
    key = schedule(g, short=200, long=60000)
    g.signal(signal.SIGTERM)
    assert g.wait(timeout=gw.bound(10)) == 0, g.describe()
    log = g.log_text()
    assert re.search(r"short timer done .*key=%s.*reply=OK" % key, log), log[-3000:]
    assert "long timer ran" not in log, log[-3000:]
    m = re.search(r"dropped 1 api\.timer\.after callback.*", log)
    assert m, log[-3000:]
    line = re.search(r".*timer\.after callback dropped at shutdown.*due_in_ms=(\d+).*", log)
    assert line, log[-3000:]
    assert 50000 < int(line.group(1)) <= 60000, line.group(0)


def test_timers_due_after_the_deadline_do_not_hold_shutdown(make_gateway, tmp_path, redis_url):
    g = start(make_gateway, tmp_path, redis_url, shutdown_timeout=300)
    schedule(g, short=30000, long=60000)
    g.signal(signal.SIGTERM)
    assert g.wait(timeout=gw.bound(10)) == 0, g.describe()
    log = g.log_text()
    assert "short timer done" not in log and "long timer ran" not in log, log[-3000:]
    assert re.search(r"dropped 2 api\.timer\.after callbacks", log), log[-3000:]
