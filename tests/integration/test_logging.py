"""Log lines on stderr (SPEC §10)."""

import json
import re

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
LEVELS = ("debug", "info", "notice", "warning", "error", "crit")


def _action_line(g, action, since=0, timeout=3.0):
    # The line that reports the action's outcome: it names the action and has a status.
    m = g.wait_for_log(r"^(?=.*\baction=%s\b)(?=.*\bstatus=).*$" % re.escape(action),
                       timeout, since)
    assert m, "no log line with action=%s\n%s" % (action, g.log_text()[-5000:])
    return m.group(0)


def test_text_action_line(gateway):
    offset = gateway.log_size()
    status, _ = gateway.get("/api/randomNumber")
    assert status == 200
    line = _action_line(gateway, "randomNumber", offset)
    assert re.match(r"^%s\s+info\s" % TIMESTAMP, line), line
    assert re.search(r"\btype=web\b", line), line
    assert re.search(r"\bstatus=200\b", line), line
    assert re.search(r"\bduration_ms=\d+(\.\d+)?\b", line), line


def test_text_action_line_for_failure(gateway):
    offset = gateway.log_size()
    status, _ = gateway.get("/api/fail_table")
    assert status == 402
    line = _action_line(gateway, "fail_table", offset)
    assert re.search(r"\bstatus=402\b", line), line


def test_action_log_level(gateway):
    # The test config logs at debug; log_level's own line is at its logLevel, debug.
    offset = gateway.log_size()
    assert gateway.get("/api/log_level")[0] == 200
    line = _action_line(gateway, "log_level", offset)
    assert re.match(r"^%s\s+debug\s" % TIMESTAMP, line), line


def test_action_log_level_below_threshold_is_quiet(make_gateway):
    g = make_gateway({"logging": {"level": "info"}})
    assert g.get("/api/log_level")[0] == 200
    assert g.get("/api/randomNumber")[0] == 200
    _action_line(g, "randomNumber")
    assert "action=log_level" not in g.log_text(), "a debug action line was logged at info"


def test_log_level_flag_beats_config(make_gateway):
    g = make_gateway({"logging": {"level": "debug"}}, args=["--log-level", "error"])
    assert g.get("/api/randomNumber")[0] == 200
    assert g.get("/api/fail_string")[0] == 400
    assert g.get("/api/raise_error")[0] == 500
    # A 500 is logged at error: the control that logging works at this level.
    line = _action_line(g, "raise_error")
    assert re.match(r"^%s\s+error\s" % TIMESTAMP, line), line
    # Action lines are written before the response is sent: had the info ones been logged,
    # they would be in the file by now.
    log = g.log_text()
    assert "action=randomNumber" not in log and "action=fail_string" not in log, log
    assert " info " not in log and " debug " not in log and " notice " not in log, log


def test_filtered_params(make_gateway):
    g = make_gateway({"logging": {"level": "info", "filteredParams": ["password"]}})
    status, body = g.json("POST", "/api/echo_params",
                          {"a": "visible-value", "password": "hunter2-secret"})
    assert status == 200, body
    line = _action_line(g, "echo_params")
    assert "[FILTERED]" in line, line
    assert "visible-value" in line, "other params are logged as they are: " + line
    g.stop()
    assert "hunter2-secret" not in g.log_text(), "a filtered param leaked into the log"


def test_json_format(make_gateway):
    g = make_gateway({"logging": {"format": "json", "level": "info"}})
    assert g.get("/api/randomNumber")[0] == 200
    assert g.get("/api/fail_string")[0] == 400
    assert g.wait_for_log(r'"fail_string"', timeout=3.0), g.log_text()[-5000:]
    g.stop()
    records = []
    for line in g.log_lines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError("not a JSON log line: %r" % line)
    assert all(isinstance(r, dict) for r in records)
    assert all(re.fullmatch(TIMESTAMP, r["time"]) and r["level"] in LEVELS for r in records), \
        records
    ok = [r for r in records if r.get("action") == "randomNumber"]
    assert len(ok) == 1, records
    # The fields of the text line; numbers are JSON numbers (issue 16: typed values).
    assert set(ok[0]) == {"time", "level", "action", "type", "status", "duration_ms",
                          "method", "path", "bytes", "requestId", "remoteIP", "pid",
                          "connection", "params"}, ok[0]
    assert (ok[0]["level"], ok[0]["type"], ok[0]["status"]) == ("info", "web", 200), ok[0]
    assert isinstance(ok[0]["duration_ms"], float) and ok[0]["duration_ms"] >= 0, ok[0]
    assert isinstance(ok[0]["bytes"], int) and isinstance(ok[0]["pid"], int), ok[0]
    assert json.loads(ok[0]["params"])["action"] == "randomNumber", ok[0]
    bad = [r for r in records if r.get("action") == "fail_string"]
    assert len(bad) == 1, records
    assert (bad[0]["status"], bad[0]["error"]) == (400, "broken"), bad
