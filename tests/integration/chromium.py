"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the browser
client tests: start it with a fresh profile, open its page target over a WebSocket (the
`websockets` package the suite already uses), navigate, evaluate JavaScript, wait for a
condition. Every wait is bounded; stop() kills Chromium's whole process group by PID.
"""

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import gateway as gw

START_TIMEOUT = 30.0  # seconds for the DevTools endpoint to appear
STEP_TIMEOUT = 15.0  # seconds for one DevTools command

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-proxy-server", "--disable-extensions", "--mute-audio",
         "--disable-crash-reporter", "--disable-breakpad",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def binary():
    """Path of chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium with its own profile folder and log file."""

    def __init__(self, path, workdir):
        self.path = path
        self.profile = tempfile.mkdtemp(prefix="gw-chromium-")
        self.log_path = os.path.join(str(workdir), "chromium.stderr.log")
        self.proc = None
        self.port = None

    def start(self, timeout=START_TIMEOUT):
        self._log = open(self.log_path, "wb")
        cmd = [self.path] + FLAGS + ["--user-data-dir=" + self.profile, "about:blank"]
        # HOME and XDG folders inside the profile: nothing is written to the real home, and
        # the crash handlers (which leave the process group) name the profile in their
        # command line, so stop() can find them.
        home = os.path.join(self.profile, "home")
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"))
        # Its own process group: stop() reaches the renderer and helper processes too.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, start_new_session=True, env=env)
        # Chromium writes the port it picked into DevToolsActivePort once it listens.
        marker = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited with %s\n%s" % (self.proc.returncode, self.log()))
            try:
                with open(marker) as f:
                    first = f.readline().strip()
                if first:
                    self.port = int(first)
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("chromium's DevTools port did not appear within %.0f s\n%s"
                                     % (timeout, self.log()))
            time.sleep(0.05)
        return self

    def page_url(self, timeout=START_TIMEOUT):
        """The DevTools WebSocket URL of the page target (the about:blank tab)."""
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=5) as r:
                targets = json.loads(r.read().decode())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            if time.monotonic() > deadline:
                raise AssertionError("no page target in %r" % targets)
            time.sleep(0.1)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-6000:].decode(errors="replace")
        except OSError:
            return ""

    def _processes(self):
        """Live PIDs of this Chromium: its process group, and the crash handlers that left it
        (found by the profile folder in their command line)."""
        pids = set(gw._group_members(self.proc.pid))
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    mine = self.profile.encode() in f.read()
                with open("/proc/%s/stat" % name) as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if mine and not zombie:
                pids.add(int(name))
        return sorted(pids)

    def stop(self):
        """SIGTERM to the process group, up to 5 s for every process of this Chromium to go,
        then SIGKILL to each by PID and up to 5 s more; remove the profile. Fails if one
        survives that."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for last in (False, True):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and not self._processes():
                    break
                time.sleep(0.05)
            if last:
                break
            for pid in self._processes() + [self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        left = self._processes()
        shutil.rmtree(self.profile, ignore_errors=True)
        assert not left, "chromium processes outlived SIGKILL: %s" % left


class JSError(AssertionError):
    """A script evaluated in the page threw (or its promise rejected)."""


class Page:
    """A DevTools session on one page target (async: use inside asyncio.run)."""

    def __init__(self, ws_url):
        self.ws_url = ws_url
        self.ws = None
        self.ids = itertools.count(1)
        self.waiting = {}  # command id -> future
        self.exceptions = []  # uncaught exceptions in the page (Runtime.exceptionThrown)
        self.console = []  # console messages, for failure reports
        self.reader = None

    async def __aenter__(self):
        import websockets
        self.ws = await websockets.connect(self.ws_url, max_size=2 ** 26, ping_interval=None,
                                           open_timeout=STEP_TIMEOUT, close_timeout=3)
        self.reader = asyncio.ensure_future(self._read())
        await self.send("Runtime.enable")
        await self.send("Page.enable")
        return self

    async def __aexit__(self, *exc):
        self.reader.cancel()
        await self.ws.close()

    async def _read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.waiting.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(msg["params"]["exceptionDetails"])
            elif msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                self.console.append("%s: %s" % (msg["params"].get("type"), " ".join(
                    str(a.get("value", a.get("description", ""))) for a in args)))

    async def send(self, method, params=None, timeout=STEP_TIMEOUT):
        n = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[n] = fut
        await self.ws.send(json.dumps({"id": n, "method": method, "params": params or {}}))
        try:
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self.waiting.pop(n, None)
        if "error" in msg:
            raise AssertionError("%s failed: %r" % (method, msg["error"]))
        return msg.get("result", {})

    async def evaluate(self, expression, timeout=STEP_TIMEOUT):
        """The value of `expression` (awaited when it is a promise), as JSON."""
        res = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise JSError("%s\n  in: %s" % ((d.get("exception") or {}).get("description")
                                             or d.get("text"), expression))
        return res["result"].get("value")

    async def wait_for(self, expression, timeout=10.0, what=None):
        """Poll `expression` until it is truthy (bounded); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.evaluate(
                    "JSON.stringify({status: document.getElementById('status') && "
                    "document.getElementById('status').textContent, events: window.demo && demo.events})")
                raise AssertionError("%s not true within %.0f s; page: %s; console: %s"
                                     % (what or expression, timeout, state, self.console[-20:]))
            await asyncio.sleep(0.05)

    async def goto(self, url, ready="document.readyState === 'complete'", timeout=15.0):
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("location.href === %s && %s" % (json.dumps(url), ready), timeout)

    async def text(self, element_id):
        return await self.evaluate("document.getElementById(%s).textContent" % json.dumps(element_id))

    async def click(self, element_id):
        await self.evaluate("document.getElementById(%s).click()" % json.dumps(element_id))

    async def fill(self, element_id, value):
        await self.evaluate("document.getElementById(%s).value = %s"
                            % (json.dumps(element_id), json.dumps(value)))
