"""The browser client (public/gateway-client.js, README "Browser client") and its demo page
(public/demo.html), in real headless Chromium driven over the DevTools protocol (chromium.py):
the page is loaded from the gateway's /public/ folder and clicked; the tests read what it shows
and what it keeps in `window.demo`. Covered: an action call, a validation error (422), server
pushes (api.connections.send, the chat consumer's groupSend), request ids matched out of order,
timeouts with the late answer ignored, the bounded queue, close(), and a reconnect after the
gateway restarts on the same port, with the session restored by the re-sent authenticate.
"""

import asyncio
import json
import os
import uuid

import pytest

import chromium as cdp
import gateway as gw

PUBLIC = os.path.join(gw.REPO, "public")
DEMO = "/public/demo.html"
WAIT = 10.0  # seconds for anything the page does


@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    """One headless Chromium for the module. Missing, the tests fail (never skip): `make
    test` installs Debian's chromium."""
    path = cdp.binary()
    if not path:
        pytest.fail("chromium not found (install Debian's chromium, or run `make test`, which "
                    "does)", pytrace=False)
    browser = cdp.Chromium(path, tmp_path_factory.mktemp("chromium")).start()
    try:
        yield browser
    finally:
        browser.stop()


def site_config(workdir, redis_url):
    """The test config, serving the repository's own public/ folder."""
    config = gw.default_config(str(workdir), redis_url)
    config["paths"]["public"] = PUBLIC
    config["general"]["actionTimeout"] = 5000
    return config


@pytest.fixture(scope="module")
def site(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser")
    with gw.serving(workdir, site_config(workdir, redis_url)) as g:
        yield g


def in_page(chrome, g, scenario, path=DEMO):
    """Open `path` of gateway `g` in Chromium, wait until the demo's client is open, run
    `await scenario(page)`, then check that the page threw nothing and leave it (about:blank
    closes its WebSockets, so it stops talking to this test's gateway)."""

    async def go():
        async with cdp.Page(chrome.page_url()) as page:
            try:
                await page.goto(g.url + path)
                await page.wait_for("window.demo && demo.gw.state === 'open'", WAIT, "client open")
                result = await scenario(page)
                assert page.exceptions == [], page.exceptions
                return result
            finally:
                await page.goto("about:blank")

    return asyncio.run(go())


def js(value):
    return json.dumps(value)


# -- served files ---------------------------------------------------------------------------


class ExampleGateway(gw.Gateway):
    """The gateway with the repository's gateway.lua.example itself (paths relative to it)."""

    def command(self):
        return [self.binary, "--config", os.path.join(gw.REPO, "gateway.lua.example"),
                "--port", "0"] + self.args


def test_example_config_serves_the_client(gateway_bin, redis_url, tmp_path):
    g = ExampleGateway(tmp_path, "return {}\n", args=["--redis", redis_url]).start()
    try:
        for name, mime in (("gateway-client.js", "text/javascript; charset=utf-8"),
                           ("gateway-client.mjs", "text/javascript; charset=utf-8"),
                           ("demo.html", "text/html; charset=utf-8")):
            r = g.request("GET", "/public/" + name)
            assert r.status == 200, (name, r)
            assert r.headers["Content-Type"] == mime
            with open(os.path.join(PUBLIC, name), "rb") as f:
                assert r.body == f.read()
    finally:
        g.stop()
    assert g.teardown_problems() == [], g.describe()


def test_es_module_and_script_global_are_one_class(chrome, site):
    async def scenario(page):
        return await page.evaluate(
            "import('/public/gateway-client.mjs').then(m => m.GatewayClient === window.GatewayClient"
            " && m.default === m.GatewayClient && m.GatewayError === GatewayClient.GatewayError)")
    assert in_page(chrome, site, scenario) is True


# -- the demo page --------------------------------------------------------------------------


def test_action_call_shows_the_result(chrome, site):
    async def scenario(page):
        assert await page.text("status") == "open"
        await page.fill("multiplier", "10")
        await page.click("random")
        await page.wait_for("document.getElementById('result').textContent.startsWith('randomNumber = ')",
                            WAIT)
        shown = float((await page.text("result")).split(" = ")[1])
        value = await page.evaluate("demo.lastResult.randomNumber")
        return shown, value, await page.evaluate("document.getElementById('result').className")

    shown, value, cls = in_page(chrome, site, scenario)
    assert shown == value and 0 <= value < 10
    assert cls == "ok"


def test_validation_error_shows_status_and_message(chrome, site):
    async def scenario(page):
        await page.fill("multiplier", "-1")
        await page.click("random")
        await page.wait_for("demo.lastError !== null", WAIT)
        err = await page.evaluate(
            "({name: demo.lastError.name, message: demo.lastError.message, status: demo.lastError.status,"
            " errors: demo.lastError.errors, envelope: demo.lastError.envelope,"
            " isError: demo.lastError instanceof Error, code: demo.lastError.code || null})")
        return err, await page.text("result"), await page.evaluate(
            "document.getElementById('result').className")

    err, shown, cls = in_page(chrome, site, scenario)
    assert shown == "422 multiplier: must be > 0" and cls == "error"
    assert err["isError"] and err["name"] == "GatewayError" and err["code"] is None
    assert err["status"] == 422 and err["message"] == "multiplier: must be > 0"
    assert err["errors"] == [{"multiplier": ["must be > 0"]}]
    env = err["envelope"]
    assert env["status"] == 422 and env["data"] is None and env["action"] == "randomNumber"
    assert isinstance(env["request_id"], int)


def test_plain_error_message_and_unknown_action(chrome, site):
    async def scenario(page):
        return await page.evaluate("""(async () => {
          const out = [];
          for (const [action, data] of [["login", {user: "a", password: "wrong"}], ["noSuchAction", {}],
                                        ["profile", {}]]) {
            try { await demo.gw.call(action, data); out.push(null); }
            catch (e) { out.push([e.status, e.message, e.errors]); }
          }
          return out;
        })()""")

    (login, unknown, profile) = in_page(chrome, site, scenario)
    assert login[0] == 401 and login[1] == "invalid user or password", login
    assert unknown[:2] == [404, "unknown action or invalid apiVersion"], unknown
    assert profile[:2] == [401, "Authentication credentials were not provided."], profile


def test_server_push_from_api_connections_send(chrome, site):
    """An action elsewhere (here over HTTP) pushes to the page's connection: a table as JSON,
    a string as it is; both reach on("push") and the page's list."""
    async def scenario(page):
        me = await page.evaluate("demo.gw.call('connection_info').then(d => d.id)")
        status, body = await asyncio.to_thread(
            site.json, "POST", "/api/push_to", {"to": me, "message": {"kind": "note", "n": 1}})
        assert status == 200 and body["sent"] is True, body
        status, body = await asyncio.to_thread(
            site.json, "POST", "/api/push_to", {"to": me, "message": "plain <b>text</b>"})
        assert status == 200 and body["sent"] is True, body
        await page.wait_for("demo.pushes.length >= 2", WAIT)
        return (await page.evaluate("demo.pushes"),
                await page.evaluate("[...document.querySelectorAll('#pushes li')].map(li => li.textContent)"),
                await page.evaluate("document.querySelectorAll('#pushes b').length"))

    pushes, shown, bold = in_page(chrome, site, scenario)
    assert pushes == [{"from": "main", "message": {"kind": "note", "n": 1}},
                      {"from": "main", "message": "plain <b>text</b>"}]
    assert shown[0].startswith("main push: ")
    assert json.loads(shown[0][len("main push: "):]) == {"kind": "note", "n": 1}
    assert shown[1] == "main push: plain <b>text</b>"
    assert bold == 0  # shown as text, never as HTML


def test_chat_pushes_reach_the_page(chrome, site):
    """The demo joins a room of actions/chat.lua; a Python client in the same room says
    something (groupSend) and the page shows it; the page says something and both get it."""
    room = "r" + uuid.uuid4().hex[:10]

    async def scenario(page):
        async with site.ws_connect("/ws/chat/%s/" % room) as other:
            await page.fill("room", room)
            await page.click("join")
            await page.wait_for("document.getElementById('chat').textContent === %s" % js("in room " + room),
                                WAIT)
            await other.send(json.dumps({"action": "say", "data": {"message": "<img src=x onerror=window.pwned=1>"},
                                         "request_id": "py"}))
            answers = [json.loads(await asyncio.wait_for(other.recv(), WAIT)) for _ in range(2)]
            await page.wait_for("demo.pushes.length >= 1", WAIT)

            await page.fill("message", "hello from the page")
            await page.click("say")
            await page.wait_for("demo.pushes.length >= 2", WAIT)
            await page.wait_for("document.getElementById('chat').textContent.startsWith('said it')", WAIT)
            heard = json.loads(await asyncio.wait_for(other.recv(), WAIT))
            return (answers, heard, await page.evaluate("demo.pushes"), await page.text("chat"),
                    await page.evaluate("[...document.querySelectorAll('#pushes li')].map(li => li.textContent)"),
                    await page.evaluate("window.pwned === undefined && document.querySelectorAll('#pushes img').length"))

    answers, heard, pushes, chat, shown, imgs = in_page(chrome, site, scenario)
    ours = [a for a in answers if a.get("request_id") == "py"]
    assert len(ours) == 1 and ours[0]["data"] == {"delivered": 2}, answers
    first, second = pushes
    assert first["from"] == "chat" and first["message"]["event"] == "say"
    assert first["message"]["room"] == room
    assert first["message"]["message"] == "<img src=x onerror=window.pwned=1>"
    assert second["message"]["message"] == "hello from the page"
    assert heard["event"] == "say" and heard["message"] == "hello from the page"
    assert heard["from"] == second["message"]["from"] != first["message"]["from"]
    assert chat == "said it to 2 connection(s)"
    assert shown[0].endswith(": <img src=x onerror=window.pwned=1>")
    assert imgs == 0


# -- the client's semantics, on the demo page's client ------------------------------------


def test_answers_matched_by_request_id_out_of_order(chrome, site):
    async def scenario(page):
        return await page.evaluate("""(async () => {
          const order = [];
          const calls = [400, 300, 200, 100, 0].map(ms => demo.gw.call("sleepTest", {sleepDuration: ms})
            .then(d => { order.push(ms); return d.sleepDuration; }));
          return {values: await Promise.all(calls), order};
        })()""", timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert res["values"] == [400, 300, 200, 100, 0]  # each promise got its own answer
    assert res["order"][0] == 0 and res["order"][-1] == 400, res  # answers came out of order


def test_timeout_rejects_and_the_late_answer_is_ignored(chrome, site):
    """A call that times out rejects (had its answer come first, it would have resolved);
    its answer, arriving later, is neither taken for a push nor an error. A second call
    sleeping longer is answered after it, so once that one resolves the late answer is in."""
    async def scenario(page):
        return await page.evaluate("""(async () => {
          const late = demo.gw.call("sleepTest", {sleepDuration: 600}, {timeout: 100})
            .then(() => null, e => ({code: e.code, message: e.message, status: e.status || null, action: e.action}));
          const after = demo.gw.call("sleepTest", {sleepDuration: 900});
          const err = await late;
          const pendingAtTimeout = demo.gw._pending.size;
          const slept = (await after).sleepDuration;
          return {err, pendingAtTimeout, slept, pendingAfter: demo.gw._pending.size,
                  pushes: demo.pushes.length, state: demo.gw.state};
        })()""", timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert res["err"] == {"code": "timeout", "message": "no answer within 100 ms", "status": None,
                          "action": "sleepTest"}
    assert res["pendingAtTimeout"] == 1  # only the second call is still waited for
    assert res["slept"] == 900 and res["pendingAfter"] == 0
    assert res["pushes"] == 0  # the late answer was not taken for a push
    assert res["state"] == "open"


def test_route_option_reaches_a_handler(chrome, site):
    """{ route } is sent as the envelope's route: no handler matches it here, so the
    gateway's 404 names the route."""
    async def scenario(page):
        return await page.evaluate("""demo.gw.call("list", {}, {route: "nowhere/"})
          .then(() => null, e => [e.status, e.message, e.envelope.route])""")

    assert in_page(chrome, site, scenario) == [404, 'route "nowhere/" not found', "nowhere/"]


def test_queue_bound_and_giving_up_without_reconnect(chrome, site):
    """Calls made before a connection is ready wait in a queue of maxQueue; more are rejected
    at once. A client without reconnect that cannot connect rejects the queue ("closed")."""
    port = gw.free_port()  # nothing listens there

    async def scenario(page):
        return await page.evaluate("""(async () => {
          const c = new GatewayClient("ws://127.0.0.1:%d/ws", {reconnect: false, maxQueue: 2});
          const events = [];
          c.on("close", e => events.push("close " + e.code));
          c.on("reconnect", () => events.push("reconnect"));
          const settle = p => p.then(() => "ok", e => e.code);
          const calls = [1, 2, 3].map(() => settle(c.call("randomNumber")));
          const results = await Promise.all(calls);
          const later = await settle(c.call("randomNumber"));
          return {results, later, state: c.state, events};
        })()""" % port, timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert res["results"] == ["closed", "closed", "queue_full"]
    assert res["later"] == "closed" and res["state"] == "closed"
    assert res["events"] == ["close 1006"]


def test_close_rejects_calls_in_flight(chrome, site):
    async def scenario(page):
        return await page.evaluate("""(async () => {
          const c = new GatewayClient("/ws");
          const events = [];
          c.on("close", e => events.push("close " + e.code));
          c.on("reconnect", () => events.push("reconnect"));
          await new Promise(r => c.on("open", r));
          const pending = c.call("sleepTest", {sleepDuration: 300}).then(() => "ok", e => e.code);
          c.close();
          const after = await c.call("randomNumber").then(() => "ok", e => e.code);
          await new Promise(r => setTimeout(r, 500));
          return {pending: await pending, after, state: c.state, events};
        })()""", timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert res == {"pending": "closed", "after": "closed", "state": "closed", "events": ["close 1000"]}


# -- reconnect ------------------------------------------------------------------------------


def test_reconnect_after_the_gateway_restarts(chrome, make_gateway, redis_url, tmp_path):
    """The gateway stops (its WebSockets close with 1001) and comes back on the same port: the
    page's client reconnects with backoff, a call made while it was down waits in the queue and
    succeeds, and the session it authenticated is restored on the new connection (profile
    answers without a new login)."""
    workdir = tmp_path / "site"
    os.makedirs(workdir)
    first = gw.retry_port_in_use(
        lambda: make_gateway(config=site_config(workdir, redis_url), port=gw.free_port()))
    port = first.port

    async def scenario(page):
        await page.click("login")
        await page.wait_for("document.getElementById('session').textContent === 'logged in as alice'", WAIT)
        await asyncio.to_thread(first.stop)
        await page.wait_for("demo.gw.state === 'connecting'", WAIT, "client noticed the close")
        await page.wait_for("demo.events.filter(e => e === 'main reconnect 2').length", WAIT,
                            "a failed reconnect attempt")
        # Calls made while the gateway is down wait in the queue; they are sent once the
        # session is restored, so even one that needs it succeeds.
        await page.evaluate("demo.queued = Promise.all(["
                            "demo.gw.call('randomNumber', {multiplier: 5}).then(d => d.randomNumber),"
                            "demo.gw.call('profile').then(d => d.user.name)])"
                            ".catch(e => 'failed: ' + e.message); true")
        second = await asyncio.to_thread(
            make_gateway, config=site_config(workdir, redis_url), port=port)
        assert second.port == port
        await page.wait_for("document.getElementById('status').textContent === 'open'", WAIT)
        queued = await page.evaluate("demo.queued", timeout=WAIT)
        await page.click("profile")
        await page.wait_for("document.getElementById('session').textContent.startsWith('profile')", WAIT)
        return queued, await page.text("session"), await page.evaluate("demo.events")

    queued, session, events = in_page(chrome, first, scenario)
    assert isinstance(queued, list) and 0 <= queued[0] < 5 and queued[1] == "alice", queued
    assert session == "profile: alice"
    assert events[0] == "main open" and events[1] == "main close 1001", events
    assert events[2:4] == ["main reconnect 1", "main close 1006"], events
    assert events[-1] == "main open (reconnected)", events
    assert events.count("main open (reconnected)") == 1


def test_backoff_doubles_with_jitter_up_to_max_delay(chrome, site):
    """Against a port where nothing listens: each wait is in [ceiling/2, ceiling], the
    ceiling doubling from minDelay up to maxDelay."""
    port = gw.free_port()

    async def scenario(page):
        return await page.evaluate("""(async () => {
          const c = new GatewayClient("ws://127.0.0.1:%d/ws", {minDelay: 20, maxDelay: 80});
          const seen = [];
          await new Promise(done => c.on("reconnect", e => { seen.push(e); if (seen.length === 6) done(); }));
          c.close();
          return {seen, state: c.state};
        })()""" % port, timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert [e["attempt"] for e in res["seen"]] == [1, 2, 3, 4, 5, 6]
    for e, ceiling in zip(res["seen"], [20, 40, 80, 80, 80, 80]):
        assert ceiling / 2 <= e["delay"] <= ceiling, res["seen"]
    assert res["state"] == "closed"


def test_token_refused_on_reconnect_is_dropped_and_reported(chrome, site):
    """The session ends elsewhere (logout over HTTP with the Bearer token); the connection then
    drops: the re-sent authenticate gets 401, the client reports it as an "error" event, forgets
    the token, and the queued call goes on unauthenticated (here: profile's 401)."""
    async def scenario(page):
        await page.click("login")
        await page.wait_for("document.getElementById('session').textContent === 'logged in as alice'", WAIT)
        token = await page.evaluate("demo.gw._token")
        status, body = await asyncio.to_thread(
            site.json, "POST", "/api/logout", headers={"Authorization": "Bearer " + token})
        assert status == 200 and body["loggedOut"] is True, body
        return await page.evaluate("""(async () => {
          const errors = [];
          demo.gw.on("error", e => errors.push([e.status, e.message, e.action]));
          const reopened = new Promise(r => demo.gw.on("open", r));
          demo.gw._ws.close();  // as if the network dropped it: the client reconnects
          const profile = demo.gw.call("profile").then(d => d.user.name, e => [e.status, e.message]);
          await reopened;
          return {errors, profile: await profile, token: demo.gw._token};
        })()""", timeout=WAIT)

    res = in_page(chrome, site, scenario)
    assert res["errors"] == [[401, "invalid or expired token", "authenticate"]], res
    assert res["profile"] == [401, "Authentication credentials were not provided."], res
    assert res["token"] is None

# -- the README's snippet -------------------------------------------------------------------


def readme_snippet():
    """The module script of README's "Browser client" example, as it is written there."""
    with open(os.path.join(gw.REPO, "README.md")) as f:
        text = f.read()
    section = text.split("\n## Browser client\n", 1)[1]
    block = section.split("```html\n", 1)[1].split("```", 1)[0]
    start = '<script type="module">\n'
    assert block.startswith(start) and block.rstrip().endswith("</script>"), block
    return block[len(start):block.rindex("</script>")]


def test_readme_snippet_runs(chrome, site):
    code = readme_snippet() + "\nwindow.readme = { randomNumber, token, state: gw.state };\n"

    async def scenario(page):
        await page.evaluate("(() => { const s = document.createElement('script'); s.type = 'module';"
                            " s.textContent = %s; document.body.append(s); })()" % js(code))
        await page.wait_for("window.readme", WAIT, "the README's snippet finished")
        return await page.evaluate("window.readme")

    res = in_page(chrome, site, scenario)
    assert 0 <= res["randomNumber"] < 10 and len(res["token"]) >= 16 and res["state"] == "open", res
