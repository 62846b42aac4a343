"""Background tasks on Redis (issue 18, docs/tasks.md): enqueue/run/ack, delayed and scheduled
jobs on time, a recurring task once per period across three gateways, 1,000 jobs across two
gateways each run exactly once, a worker killed mid-job (its job runs again elsewhere after the
visibility timeout), retries then the failed list (retryFailed, removeFailed), Redis restarted
mid-load (no job lost), and task middleware refusing an enqueue.

Each test has a private redis-server; task files are in task_files/, the action that calls
api.tasks in task_actions/. Every wait is a bounded poll on state in Redis."""

import json
import os
import signal
import time
import urllib.parse

import pytest

import gateway as gw
import promtext

HERE = os.path.dirname(os.path.abspath(__file__))
TASK_FILES = os.path.join(HERE, "task_files")
TASK_ACTIONS = os.path.join(HERE, "task_actions")
PREFIX = "tt:"


def config(workdir, redis_url, **tasks):
    c = gw.default_config(str(workdir), redis_url, actions=[TASK_ACTIONS], middleware=[])
    c["paths"]["tasks"] = [TASK_FILES]
    c.setdefault("redis", {})["prefix"] = PREFIX
    c["general"]["actionTimeout"] = 30000
    c["logging"]["level"] = "info"
    c["app"] = {"recurKey": "recur:runs"}
    t = {"enabled": True, "pollInterval": 100, "visibilityTimeout": 30000}
    t.update(tasks)
    c["tasks"] = t
    return c


def start(make_gateway, redis, tmp_path, name, **tasks):
    wd = tmp_path / name
    os.makedirs(wd, exist_ok=True)
    g = make_gateway(config=config(wd, redis.url(), **tasks), workdir=wd)
    wait_redis(g)
    return g


def op(g, name, *args, times=1, status=200):
    q = urllib.parse.urlencode({"op": name, "args": json.dumps(list(args)), "times": times})
    r = g.request("GET", "/api/taskOp?" + q, timeout=60)
    assert r.status == status, (r.status, r.body, g.describe())
    return r.json()


def wait_redis(g):
    deadline = time.monotonic() + gw.bound(5)
    while True:
        r = g.request("GET", "/api/taskOp?op=stats")
        if r.status == 200:
            return
        assert time.monotonic() < deadline, g.describe()
        time.sleep(0.02)


def wait_until(fn, timeout, what, describe=None):
    deadline = time.monotonic() + gw.bound(timeout)
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "%s\n%s" % (what, describe() if describe else "")
        time.sleep(0.02)


def hash_counts(redis, key):
    flat = redis.command("HGETALL", key) or []
    flat = [x.decode() if isinstance(x, bytes) else x for x in flat]
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


def llen(redis, key):
    return int(redis.command("LLEN", key))


def lrange(redis, key):
    return [x.decode() if isinstance(x, bytes) else x for x in (redis.command("LRANGE", key, 0, -1) or [])]


@pytest.mark.asan
def test_enqueue_run_ack(make_gateway, private_redis, tmp_path):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g")
    jid = op(g, "enqueue", "count", {"key": "c:1"})["result"]
    assert isinstance(jid, str) and len(jid) == 32
    wait_until(lambda: hash_counts(r, "c:1").get(jid) == 1, 5, "job not run", g.describe)
    # Acknowledged: nothing left claimed or queued; counters and log lines say so.
    wait_until(lambda: int(r.command("ZCARD", PREFIX + "tasks:processing")) == 0, 5, "not acked")
    # The project's recurring task ("recur", every second) may have a job queued or running
    # at any moment: wait (bounded) for a moment with none, rather than read one at random.
    stats = {}

    def idle():
        stats.update(op(g, "stats")["result"])
        return stats["processing"] == 0 and stats["queues"]["default"] == 0
    wait_until(idle, 5, "jobs left queued or running")
    assert stats["counters"]["processed"] >= 1 and stats["counters"]["processed:count"] == 1
    g.wait_for_log(r"task job ok task=count job=%s duration_ms=" % jid, timeout=gw.bound(3))
    # /metrics: this worker's job counts, and the queue lengths its scheduler read.
    samples, _, _ = promtext.parse(g.request("GET", "/metrics").body.decode())
    assert promtext.value(samples, "gateway_task_jobs_total", task="count", result="ok") == 1
    assert ("gateway_task_jobs", frozenset({"state": "failed"}.items())) in samples
    assert "task job start task=count job=%s queue=default attempt=1" % jid in g.log_text()
    # Inputs are checked at enqueue: a missing required input is a 422 to the caller.
    body = op(g, "enqueue", "count", {}, status=422)
    assert "key is a required parameter" in json.dumps(body)
    body = op(g, "enqueue", "nosuchtask", {}, status=500)
    # queued() shows waiting jobs; del removes them (here on a queue nobody takes).
    a = op(g, "enqueue", "count", {"key": "c:2"}, "parked")["result"]
    op(g, "enqueue", "count", {"key": "c:3"}, "parked")
    queued = op(g, "queued", "parked")["result"]
    assert [j["id"] for j in queued][0] == a and queued[0]["params"] == {"key": "c:2", "sleep": 0}
    assert queued[0]["attempts"] == 0 and queued[0]["task"] == "count" and queued[0]["queue"] == "parked"
    assert op(g, "del", "parked", "count", {"key": "c:2", "sleep": 0})["result"] == 1
    assert op(g, "del", "parked", "count")["result"] == 1
    assert op(g, "queued", "parked")["result"] == {}  # an empty list


@pytest.mark.parametrize("how", ["enqueueIn", "enqueueAt"])
def test_delayed_job_runs_on_time(make_gateway, private_redis, tmp_path, how):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g", pollInterval=1000)  # the default poll
    delay = 1500
    now_ms = int(time.time() * 1000)
    due = now_ms + delay
    if how == "enqueueIn":
        jid = op(g, "enqueueIn", delay, "count", {"key": "d:1"})["result"]
    else:
        jid = op(g, "enqueueAt", due, "count", {"key": "d:1"})["result"]
    at = op(g, "scheduledAt", "default", "count")["result"]
    assert len(at) == 1 and abs(at[0] - due) < 1000
    wait_until(lambda: hash_counts(r, "d:1").get(jid) == 1, 10, "delayed job not run", g.describe)
    ran = int(lrange(r, "d:1:at")[0])
    assert ran >= at[0], "ran before its time"
    assert ran - at[0] <= 1000, "ran %d ms after its time" % (ran - at[0])
    # delDelayed removes a job that has not run yet.
    op(g, "enqueueIn", 60000, "count", {"key": "d:2"})
    removed = op(g, "delDelayed", "default", "count", {"key": "d:2"})["result"]
    assert len(removed) == 1
    assert op(g, "scheduledAt", "default", "count")["result"] == {}


def test_recurring_once_per_period_three_gateways(make_gateway, private_redis, tmp_path):
    r = private_redis()
    t0 = time.monotonic()
    gs = [start(make_gateway, r, tmp_path, "g%d" % i) for i in range(3)]
    wait_until(lambda: llen(r, "recur:runs") >= 4, 10, "recurring task did not run 4 times",
               gs[0].describe)
    elapsed = time.monotonic() - t0
    for g in gs:
        g.stop()
    runs = lrange(r, "recur:runs")
    times = [int(x.split()[0]) for x in runs]
    # Once per period: never two runs in one period, so consecutive runs are about 1 s apart
    # (the period's key expires 1 s after it was set; a run may start up to a poll later).
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= 800 for gap in gaps), gaps
    # And no more runs than periods elapsed (plus the first, at start).
    assert len(runs) <= int(elapsed + 1.5) + 2, (len(runs), elapsed)
    pids = {x.split()[1] for x in runs}
    assert len(pids) >= 1


def test_thousand_jobs_two_gateways_exactly_once(make_gateway, private_redis, tmp_path):
    r = private_redis()
    a = start(make_gateway, r, tmp_path, "a", concurrency=4)
    b = start(make_gateway, r, tmp_path, "b", concurrency=4)
    n = 1000
    ids = []
    for _ in range(4):
        ids += op(a, "enqueue", "count", {"key": "k:many"}, times=n // 4)["results"]
    assert len(set(ids)) == n
    wait_until(lambda: len(hash_counts(r, "k:many")) >= n, 60, "not all jobs ran", a.describe)
    wait_until(lambda: int(r.command("ZCARD", PREFIX + "tasks:processing")) == 0, 10, "not all acked")
    counts = hash_counts(r, "k:many")
    assert set(counts) == set(ids)
    twice = {k: v for k, v in counts.items() if v != 1}
    assert not twice, twice
    # Both processes took part.
    ran_a = a.log_text().count("task job ok task=count")
    ran_b = b.log_text().count("task job ok task=count")
    assert ran_a + ran_b == n and ran_a > 0 and ran_b > 0, (ran_a, ran_b)


@pytest.mark.asan
def test_killed_worker_job_runs_again_elsewhere(make_gateway, private_redis, tmp_path):
    r = private_redis()
    vis = 1500
    a = start(make_gateway, r, tmp_path, "a", visibilityTimeout=vis)
    op(a, "enqueue", "slow", {"key": "s", "ms": 3000})
    wait_until(lambda: llen(r, "s:started") == 1, 5, "job did not start", a.describe)
    assert lrange(r, "s:started")[0] == str(a.proc.pid)
    # kill -9 mid-job: its claim stays in processing until the deadline passes.
    a.expect_exit = None
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    assert int(r.command("ZCARD", PREFIX + "tasks:processing")) == 1
    b = start(make_gateway, r, tmp_path, "b", visibilityTimeout=vis)
    wait_until(lambda: llen(r, "s:done") == 1, 15, "job did not run again", b.describe)
    assert lrange(r, "s:started")[1] == str(b.proc.pid)
    assert lrange(r, "s:done") == [str(b.proc.pid)]
    assert "re-queued jobs whose worker went silent" in b.log_text()


def test_slow_job_is_not_requeued_while_its_worker_lives(make_gateway, private_redis, tmp_path):
    r = private_redis()
    a = start(make_gateway, r, tmp_path, "a", visibilityTimeout=600)
    b = start(make_gateway, r, tmp_path, "b", visibilityTimeout=600)
    op(a, "enqueue", "slow", {"key": "h", "ms": 2500})  # four visibility timeouts long
    wait_until(lambda: llen(r, "h:done") == 1, 10, "job did not finish", a.describe)
    time.sleep(0.3)
    assert llen(r, "h:started") == 1, "a live slow job was re-queued"


def test_retries_then_failed_list(make_gateway, private_redis, tmp_path):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g")
    jid = op(g, "enqueue", "flaky", {"key": "f:1"})["result"]
    # One run and two retries (retries = 2), 100 and 200 ms apart at least.
    wait_until(lambda: len(op(g, "failed")["result"]) == 1, 10, "job not in the failed list", g.describe)
    runs = [int(x) for x in lrange(r, "f:1")]
    assert len(runs) == 3
    assert runs[1] - runs[0] >= 100 and runs[2] - runs[1] >= 200, runs
    rec = op(g, "failed")["result"][0]
    assert rec["id"] == jid and rec["task"] == "flaky" and rec["attempts"] == 3
    assert "boom f:1" in rec["error"] and "stack traceback" in rec["traceback"]
    assert op(g, "stats")["result"]["counters"]["failed:flaky"] == 1
    # retryFailed puts it back on its queue with attempts 0: three more runs, failed again.
    assert op(g, "retryFailed", jid)["result"] is True
    wait_until(lambda: llen(r, "f:1") == 6 and len(op(g, "failed")["result"]) == 1, 10,
               "retried job did not run again", g.describe)
    assert op(g, "removeFailed", jid)["result"] is True
    assert op(g, "failed")["result"] == {}
    assert op(g, "removeFailed", jid)["result"] is False
    assert "task job failed; retrying task=flaky job=%s attempt=1 retries=2" % jid in g.log_text()


def test_middleware_refuses_enqueue_and_skips_run(make_gateway, private_redis, tmp_path):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g")
    body = op(g, "enqueue", "guarded", {"key": "m:1", "refuse": "yes"})
    assert body["result"] is False and body["reason"] == "refused by guard"
    assert op(g, "stats")["result"]["queues"].get("default", 0) == 0
    jid = op(g, "enqueue", "guarded", {"key": "m:1"})["result"]
    wait_until(lambda: hash_counts_str(r, "m:1").get(jid) == "pre", 5, "job did not run", g.describe)
    op(g, "enqueue", "guarded", {"key": "m:2", "skip": "yes"})
    g.wait_for_log(r"task job skipped by task middleware task=guarded", timeout=gw.bound(5))
    assert r.command("EXISTS", "m:2") == 0


def hash_counts_str(redis, key):
    flat = [x.decode() if isinstance(x, bytes) else x for x in (redis.command("HGETALL", key) or [])]
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


@pytest.mark.asan
def test_redis_restart_mid_load_loses_no_job(make_gateway, private_redis, tmp_path):
    r = private_redis(fsync_always=True, tcp=True)
    wd = tmp_path / "g"
    os.makedirs(wd)
    g = make_gateway(config=config(wd, r.tcp_url(), concurrency=2, visibilityTimeout=1500), workdir=wd)
    wait_redis(g)
    ids = op(g, "enqueue", "count", {"key": "rr", "sleep": 5}, times=300)["results"]
    wait_until(lambda: len(hash_counts(r, "rr")) >= 20, 10, "jobs did not start", g.describe)
    # Stopped by PID mid-load, restarted on the same port and folder (its AOF).
    r.kill()
    time.sleep(0.3)
    r.start(keep_port=True)
    wait_until(lambda: set(hash_counts(r, "rr")) >= set(ids), 60, "a job was lost", g.describe)
    assert set(hash_counts(r, "rr")) == set(ids)


@pytest.mark.asan
def test_shutdown_lets_running_job_finish(make_gateway, private_redis, tmp_path):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g")
    op(g, "enqueue", "slow", {"key": "sd", "ms": 1000})
    wait_until(lambda: llen(r, "sd:started") == 1, 5, "job did not start", g.describe)
    op(g, "enqueue", "count", {"key": "sd:later"})  # queued behind it: not taken while draining
    g.stop()  # SIGTERM; shutdownTimeout is 5 s
    assert g.returncode == 0
    assert llen(r, "sd:done") == 1, "the running job was not let finish"
    assert int(r.command("ZCARD", PREFIX + "tasks:processing")) == 0
    assert r.command("EXISTS", "sd:later") == 0 and llen(r, PREFIX + "tasks:queue:default") == 1


@pytest.mark.asan
def test_shutdown_past_its_timeout_leaves_job_for_the_visibility_timeout(make_gateway, private_redis,
                                                                         tmp_path):
    r = private_redis()
    wd = tmp_path / "a"
    os.makedirs(wd)
    c = config(wd, r.url(), visibilityTimeout=1500)
    c["general"]["shutdownTimeout"] = 300
    a = make_gateway(config=c, workdir=wd)
    wait_redis(a)
    op(a, "enqueue", "slow", {"key": "st", "ms": 3000})
    wait_until(lambda: llen(r, "st:started") == 1, 5, "job did not start", a.describe)
    a.stop()
    assert a.returncode == 0 and llen(r, "st:done") == 0
    assert int(r.command("ZCARD", PREFIX + "tasks:processing")) == 1  # still claimed
    b = start(make_gateway, r, tmp_path, "b", visibilityTimeout=1500)
    wait_until(lambda: llen(r, "st:done") == 1, 15, "job did not run again", b.describe)


def test_bad_task_files_fail_check(gateway_bin, tmp_path, private_redis):
    cases = {
        "norun.lua": ('return { name = "x", description = "d" }', "has no run function"),
        "badretries.lua": ('return { name = "x", description = "d", retries = -1, run = function() end }',
                           "'retries' must be a whole number"),
        "badmw.lua": ('return { name = "x", description = "d", middleware = { "nope" }, run = function() end }',
                      'unknown task middleware "nope"'),
        "badinput.lua": ('return { name = "x", description = "d", inputs = { a = { validator = "nosuch" } }, '
                         'run = function() end }', 'input "a"'),
        "notable.lua": ("return 42", "a task file must return a table"),
    }
    for fname, (src, message) in cases.items():
        d = tmp_path / fname.replace(".lua", "")
        os.makedirs(d / "tasks")
        (d / "tasks" / fname).write_text(src)
        c = config(d, None)
        c["paths"]["tasks"] = [str(d / "tasks")]
        cfg = gw.write_config(str(d / "gateway.lua"), c)
        proc = gw.run_cli(["--config", cfg, "--check"])
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert str(d / "tasks" / fname) in out and message in out, (fname, out)


def test_show_documentation_lists_tasks(make_gateway, private_redis, tmp_path):
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g", enabled=False)
    body = g.request("GET", "/api/showDocumentation").json()
    t = body["tasks"]["flaky"]
    assert t["description"] == "Always fails" and t["retries"] == 2 and t["queue"] == "default"
    assert body["tasks"]["recur"]["frequency"] == 1000
    assert body["tasks"]["count"]["inputs"]["key"]["required"] is True
    # A process with tasks disabled enqueues but does not run.
    jid = op(g, "enqueue", "count", {"key": "nd"})["result"]
    time.sleep(0.3)
    assert r.command("EXISTS", "nd") == 0
    assert [j["id"] for j in op(g, "queued", "default")["result"]] == [jid]


@pytest.mark.asan
def test_job_of_a_task_this_node_lacks_is_put_back(make_gateway, private_redis, tmp_path):
    """A rolling deploy: a job of a task only newer nodes have is delayed again, not failed;
    a job that is not JSON goes to the failed list."""
    r = private_redis()
    g = start(make_gateway, r, tmp_path, "g")
    job = json.dumps({"id": "ghost1", "task": "ghost", "params": {}, "queue": "default",
                      "enqueuedAt": 1, "attempts": 0})
    r.command("SADD", PREFIX + "tasks:queues", "default")
    r.command("RPUSH", PREFIX + "tasks:queue:default", job)
    g.wait_for_log(r"task job failed; retrying task=ghost job=ghost1 attempt=0", timeout=gw.bound(5))
    assert int(r.command("ZCARD", PREFIX + "tasks:delayed")) == 1
    assert llen(r, PREFIX + "tasks:failed") == 0
    r.command("RPUSH", PREFIX + "tasks:queue:default", "not json")
    wait_until(lambda: llen(r, PREFIX + "tasks:failed") == 1, 5, "bad job not failed", g.describe)
    assert "not valid JSON" in op(g, "failed")["result"][0]["error"]


def test_reload_loads_a_new_task_file(make_gateway, private_redis, tmp_path):
    r = private_redis()
    wd = tmp_path / "g"
    tdir = tmp_path / "tasks"
    os.makedirs(wd)
    os.makedirs(tdir)
    c = config(wd, r.url())
    c["paths"]["tasks"] = [str(tdir)]
    g = make_gateway(config=c, workdir=wd)
    wait_redis(g)
    op(g, "enqueue", "late", {}, status=500)  # unknown task
    (tdir / "late.lua").write_text(
        'return { name = "late", description = "d", run = function(api, p, job) '
        'api.redis.call("SET", "late:" .. job.id, "1") end }')
    since = g.log_size()
    g.signal(signal.SIGHUP)
    g.wait_for_log(r"reload done", timeout=gw.bound(5), since=since)
    jid = op(g, "enqueue", "late", {})["result"]
    wait_until(lambda: r.command("EXISTS", "late:" + jid) == 1, 5, "new task did not run", g.describe)
    # A broken task file is refused by the reload, naming it; the loaded tasks stay.
    (tdir / "broken.lua").write_text('return { name = "broken", description = "d" }')
    since = g.log_size()
    g.signal(signal.SIGHUP)
    g.wait_for_log(r"broken\.lua: task broken has no run function", timeout=gw.bound(5), since=since)
    assert isinstance(op(g, "enqueue", "late", {})["result"], str)


def test_due_job_wakes_a_worker_on_another_node(make_gateway, private_redis, tmp_path):
    """The scheduler that moves a due job is on a node that does not take its queue; the
    worker that does has no scheduler and a long pollInterval, and still starts it on time."""
    r = private_redis()
    a = start(make_gateway, r, tmp_path, "a", queues=["elsewhere"])
    b = start(make_gateway, r, tmp_path, "b", scheduler=False, pollInterval=10000)
    time.sleep(0.3)  # b's first look at its queues is behind it
    due = int(time.time() * 1000) + 1500
    jid = op(a, "enqueueAt", due, "count", {"key": "x:1"})["result"]
    wait_until(lambda: hash_counts(r, "x:1").get(jid) == 1, 10, "job not run", b.describe)
    ran = int(lrange(r, "x:1:at")[0])
    assert due <= ran <= due + 1000, ran - due
    assert "task job ok task=count job=%s" % jid in b.log_text()
