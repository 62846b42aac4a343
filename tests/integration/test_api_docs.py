"""What README's `api` table says of api.json.empty_array, api.config.app (the config's
`app` section) and api.connections (one worker's connections), through the built binary."""

import json

import gateway as gw

ACTIONS = r'''
return {
  emptyList = {
    name = "emptyList", description = "an empty array in the answer",
    run = function(api, data)
      data.response.items = api.json.empty_array
      data.response.isString = type(api.json.empty_array) == "string"
      data.response.encoded = api.json.encode({ a = api.json.empty_array, b = {} })
    end,
  },
  appSettings = {
    name = "appSettings", description = "reads api.config.app",
    run = function(api, data)
      local app = api.config.app
      data.response.currency = app.currency
      data.response.perPage = app.limits and app.limits.perPage
      data.response.empty = true
      for k, v in pairs(app) do
        data.response.empty = false
        if type(v) == "table" then
          -- pairs gives nested tables read-only too
          data.response.nestedReadOnly = not pcall(function() v.changed = 1 end)
        end
      end
    end,
  },
  appWrite = {
    name = "appWrite", description = "tries to change api.config.app",
    run = function(api, data) api.config.app.currency = "USD" end,
  },
  seen = {
    name = "seen", description = "my worker's pid and its open connections",
    run = function(api, data)
      local f = io.open("/proc/self/stat")
      data.response.pid = tonumber(f:read("l"):match("^(%d+)"))
      f:close()
      data.response.count = api.connections.count()
      local n = 0
      for _ in pairs(api.connections.connections) do n = n + 1 end
      data.response.listed = n
    end,
  },
}
'''


def _actions(tmp_path):
    d = tmp_path / "doc_actions"
    d.mkdir(exist_ok=True)
    (d / "doc.lua").write_text(ACTIONS)
    return str(d)


def test_empty_array_encodes_as_an_empty_json_array(make_gateway, tmp_path):
    g = make_gateway({"paths": {"actions": [_actions(tmp_path)]}})
    status, headers, raw = g.request("GET", "/api/emptyList")
    assert status == 200, raw
    assert b'"items":[]' in raw, raw
    body = json.loads(raw)
    assert body["isString"] is True
    assert json.loads(body["encoded"]) == {"a": [], "b": {}}


def test_app_section_is_read_as_api_config_app(make_gateway, tmp_path):
    g = make_gateway({"paths": {"actions": [_actions(tmp_path)]},
                      "app": {"currency": "EUR", "limits": {"perPage": 20}}})
    status, body = g.get("/api/appSettings")
    assert status == 200, body
    assert (body["currency"], body["perPage"], body["empty"]) == ("EUR", 20, False)
    assert body["nestedReadOnly"] is True, body
    since = g.log_size()
    status, body = g.get("/api/appWrite")
    assert status == 500, body
    g.wait_for_log(r"api\.config\.app is read-only \(tried to set currency\)", gw.bound(5), since=since)


def test_app_section_defaults_to_an_empty_table(make_gateway, tmp_path):
    g = make_gateway({"paths": {"actions": [_actions(tmp_path)]}})
    status, body = g.get("/api/appSettings")
    assert status == 200, body
    assert body["empty"] is True and "currency" not in body


def test_app_section_must_be_a_table(tmp_path, redis_url):
    path = gw.write_config(str(tmp_path / "gateway.lua"), 'return { app = "EUR" }\n')
    res = gw.run_cli(["--config", path, "--check"])
    assert res.returncode == 1, res.stdout + res.stderr
    assert "gateway.lua:1: app: expected a table, got string" in res.stderr


def test_api_connections_counts_one_workers_connections(make_gateway, tmp_path):
    g = make_gateway({"workers": 2, "paths": {"actions": [_actions(tmp_path)]},
                      "servers": {"socket": {"enabled": True, "port": 0}}})
    clients = [g.line_client() for _ in range(8)]
    try:
        answers = [c.call('{"action": "seen"}') for c in clients]
        by_pid = {}
        for a in answers:
            assert a["status"] == 200, a
            by_pid.setdefault(a["data"]["pid"], []).append(a["data"])
        # Each worker counts (and lists) the clients it serves, not the other worker's.
        for pid, seen in by_pid.items():
            for s in seen:
                assert s["count"] == len(seen) and s["listed"] == len(seen), (pid, seen, by_pid)
        assert sum(len(s) for s in by_pid.values()) == 8
    finally:
        for c in clients:
            c.close()
