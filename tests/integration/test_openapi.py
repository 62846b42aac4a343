"""The OpenAPI 3 document (issue 16, docs/openapi.md): `gateway openapi` and
GET /api/openapi.json, for the example actions and for the routing and resource fixtures,
validated with @apidevtools/swagger-parser (npm, project-local in build/npm: this module runs
tests/integration/openapi/install.sh when it is missing), plus
the rules of OpenAPI its JSON Schema does not check (path templates and their parameters,
unique operationIds). Then the content: required inputs, defaults, outputExample, versions,
route parameters, handler generics with their methods and resource schemas, Bearer security,
the served document equal to the printed one, the config block, the project's override."""

import json
import os
import shutil
import signal
import subprocess

import pytest

import gateway as gw

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE_CONFIG = os.path.join(gw.REPO, "gateway.lua.example")
RESOURCES = os.path.join(HERE, "resource_actions")
ROUTING = os.path.join(HERE, "routing")
NODE_MODULES = os.path.join(gw.REPO, "build", "npm", "node_modules")
VALIDATE_JS = os.path.join(HERE, "openapi", "validate.js")
INSTALL = os.path.join(HERE, "openapi", "install.sh")

pytestmark = pytest.mark.asan


# -- the validator ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def validator():
    """validate(doc) -> None, raising AssertionError with swagger-parser's message. Without
    node the module is skipped locally (never in CI: scripts/ensure-deps.sh test installs Debian's nodejs)."""
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        if os.environ.get("CI"):
            pytest.fail("node not found in CI: scripts/ensure-deps.sh test installs Debian's nodejs and npm", pytrace=False)
        pytest.skip("node is not installed: the OpenAPI validator (@apidevtools/swagger-parser) needs "
                    "it (apt-get install nodejs npm)")
    if not os.path.isdir(os.path.join(NODE_MODULES, "@apidevtools", "swagger-parser")):
        proc = subprocess.run([INSTALL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=300, cwd=gw.REPO)
        assert proc.returncode == 0, "could not install the validator (%s):\n%s" % (
            INSTALL, proc.stdout.decode(errors="replace")[-4000:])

    def validate(doc, tmp_path):
        path = os.path.join(str(tmp_path), "doc.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        proc = subprocess.run([node, VALIDATE_JS, NODE_MODULES, path], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)
        out = proc.stdout.decode(errors="replace")
        assert proc.returncode == 0 and out.strip() == "valid", "swagger-parser: " + out[-6000:]
        check_openapi_rules(doc)

    return validate


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def check_openapi_rules(doc):
    """OpenAPI 3 rules outside its JSON Schema (swagger-parser checks them for Swagger 2 only):
    each {name} of a path has a required path parameter and each path parameter a {name};
    parameters are unique by (name, in); operationIds are unique; no two paths are the same
    template with other names."""
    seen_ids, templates = set(), {}
    for path, item in doc["paths"].items():
        names = set(part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}"))
        template = "/".join("{}" if p.startswith("{") else p for p in path.split("/"))
        assert template not in templates, "%s and %s are the same template" % (path, templates[template])
        templates[template] = path
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = op.get("parameters", [])
            keys = [(p["name"], p["in"]) for p in params]
            assert len(keys) == len(set(keys)), "%s %s: duplicate parameters %r" % (method, path, keys)
            in_path = set(p["name"] for p in params if p["in"] == "path")
            assert in_path == names, "%s %s: path parameters %r, template %r" % (method, path, in_path, names)
            for p in params:
                if p["in"] == "path":
                    assert p.get("required") is True, (method, path, p)
            assert op["operationId"] not in seen_ids, op["operationId"]
            seen_ids.add(op["operationId"])


# -- helpers ---------------------------------------------------------------------------------

def generate(config_path, **kw):
    res = gw.run_cli(["openapi", "--config", config_path], **kw)
    assert res.returncode == 0, res.stderr
    return res.stdout


def fixtures_config(tmp_path, redis_url=None, extra=None):
    """Resources, the routing fixtures (actions, a handler, routes.lua) and the examples."""
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS, RESOURCES,
                                                       os.path.join(ROUTING, "actions")])
    config["paths"]["routes"] = os.path.join(ROUTING, "routes.lua")
    config["servers"]["socket"] = {"enabled": True, "port": 0}
    if extra:
        config = gw.deep_merge(config, extra)
    return config


def write(tmp_path, config, name="gw.lua"):
    return gw.write_config(os.path.join(str(tmp_path), name), config)


def param(op, name, where=None):
    for p in op.get("parameters", []):
        if p["name"] == name and (where is None or p["in"] == where):
            return p
    return None


def body_schema(op, media="application/json"):
    return op["requestBody"]["content"][media]["schema"]


def resolve(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


# -- the example actions ---------------------------------------------------------------------

def test_examples_document_is_valid_and_deterministic(validator, tmp_path):
    text = generate(EXAMPLE_CONFIG)
    doc = json.loads(text)
    validator(doc, tmp_path)
    assert doc["openapi"] == "3.0.3"
    assert doc["info"] == {"title": "gateway", "version": "1.0.0"}
    # The same files give the same bytes, keys sorted, one per line.
    assert generate(EXAMPLE_CONFIG) == text
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    # Built-ins with toDocument = false are not documented.
    assert "/api/showDocumentation" not in doc["paths"]
    assert "/api/openapi" not in doc["paths"]


def test_examples_inputs_defaults_examples_and_security(tmp_path):
    doc = json.loads(generate(EXAMPLE_CONFIG))
    paths = doc["paths"]
    # Actions answer any method: GET (inputs in the query) and POST (in a JSON or form body).
    assert set(paths["/api/randomNumber"]) == {"get", "post"}
    get = paths["/api/randomNumber"]["get"]
    multiplier = param(get, "multiplier", "query")
    assert multiplier["schema"]["default"] == 1 and not multiplier.get("required")
    assert get["responses"]["200"]["content"]["application/json"]["example"] == {"randomNumber": 0.123}
    assert "422" in get["responses"] and "401" not in get["responses"]
    post = paths["/api/randomNumber"]["post"]
    assert body_schema(post)["properties"]["multiplier"]["default"] == 1
    assert "required" not in body_schema(post)
    # Required inputs are required.
    login = paths["/api/login"]
    assert param(login["get"], "user", "query")["required"] is True
    assert param(login["get"], "password", "query")["required"] is True
    assert body_schema(login["post"])["required"] == ["password", "user"]
    assert login["post"]["requestBody"]["required"] is True
    assert body_schema(login["post"], "application/x-www-form-urlencoded")["required"] == ["password", "user"]
    # isAuthenticated: Bearer security and 401.
    profile = paths["/api/profile"]["get"]
    assert profile["security"] == [{"bearerAuth": []}]
    assert "401" in profile["responses"] and "422" not in profile["responses"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert "security" not in paths["/api/randomNumber"]["get"]
    # The shared error shape, and the statuses every action may answer.
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "errors"]
    for status in ("400", "429", "500", "503", "504"):
        assert get["responses"][status] == {"$ref": "#/components/responses/" + {
            "400": "BadRequest", "429": "TooManyRequests", "500": "InternalError",
            "503": "ServiceUnavailable", "504": "GatewayTimeout"}[status]}
    # A validator named "api.validators.email" and formatters say what the input is.
    users = body_schema(paths["/api/userAdd"]["post"])
    assert users["properties"]["email"].get("format") == "email"
    # The consumers of the examples are WebSocket-only: listed under x-websocket.
    ws = doc["x-websocket"]
    assert ws["path"] == "/ws"
    assert any(c["url"].startswith("^/ws/chat/") for c in ws["consumers"])
    assert doc["x-unmapped-routes"] == []


# -- routes, handlers, resources, versions ----------------------------------------------------

def test_fixtures_document_is_valid(validator, tmp_path):
    doc = json.loads(generate(write(tmp_path, fixtures_config(tmp_path))))
    validator(doc, tmp_path)


def test_routes_become_paths_with_path_parameters(tmp_path):
    doc = json.loads(generate(write(tmp_path, fixtures_config(tmp_path))))
    paths = doc["paths"]
    # :id -> {id}, a required path parameter; the action's other inputs stay in the query.
    things = paths["/api/things/{id}"]
    assert things["get"]["x-action"] == "routeGet"
    p = param(things["get"], "id")
    assert p["in"] == "path" and p["required"] is True
    assert param(things["get"], "id", "query") is None
    assert param(things["get"], "q", "query") is not None
    # `all` gives the usual five methods, after each method's own list.
    assert set(things) == {"get", "post", "put", "patch", "delete"}
    assert things["post"]["x-action"] == "routeAll"
    assert param(things["post"], "id")["in"] == "path"
    assert "id" not in body_schema(things["post"])["properties"]
    # A regex constraint is the parameter's pattern; a head list gives HEAD.
    login = param(paths["/api/login/{userID}"]["get"], "userID")
    assert login["in"] == "path" and login["schema"]["pattern"] == r"^(\d{3}|admin)$"
    assert paths["/api/hd/{id}"]["head"]["x-action"] == "routeHead"
    # Precedence (SPEC §6): the route GET /routeB takes /api/routeB from the action routeB.
    assert paths["/api/routeB"]["get"]["x-action"] == "routeC"
    assert paths["/api/routeB"]["post"]["x-action"] == "routeB"
    # :apiVersion in a path is a path parameter, not the query's enum.
    ver = paths["/api/ver/{apiVersion}/thing"]["get"]
    assert param(ver, "apiVersion")["in"] == "path"
    assert len([p for p in ver["parameters"] if p["name"] == "apiVersion"]) == 1
    # Shadowed routes and patterns that are not paths are listed, not documented.
    unmapped = doc["x-unmapped-routes"]
    assert {"route": "GET /api/first/fixed", "method": "GET",
            "reason": "always taken first by the web route GET /api/first/:x"} in unmapped
    assert any(u.get("route") == "^routeA$" for u in unmapped)
    assert "/api/first/fixed" not in paths


def test_versions_are_an_apiversion_enum(tmp_path):
    doc = json.loads(generate(write(tmp_path, fixtures_config(tmp_path))))
    op = doc["paths"]["/api/routeVersioned"]["get"]
    v = param(op, "apiVersion", "query")
    assert v["schema"]["enum"] == [1, 2] and v["schema"]["default"] == 2
    assert sorted(op["x-versions"]) == ["1", "2"]
    # A route's apiVersion is the default it gives.
    assert param(doc["paths"]["/api/v1thing"]["get"], "apiVersion")["schema"]["default"] == 1
    # One version: no parameter.
    assert param(doc["paths"]["/api/randomNumber"]["get"], "apiVersion") is None


def test_handler_generics_have_their_methods_and_schemas(tmp_path):
    doc = json.loads(generate(write(tmp_path, fixtures_config(tmp_path))))
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    # ^items/$ and ^items/(?P<pk>[-\w]+)/$: list/create, and retrieve/update/partial_update/remove.
    items, item = paths["/api/items/"], paths["/api/items/{pk}/"]
    assert {m: op["x-handler-action"] for m, op in items.items()} == {"get": "list", "post": "create"}
    assert {m: op["x-handler-action"] for m, op in item.items()} == {
        "get": "retrieve", "put": "update", "patch": "partial_update", "delete": "remove"}
    pk = param(item["get"], "pk")
    assert pk["in"] == "path" and pk["required"] is True and pk["schema"]["pattern"] == r"^(?:[-\w]+)$"
    # Statuses with schemas.
    assert resolve(doc, items["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]) \
        is not None
    assert "204" in item["delete"]["responses"] and "404" in item["delete"]["responses"]
    assert "422" in item["put"]["responses"] and "404" in item["get"]["responses"]
    listed = items["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array" and listed["items"] == {"$ref": "#/components/schemas/Item"}
    # The resource's fields: required, maxLength/minLength, defaults; id read-only.
    request = resolve(doc, body_schema(items["post"])["$ref"])
    assert request["required"] == ["title"]
    assert request["properties"]["title"] == {"type": "string", "maxLength": 255}
    assert request["properties"]["code"] == {"type": "string", "minLength": 3, "maxLength": 5}
    assert request["properties"]["content"]["default"] == ""
    patch = resolve(doc, body_schema(item["patch"])["$ref"])
    assert "required" not in patch
    obj = schemas["Item"]
    assert obj["properties"]["id"] == {"type": "integer", "readOnly": True}
    assert obj["properties"]["code"]["nullable"] is True
    assert "nullable" not in obj["properties"]["title"]
    # pageSize: the page shape and ?page=.
    pages = paths["/api/pages/"]["get"]
    page = resolve(doc, pages["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert page["required"] == ["count", "next", "previous", "results"]
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Page"}
    assert param(pages, "page", "query") is not None
    # destroy is DELETE; a resource without update has no PUT.
    assert paths["/api/pages/{pk}/"]["delete"]["x-handler-action"] == "destroy"
    assert "put" not in paths["/api/notes/{pk}/"]
    # A handler's own functions in the generic slots (routing/actions/z_handler.lua).
    assert paths["/api/onlyhandler/{pk}/"]["get"]["x-handler-action"] == "retrieve"
    # The routing fixtures' handler pattern ^things/(?P<pk>\w+)$ is taken by the web routes.
    assert any(u.get("route") == r"^things/(?P<pk>\w+)$" for u in doc["x-unmapped-routes"])


def test_resource_field_keys_map_when_present(validator, tmp_path):
    """type, choices, readOnly and blank on a resource field (read when present; the other
    spellings are in tests/lua/openapi_spec.lua), permissions, and unmapped patterns."""
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "tickets.lua").write_text(r'''
api.permissions.add("isStaff", function(data) return true end)
return {
  routes = { [[^tickets/$]], [[^tickets/(?P<pk>\d+)/$]], [[^tickets/?$]], [[tickets/(\d+)]] },
  permissions = { "isAuthenticated", "isStaff" },
  resource = {
    name = "ticket",
    fields = {
      title = { required = true, type = "string", blank = false },
      state = { type = "string", choices = { "open", "closed" }, default = "open" },
      kind = { choices = { "bug", "idea" } },
      count = { type = "integer" },
      created = { type = "string", readOnly = true },
    },
    pageSize = 3,
  },
  generics = { "list", "create", "retrieve", "update", "partial_update", "remove" },
}
''')
    config = gw.default_config(str(tmp_path), actions=[str(actions)])
    doc = json.loads(generate(write(tmp_path, config)))
    validator(doc, tmp_path)
    schemas = doc["components"]["schemas"]
    req = schemas["TicketRequest"]
    assert req["required"] == ["title"]
    assert req["properties"]["title"] == {"type": "string", "minLength": 1}
    assert req["properties"]["state"] == {"type": "string", "enum": ["open", "closed"], "default": "open"}
    assert req["properties"]["count"] == {"type": "integer"}
    assert "created" not in req["properties"]
    obj = schemas["Ticket"]["properties"]
    assert obj["created"] == {"type": "string", "readOnly": True, "nullable": True}
    assert obj["kind"]["enum"] == ["bug", "idea", None] and obj["kind"]["nullable"] is True
    assert "nullable" not in obj["state"]  # a default: never null
    assert set(doc["paths"]["/api/tickets/{pk}/"]) == {"get", "put", "patch", "delete"}
    op = doc["paths"]["/api/tickets/{pk}/"]["get"]
    assert op["security"] == [{"bearerAuth": []}]
    assert "401" in op["responses"] and "403" in op["responses"]
    reasons = {u["route"]: u["reason"] for u in doc["x-unmapped-routes"]}
    assert "quantifier" in reasons["^tickets/?$"]
    assert "anchored" in reasons[r"tickets/(\d+)"]


# -- served, and the same as printed ---------------------------------------------------------

def test_served_document_equals_printed(validator, make_gateway, redis_url, tmp_path):
    config = fixtures_config(tmp_path, redis_url)
    printed = json.loads(generate(write(tmp_path, config)))
    g = make_gateway(config=config)
    r = g.request("GET", "/api/openapi.json")
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/json")
    served = json.loads(r.body)
    validator(served, tmp_path)
    # The bare document: no metadata (serverInformation) added to it.
    assert "serverInformation" not in served and "requesterInformation" not in served
    assert served["paths"] == printed["paths"]
    assert served["components"] == printed["components"]
    assert served["x-unmapped-routes"] == printed["x-unmapped-routes"]
    # Its server is the URL it was asked at; the printed one has the config's listener.
    assert served["servers"] == [{"url": g.url}]
    assert printed["servers"] == [{"url": "/"}]  # port 0: no fixed URL
    # /api/openapi (no extension) is the same document.
    assert json.loads(g.request("GET", "/api/openapi").body) == served
    # Over a persistent connection the document is the message's data, empty arrays as [].
    [answer] = gw.exchange(g, "tcp", [{"action": "openapi"}])
    assert answer["status"] == 200
    assert answer["data"]["paths"] == printed["paths"]
    assert answer["data"]["paths"]["/api/profile"]["get"]["security"] == [{"bearerAuth": []}]


def test_reload_serves_the_new_document(make_gateway, redis_url, tmp_path):
    actions = tmp_path / "actions"
    actions.mkdir()
    config = gw.default_config(str(tmp_path), redis_url, actions=[str(actions)])
    (actions / "one.lua").write_text('return { name = "one", description = "1", run = function() end }\n')
    g = make_gateway(config=config)
    assert set(json.loads(g.request("GET", "/api/openapi.json").body)["paths"]) == {"/api/one"}
    (actions / "two.lua").write_text('return { name = "two", description = "2", '
                                     'inputs = { n = { required = true } }, run = function() end }\n')
    since = g.log_size()
    g.signal(signal.SIGHUP)
    g.wait_for_log(r"reload done", timeout=gw.bound(5), since=since)
    doc = json.loads(g.request("GET", "/api/openapi.json").body)
    assert set(doc["paths"]) == {"/api/one", "/api/two"}
    assert param(doc["paths"]["/api/two"]["get"], "n")["required"] is True


def test_host_header_is_checked(make_gateway, tmp_path):
    g = make_gateway()
    bad = b'<script>"x'
    raw = g.raw(b"GET /api/openapi.json HTTP/1.1\r\nHost: " + bad + b"\r\nConnection: close\r\n\r\n")
    status, _, body = gw.split_raw_response(raw)
    assert status == 200
    doc = json.loads(body)
    assert doc["servers"] == [{"url": "/"}]
    assert b"<script>" not in body
    ok = g.request("GET", "/api/openapi.json", headers={"Host": "api.example.com:8443"})
    assert json.loads(ok.body)["servers"] == [{"url": "http://api.example.com:8443"}]


def test_config_block(make_gateway, redis_url, tmp_path):
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS])
    config["openapi"] = {"title": "Shop API", "version": "2.1.0", "description": "Things to buy",
                         "servers": ["https://api.example.com", "http://localhost:8080"]}
    doc = json.loads(generate(write(tmp_path, config)))
    assert doc["info"] == {"title": "Shop API", "version": "2.1.0", "description": "Things to buy"}
    assert doc["servers"] == [{"url": "https://api.example.com"}, {"url": "http://localhost:8080"}]
    g = make_gateway(config=config)
    served = json.loads(g.request("GET", "/api/openapi.json").body)
    assert served["servers"] == doc["servers"] and served["info"] == doc["info"]
    # The listener of the config when nothing is asked and no servers are listed.
    config2 = gw.default_config(str(tmp_path), actions=[gw.EXAMPLE_ACTIONS])
    config2["servers"]["web"] = {"host": "0.0.0.0", "port": 9000}
    assert json.loads(generate(write(tmp_path, config2, "b.lua")))["servers"] == [
        {"url": "http://127.0.0.1:9000"}]


def test_disabled_and_overridden(make_gateway, redis_url, tmp_path):
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS])
    config["openapi"] = {"enabled": False}
    g = make_gateway(config=config)
    status, body = g.get("/api/openapi.json")
    assert status == 404, body
    # The command still prints it.
    assert json.loads(generate(write(tmp_path, config)))["paths"]["/api/randomNumber"]
    # A project action named openapi wins over the built-in.
    own = tmp_path / "own"
    own.mkdir()
    (own / "openapi.lua").write_text('return { name = "openapi", description = "mine", '
                                     'run = function(api, data) data.response.mine = true end }\n')
    w2 = tmp_path / "w2"
    w2.mkdir()
    g2 = make_gateway(config=gw.default_config(str(w2), redis_url, actions=[str(own)]))
    status, body = g2.get("/api/openapi")
    assert status == 200 and body["mine"] is True


def test_guarded_by_global_middleware(make_gateway, redis_url, tmp_path):
    """The built-in runs the usual pipeline: a global middleware can keep it private."""
    mw = tmp_path / "mw"
    mw.mkdir()
    (mw / "guard.lua").write_text('''return { name = "guard", global = true,
  preProcessor = function(data)
    if data.action == "openapi" and data.connection.rawConnection.headers["x-key"] ~= "k" then
      return nil, { status = 403, message = "no" }
    end
  end }
''')
    config = gw.default_config(str(tmp_path), redis_url, actions=[gw.EXAMPLE_ACTIONS], middleware=[str(mw)])
    g = make_gateway(config=config)
    status, body = g.get("/api/openapi.json")
    assert status == 403 and body["error"] == "no"
    r = g.request("GET", "/api/openapi.json", headers={"X-Key": "k"})
    assert r.status == 200 and json.loads(r.body)["openapi"] == "3.0.3"


def test_cli_errors(tmp_path):
    # A config that does not load: exit 1, the reason on stderr, nothing on stdout.
    bad = gw.write_config(os.path.join(str(tmp_path), "bad.lua"), "return { openapi = { title = 3 } }\n")
    res = gw.run_cli(["openapi", "--config", bad])
    assert res.returncode == 1 and res.stdout == ""
    assert "openapi.title" in res.stderr
    actions = tmp_path / "actions"
    actions.mkdir()
    (actions / "broken.lua").write_text('return { name = "broken" }\n')
    cfg = write(tmp_path, gw.default_config(str(tmp_path), actions=[str(actions)]))
    res = gw.run_cli(["openapi", "--config", cfg])
    assert res.returncode == 1 and res.stdout == ""
    assert "broken.lua" in res.stderr
    # Usage errors stay 2.
    res = gw.run_cli(["openapi", "extra"])
    assert res.returncode == 2 and "unexpected argument" in res.stderr
