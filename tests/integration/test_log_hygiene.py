"""Logs a client cannot forge or read secrets from (issue 14, logs): text lines escape
control characters in messages, keys and values; logging.filteredParams filters nested
keys and ignores case; a JSON log line is never cut in half (a long value is cut inside
its quotes, the line stays valid JSON).

Fixture: log_actions/echo_log.lua."""

import json
import os
import re
import urllib.parse

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = os.path.join(HERE, "log_actions")
FORGED = "2020-01-01T00:00:00.000Z error forged"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|notice|warning|error|crit)\b")

pytestmark = pytest.mark.asan


def start(make_gateway, tmp_path, fmt="text"):
    wd = tmp_path / fmt
    os.makedirs(str(wd), exist_ok=True)
    config = gw.default_config(str(wd), None, actions=[ACTIONS])
    config["logging"] = {"level": "debug", "format": fmt}
    return make_gateway(config=config, workdir=wd)


def assert_no_forged_line(g, offset):
    text = g.log_since(offset)
    for line in text.splitlines():
        assert not line.startswith("2020-01-01"), "a forged line:\n" + text
        assert "\r" not in line and "\x7f" not in line and "\x1b" not in line, repr(line)
        assert LINE_START.match(line), "not one of ours: %r\n%s" % (line, text)
    return text


def test_text_log_escapes_client_input(make_gateway, tmp_path):
    g = start(make_gateway, tmp_path)
    offset = g.log_size()
    evil = "x\n" + FORGED + "\r\n" + FORGED + "\x1b[2J\x7f"
    status, body = g.json("POST", "/api/echoLog", {"msg": evil, "key": "k\n" + FORGED,
                                                   "value": evil}, headers={"X-Forge": "h\t" + FORGED})
    assert status == 200, body
    # A path with a newline (the 404's log line), and a param in the query string.
    r = g.request("GET", "/nowhere" + urllib.parse.quote("\n" + FORGED))
    assert r.status == 404
    r = g.request("GET", "/api/echoLog?msg=" + urllib.parse.quote("q\n" + FORGED))
    assert r.status == 200
    assert g.wait_for_log(r"info q\\n2020", since=offset)
    text = assert_no_forged_line(g, offset)
    assert "info x\\n" + FORGED + "\\r\\n" + FORGED + "\\u001b[2J\\u007f" in text, text
    assert "header h\\t" + FORGED in text, text
    assert '"k\\n' + FORGED + '"="x\\n' in text, text


def test_filtered_params_nested_and_any_case(make_gateway, tmp_path):
    g = start(make_gateway, tmp_path)
    offset = g.log_size()
    params = {"user": {"name": "ann", "password": "hunter2", "Deep": {"PassWord": "deep-secret"}},
              "PASSWORD": "upper-secret", "list": [{"password": "in-a-list"}, "plain"]}
    status, body = g.json("POST", "/api/echoLog", params)
    assert status == 200, body
    # receivedParams (metadata) is filtered the same way.
    received = body["requesterInformation"]["receivedParams"]
    assert received["user"] == {"name": "ann", "password": "[FILTERED]", "Deep": {"PassWord": "[FILTERED]"}}, received
    assert received["PASSWORD"] == "[FILTERED]", received
    assert received["list"] == [{"password": "[FILTERED]"}, "plain"], received
    assert g.wait_for_log(r"action=echoLog", since=offset)
    text = g.log_since(offset)
    for secret in ("hunter2", "deep-secret", "upper-secret", "in-a-list"):
        assert secret not in text, (secret, text)
    assert "[FILTERED]" in text and "ann" in text, text


def test_json_log_lines_stay_valid_with_a_huge_value(make_gateway, tmp_path):
    g = start(make_gateway, tmp_path, "json")
    offset = g.log_size()
    big = "b" * 100000 + "\n" + FORGED
    status, body = g.json("POST", "/api/echoLog", {"big": big, "msg": "m" * 50000,
                                                   "key": "k", "value": "v" * 100000})
    assert status == 200, body
    assert g.wait_for_log(r'"action":"echoLog"', since=offset)
    lines = g.log_since(offset).splitlines()
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    (action,) = [p for p in parsed if p.get("action") == "echoLog"]
    assert action["status"] == 200 and action["type"] == "web", action
    assert action["params"].endswith("...[truncated]"), action["params"][-100:]
    assert len(action["params"]) < 20000
    (msg,) = [p for p in parsed if p.get("msg", "").startswith("mmm")]
    assert msg["msg"].endswith("...[truncated]")
    (field,) = [p for p in parsed if p.get("msg") == "field"]
    assert field["k"].startswith("vvv") and field["k"].endswith("...[truncated]"), len(field["k"])
