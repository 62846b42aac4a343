"""Action and connection middleware (SPEC §3.2, §4), using tests/integration/middleware."""

import os
import re

import pytest

import gateway as gw
from gateway import error_text, errors_of


def test_global_middleware_runs_by_priority(gateway):
    # globalEarly has priority 10, globalLate 50; both record themselves when `mworder` is set.
    status, body = gateway.get("/api/randomNumber?mworder=1")
    assert status == 200, body
    assert body["order"] == ["globalEarly", "globalLate"], body
    assert body["globalField"] == "added by globalEarly"
    assert 0 <= body["randomNumber"] < 1


def test_global_then_action_middleware_in_listed_order(gateway):
    # mw_order lists perActionB (priority 500) before perActionA (priority 1): the list wins.
    status, body = gateway.get("/api/mw_order?mworder=1")
    assert status == 200, body
    assert body["order"] == ["globalEarly", "globalLate", "perActionB", "perActionA", "run"], body


def test_action_middleware_only_on_its_action(gateway):
    status, body = gateway.get("/api/randomNumber")
    assert status == 200, body
    assert "order" not in body and "post" not in body and "globalField" not in body


def test_post_processor_adds_field(gateway):
    status, body = gateway.get("/api/mw_order")
    assert status == 200, body
    assert body["post"] == "added by perActionA"
    assert body["order"] == ["perActionB", "perActionA", "run"]


@pytest.mark.asan
def test_pre_processor_failure_stops_the_action(gateway):
    # required_input would fail its inputs with 422; the middleware error comes first.
    status, body = gateway.get("/api/required_input?deny=1")
    assert status == 400, body
    assert error_text(body) == "denied by middleware"
    assert errors_of(body) == ["denied by middleware"], "inputs must not run"
    status, body = gateway.get("/api/mw_order?deny=1")
    assert status == 400, body
    assert errors_of(body) == ["denied by middleware"], body
    assert "ran" not in body and "post" not in body, "run and postProcessors must not run"
    gateway.assert_serving()


def test_middleware_sees_params_before_scrubbing(gateway):
    # `deny` is declared by no action, yet the global middleware sees it on echo_params.
    status, body = gateway.get("/api/echo_params?deny=1")
    assert status == 400, body
    assert error_text(body) == "denied by middleware"


@pytest.mark.asan
def test_pre_processor_return_nil_err(gateway):
    status, body = gateway.get("/api/mw_return_err")
    assert status == 400, body
    assert error_text(body) == "middleware said no"
    assert "ran" not in body


@pytest.mark.asan
def test_pre_processor_raise_is_500(gateway):
    offset = gateway.log_size()
    r = gateway.request("GET", "/api/mw_raise")
    assert r.status == 500, r.body
    assert error_text(r.json()) == "The server experienced an internal error"
    assert b"middleware secret boom" not in r.body
    assert gateway.wait_for_log("middleware secret boom", since=offset)
    gateway.assert_serving()


@pytest.mark.asan
def test_post_processor_error_added_to_response(gateway):
    status, body = gateway.get("/api/mw_post_err")
    # SPEC 5: 400 for a middleware error without a status; the response is still there.
    assert status == 400, body
    assert error_text(body) == "post processing failed", body
    assert errors_of(body) == ["post processing failed"], body
    assert body.get("ran") is True, "the action ran before its postProcessor"


@pytest.mark.asan
def test_to_process_false_skips_run(gateway):
    status, body = gateway.get("/api/mw_skip")
    assert status == 200, body
    assert body["skipped"] is True
    assert "ran" not in body


@pytest.mark.asan
def test_to_render_false_from_middleware_is_204(gateway):
    r = gateway.request("GET", "/api/mw_no_render")
    assert r.status == 204
    assert r.body == b""
    gateway.assert_serving()


@pytest.mark.asan
def test_connection_middleware_create_and_destroy(gateway):
    offset = gateway.log_size()
    status, _ = gateway.get("/api/randomNumber")
    assert status == 200
    created = gateway.wait_for_log(r"connLogger create id=(\S+) ctype=web", since=offset)
    assert created, "connection middleware create was not called for a web request"
    conn_id = created.group(1)
    destroyed = gateway.wait_for_log(r"connLogger destroy id=%s ctype=web" % re.escape(conn_id),
                                     since=offset)
    assert destroyed, "connection middleware destroy was not called for connection " + conn_id


@pytest.mark.parametrize("default,order", [(100, ["p050", "pdefault", "p150"]),
                                           (200, ["p050", "p150", "pdefault"]),
                                           (10, ["pdefault", "p050", "p150"])])
def test_default_middleware_priority(make_gateway, default, order):
    g = make_gateway({"general": {"defaultMiddlewarePriority": default}, "paths": {
        "actions": [gw.EXAMPLE_ACTIONS],
        "middleware": [os.path.join(gw.HERE, "middleware_priority")]}})
    status, body = g.get("/api/randomNumber?prio=1")
    assert status == 200, body
    assert body["order"] == order
