"""Helpers for the black-box integration suite: start the built gateway, talk to it, stop it.

The gateway is only ever driven from the outside (command line, config file, HTTP, signals),
the same way a user drives it. Every wait here is bounded; every process is stopped by PID.
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
TEST_ACTIONS = os.path.join(HERE, "actions")
TEST_MIDDLEWARE = os.path.join(HERE, "middleware")
EXAMPLE_ACTIONS = os.path.join(REPO, "actions")

START_TIMEOUT = 10.0  # seconds to wait for the listening line
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
REQUEST_TIMEOUT = 10.0  # socket timeout of every HTTP request

LISTENING_RE = re.compile(r"listening web https?://([0-9.]+|\[[0-9a-fA-F:]+\]|[\w.-]+):(\d+)")
REDIRECT_LISTENING_RE = re.compile(r"listening redirect http://\S+:(\d+)")
SOCKET_LISTENING_RE = re.compile(
    r"listening socket tcp://([0-9.]+|\[[0-9a-fA-F:]+\]|[\w.-]+):(\d+)")

# Variables the gateway reads; cleared from the child's environment unless a test sets them.
GATEWAY_ENV = ("GATEWAY_PORT", "GATEWAY_REDIS_URL", "GATEWAY_LOG_LEVEL")

# Markers of a sanitizer report in the log of an ASan/UBSan build.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def gateway_binary():
    """Path of the binary under test: $GATEWAY_BIN, else build/gateway."""
    path = os.environ.get("GATEWAY_BIN") or os.path.join(REPO, "build", "gateway")
    return os.path.abspath(path)


# --------------------------------------------------------------------------------------
# Lua config files


class Lua(str):
    """Raw Lua source, written into a config as it is (e.g. Lua('function() end'))."""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LUA_KEYWORDS = set("""and break do else elseif end false for function goto if in local nil
not or repeat return then true until while""".split())


def lua_string(s):
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif code < 32 or code == 127:
            out.append("\\%03d" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_lua(value, indent=0):
    """Serialise a Python value (dict, list, str, number, bool, None, Lua) as Lua source."""
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, Lua):
        return str(value)
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        parts = []
        for k, v in value.items():
            if isinstance(k, str) and _IDENT.match(k) and k not in _LUA_KEYWORDS:
                key = k
            elif isinstance(k, str):
                key = "[%s]" % lua_string(k)
            else:
                key = "[%s]" % to_lua(k)
            parts.append("%s%s = %s" % (pad, key, to_lua(v, indent + 1)))
        return "{\n" + ",\n".join(parts) + ",\n" + end + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "{}"
        return "{ " + ", ".join(to_lua(v, indent + 1) for v in value) + " }"
    raise TypeError("cannot write %r as Lua" % (value,))


def deep_merge(base, overrides):
    """A copy of 'base' with 'overrides' merged in; nested dicts merge, other values replace."""
    out = dict(base)
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def default_config(workdir, redis_url=None, actions=None, middleware=None):
    """The config most tests use. Every path is absolute (they would otherwise be relative to
    the config file's folder); routes and public point at harmless files in 'workdir'."""
    routes = os.path.join(workdir, "routes.lua")
    public = os.path.join(workdir, "public")
    if not os.path.exists(routes):
        with open(routes, "w") as f:
            f.write("return {}\n")
    os.makedirs(public, exist_ok=True)
    config = {
        "name": "itest-gateway",
        "paths": {
            "actions": list(actions if actions is not None else [EXAMPLE_ACTIONS, TEST_ACTIONS]),
            "middleware": list(middleware if middleware is not None else [TEST_MIDDLEWARE]),
            "routes": routes,
            "public": public,
        },
        "servers": {"web": {"port": 0}},
        "general": {"actionTimeout": 1000, "shutdownTimeout": 5000},
        "logging": {"level": "debug"},
    }
    if redis_url:
        config["redis"] = {"url": redis_url, "prefix": "itest:%d:" % os.getpid()}
    return config


def write_config(path, config):
    """Write 'config' (a dict, or Lua source as str) to 'path' as a gateway config file."""
    text = config if isinstance(config, str) else "return " + to_lua(config) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def child_env(env=None):
    out = {k: v for k, v in os.environ.items() if k not in GATEWAY_ENV}
    out.update(env or {})
    return out


def run_cli(args, timeout=10.0, env=None, cwd=None):
    """Run the binary to completion (bounded) and return a CompletedProcess with text output.
    A run that outlives 'timeout' is killed and reported as an assertion failure."""
    cmd = [gateway_binary()] + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=child_env(env), cwd=cwd or REPO)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=STOP_TIMEOUT)
        raise AssertionError("%s did not exit within %.0f s\nstdout:\n%s\nstderr:\n%s"
                             % (cmd, timeout, out.decode(errors="replace"),
                                err.decode(errors="replace")))
    res = subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                      err.decode(errors="replace"))
    reports = [m for m in SANITIZER_MARKERS if m in res.stderr]
    assert not reports, "sanitizer report from %s:\n%s" % (" ".join(cmd), res.stderr[-8000:])
    return res


def free_port():
    """A loopback port that was free a moment ago. Another process may take it before it is
    used: prefer `--port 0` and the listening line; where a test needs a port fixed in
    advance, wrap the start in retry_port_in_use()."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortInUse(AssertionError):
    """A process could not bind a port that free_port() had handed out."""


def retry_port_in_use(start, attempts=5):
    """Call start() (which picks its own free_port()) until it does not fail with PortInUse:
    the race between free_port() and the bind is the machine's, not the test's."""
    for i in range(attempts):
        try:
            return start()
        except PortInUse:
            if i == attempts - 1:
                raise


def _scale():
    """How much longer a wall-clock bound may take on this build: the sanitizer build runs
    several times slower, and GATEWAY_TEST_SLOW (a factor) widens bounds on a loaded box."""
    factor = float(os.environ.get("GATEWAY_TEST_SLOW") or 1)
    return factor * (3 if is_sanitizer_build() else 1)


def bound(seconds):
    """A wall-clock bound for "this takes at most about 'seconds'", scaled by _scale().
    Use it for upper bounds on elapsed time; lower bounds (a sleep really slept) need none."""
    return seconds * SCALE


# --------------------------------------------------------------------------------------
# HTTP


class Response(tuple):
    """(status, headers, body) with helpers; unpacks like a plain tuple."""

    def __new__(cls, status, headers, body):
        return super().__new__(cls, (status, headers, body))

    status = property(lambda self: self[0])
    headers = property(lambda self: self[1])  # http.client.HTTPMessage: case-insensitive
    body = property(lambda self: self[2])

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("response body is not JSON (%s): status %s, body %r"
                                 % (e, self.status, self.body[:2000]))


def _encode_body(body, headers):
    headers = dict(headers or {})
    if body is None or isinstance(body, (bytes, bytearray)):
        return body, headers
    if isinstance(body, str):
        return body.encode("utf-8"), headers
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode("utf-8"), headers


def _do_request(conn, method, path, body=None, headers=None):
    body, headers = _encode_body(body, headers)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return Response(resp.status, resp.headers, data)


class Client:
    """One keep-alive HTTP/1.1 connection; every request goes over the same socket."""

    def __init__(self, host, port, timeout=REQUEST_TIMEOUT):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.conn.connect()

    def local_port(self):
        """The client-side port of the current socket (None once it is closed)."""
        return self.conn.sock.getsockname()[1] if self.conn.sock else None

    def request(self, method, path, body=None, headers=None):
        return _do_request(self.conn, method, path, body, headers)

    def json(self, method, path, body=None, headers=None):
        r = self.request(method, path, body, headers)
        return r.status, r.json()

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Gateways running right now, so a failing test can show their logs.
RUNNING = []


class Gateway:
    """A gateway process with its own config file and log file in 'workdir'."""

    _counter = 0

    def __init__(self, workdir, config, args=None, env=None, port=0, binary=None, cwd=None,
                 expect_exit=0):
        Gateway._counter += 1
        n = Gateway._counter
        self.workdir = str(workdir)
        self.config = config
        self.config_path = os.path.join(self.workdir, "gateway-%d.lua" % n)
        self.log_path = os.path.join(self.workdir, "gateway-%d.stderr.log" % n)
        self.args = list(args or [])
        self.env = env
        self.port_arg = port
        self.binary = binary or gateway_binary()
        self.cwd = cwd or self.workdir
        self.proc = None
        self.pid = None
        self.host = "127.0.0.1"
        self.port = None
        self.returncode = None
        # The exit status teardown expects (None: any). A test that kills the gateway on
        # purpose, or expects it to fail, says so here.
        self.expect_exit = expect_exit
        self.leftovers = []  # PIDs of its process group still running after it exited
        self._stdout = []
        self._stdout_lock = threading.Lock()
        self._listening = threading.Event()
        self.scheme = "http"  # "https" when the web listener speaks TLS (servers.web.tls)
        self.redirect_port = None  # the `listening redirect http://...` line (tls.redirectPort)
        self.socket_host = None  # from the `listening socket tcp://...` line, when enabled
        self.socket_port = None
        self._socket_listening = threading.Event()
        self._reader = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------

    def command(self):
        cmd = [self.binary, "--config", self.config_path]
        if self.port_arg is not None:
            cmd += ["--port", str(self.port_arg)]
        return cmd + self.args

    def start(self, timeout=START_TIMEOUT):
        write_config(self.config_path, self.config)
        self._log_file = open(self.log_path, "wb")
        # Its own process group, so stop() can reach the workers too.
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=self._log_file, stdin=subprocess.DEVNULL,
                                     env=child_env(self.env), cwd=self.cwd,
                                     start_new_session=True)
        self.pid = self.proc.pid
        RUNNING.append(self)
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.02):
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                self.stop()
                text = self.describe()
                error = PortInUse if "in use" in self.log_text() else AssertionError
                raise error("gateway exited with status %s before listening\n%s"
                            % (self.proc.returncode, text))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("gateway did not print its listening line within %.0f s\n%s"
                                     % (timeout, self.describe()))
        if _socket_enabled(self.config):
            self.wait_socket_listening(max(0.5, deadline - time.monotonic()))
        return self

    def wait_socket_listening(self, timeout=START_TIMEOUT):
        """Wait (bounded) for the `listening socket tcp://HOST:PORT` line; sets socket_host
        and socket_port. Fails the test when it does not come."""
        if not self._socket_listening.wait(timeout):
            raise AssertionError("gateway did not print its `listening socket` line within "
                                 "%.0f s\n%s" % (timeout, self.describe()))
        return self.socket_host, self.socket_port

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            with self._stdout_lock:
                self._stdout.append(line)
            m = REDIRECT_LISTENING_RE.search(line)
            if m:
                self.redirect_port = int(m.group(1))
            m = LISTENING_RE.search(line)
            if m and not self._listening.is_set():
                self.scheme = "https" if "listening web https:" in line else "http"
                self.host = m.group(1).strip("[]")
                self.port = int(m.group(2))
                self._listening.set()
            m = SOCKET_LISTENING_RE.search(line)
            if m and not self._socket_listening.is_set():
                self.socket_host = m.group(1).strip("[]")
                self.socket_port = int(m.group(2))
                self._socket_listening.set()
        self.proc.stdout.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def children(self):
        """PIDs of the gateway's child processes (its workers), from /proc."""
        pids = []
        try:
            for task in os.listdir("/proc/%d/task" % self.pid):
                with open("/proc/%d/task/%s/children" % (self.pid, task)) as f:
                    pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def wait(self, timeout=STOP_TIMEOUT):
        """Wait (bounded) for the process to exit; returns its status or None if still up."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to 'timeout', then SIGKILL the whole process group (master and
        workers). Returns the exit status. Idempotent. Processes of the group still running
        once the master has exited are killed and listed in self.leftovers."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.pid)
                self.proc.wait(timeout=timeout)
        self.leftovers += _reap_group(self.pid)
        self.returncode = self.proc.returncode
        if self._reader:
            self._reader.join(2.0)
        if self._log_file and not self._log_file.closed:
            self._log_file.close()
        if self in RUNNING:
            RUNNING.remove(self)
        return self.returncode

    # -- logs --------------------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return [line for line in self.log_text().splitlines() if line.strip()]

    def stdout_text(self):
        with self._stdout_lock:
            return "\n".join(self._stdout)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def wait_for_log(self, pattern, timeout=3.0, since=0):
        """Wait (bounded) until a log line matches the regex 'pattern'; return the match or
        None. 'since' is a byte offset from log_size(), to look only at newer lines."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_since(since).splitlines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def sanitizer_reports(self):
        text = self.log_text()
        return [m for m in SANITIZER_MARKERS if m in text]

    def teardown_problems(self):
        """What is wrong with how this (stopped) gateway ended: an exit status other than
        expect_exit, workers left running, a sanitizer report in its log. [] when fine."""
        problems = []
        if (self.proc is not None and self.expect_exit is not None
                and self.returncode != self.expect_exit):
            problems.append("exit status %s, expected %s" % (self.returncode, self.expect_exit))
        if self.leftovers:
            problems.append("processes of its group outlived it: %s" % self.leftovers)
        reports = self.sanitizer_reports()
        if reports:
            problems.append("sanitizer report in its log: %s" % reports)
        return problems

    def describe(self, max_chars=20000):
        log = self.log_text()
        if len(log) > max_chars:
            log = "...\n" + log[-max_chars:]
        code = self.proc.poll() if self.proc else None
        if self.proc is None:
            state = "not started"
        elif code is None:
            state = "running (pid %d)" % self.pid
        elif code < 0:
            state = "killed by signal %d (%s)" % (-code, signal.Signals(-code).name)
        else:
            state = "exited with status %d" % code
        return ("process: %s\ncommand: %s\nconfig: %s\nstdout:\n%s\nstderr (%s):\n%s"
                % (state, " ".join(self.command()), self.config_path, self.stdout_text(),
                   self.log_path, log))

    # -- HTTP --------------------------------------------------------------------------

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def request(self, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
        """One request on a fresh connection. 'body' may be bytes, str, or a JSON value."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            return _do_request(conn, method, path, body, headers)
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
        """request() and parse the body as JSON: returns (status, value)."""
        r = self.request(method, path, body, headers, timeout)
        return r.status, r.json()

    def get(self, path, **kw):
        return self.json("GET", path, **kw)

    def client(self, timeout=REQUEST_TIMEOUT):
        """A keep-alive connection (a Client); close it when done."""
        return Client(self.host, self.port, timeout)

    def raw(self, data, timeout=REQUEST_TIMEOUT):
        """Send raw bytes on a fresh connection and read until the server closes it."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before reading everything
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    # -- persistent transports -----------------------------------------------------------

    def ws_url(self, path="/ws"):
        return "%s://%s:%d%s" % ("wss" if self.scheme == "https" else "ws", self.host, self.port, path)

    def ws_connect(self, path="/ws", **kw):
        """websockets.connect(...) to this gateway (asyncio; use with `async with` or await):
        no keepalive pings, bounded open and close, large max_size unless given."""
        import websockets  # only the WebSocket tests need it
        kw.setdefault("ping_interval", None)
        kw.setdefault("open_timeout", REQUEST_TIMEOUT)
        kw.setdefault("close_timeout", 3)
        kw.setdefault("max_size", 2 ** 24)
        return websockets.connect(self.ws_url(path), **kw)

    def line_client(self, timeout=REQUEST_TIMEOUT, rcvbuf=None):
        """A LineClient on the TCP socket server (servers.socket must be enabled)."""
        assert self.socket_port, "no `listening socket` line seen\n" + self.describe()
        return LineClient(self.socket_host, self.socket_port, timeout, rcvbuf=rcvbuf)

    def rss_kib(self):
        """Resident memory (VmRSS, KiB) of the gateway and its child processes."""
        total = 0
        for pid in [self.pid] + self.children():
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def assert_serving(self):
        """The gateway is alive and still answers a plain action."""
        assert self.alive(), "gateway died\n" + self.describe()
        status, body = self.get("/api/randomNumber")
        assert status == 200, body
        assert 0 <= body["randomNumber"] < 1

    def client_sockets(self):
        """Inodes of the sockets the gateway (master and workers) holds for web clients: the
        connections it accepted on its port, and sockets the kernel has already dropped from
        /proc/net (a connection the client reset) that the gateway has not closed yet.
        Empty once the gateway has closed every client connection it accepted."""
        held = set()
        for pid in [self.pid] + self.children():
            try:
                fds = os.listdir("/proc/%d/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    held.add(link[len("socket:["):-1])
        other = set()  # listeners, Redis, and sockets of other kinds
        for name, col in (("tcp", 9), ("tcp6", 9), ("udp", 9), ("udp6", 9), ("unix", 6),
                          ("netlink", 9)):
            for fields in _proc_net(name):
                if len(fields) <= col:
                    continue
                if name.startswith("tcp"):
                    port = int(fields[1].rsplit(":", 1)[1], 16)
                    if port == self.port and fields[3] != "0A":  # 0A: LISTEN
                        continue
                other.add(fields[col])
        return sorted(held - other)

    def server_side(self, client_port):
        """The gateway's end of the connection from loopback port 'client_port', from
        /proc/net/tcp: {"state", "tx_queue", "rx_queue", "accepted"}, or None when there is
        none. tx_queue: bytes sent but not yet acknowledged (the client's window is full);
        rx_queue: bytes received that the gateway has not read; accepted: the gateway holds
        it (a connection still in the listen queue has no inode). When several rows match
        (a timewait entry left by an earlier connection between the same two ports, listed
        with inode 0, besides the live one), the one the gateway holds is given."""
        sides = self.server_sides(client_port)
        return next((s for s in sides if s["accepted"]), sides[0] if sides else None)

    def server_sides(self, client_port):
        """Every row of /proc/net/tcp between the gateway's port and 'client_port', as
        server_side() describes them, in the kernel's order (for failure messages)."""
        out = []
        for fields in _proc_net("tcp"):
            local, remote = fields[1].rsplit(":", 1), fields[2].rsplit(":", 1)
            if int(local[1], 16) == self.port and int(remote[1], 16) == client_port:
                tx, rx = fields[4].split(":")
                out.append({"state": fields[3], "tx_queue": int(tx, 16), "rx_queue": int(rx, 16),
                            "accepted": fields[9] != "0"})
        return out

    def wait_clients_closed(self, timeout=3.0):
        """Wait (bounded, 'timeout' scaled by bound()) until client_sockets() is empty: the
        gateway has handled the close of every client connection. True when it did."""
        deadline = time.monotonic() + bound(timeout)
        while self.client_sockets():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _proc_net(name):
    """The rows of /proc/net/<name> split into fields, without the header line."""
    try:
        with open("/proc/net/" + name) as f:
            return [line.split() for line in f.read().splitlines()[1:]]
    except OSError:
        return []


def _killpg(pgid, sig=signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_members(pgid):
    """Live (non-zombie) PIDs whose process group is 'pgid', from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(name))
    return out


def _reap_group(pgid, grace=STOP_TIMEOUT):
    """After the group leader exited: wait (bounded) for the rest of its group to go, then
    SIGKILL what is left. Returns the PIDs that had to be killed."""
    deadline = time.monotonic() + grace
    left = _group_members(pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _group_members(pgid)
    if left:
        _killpg(pgid)
    return left


def _socket_enabled(config):
    try:
        return bool(config["servers"]["socket"]["enabled"])
    except (KeyError, TypeError):
        return False


def is_sanitizer_build(binary=None):
    """True when the binary under test was built with AddressSanitizer (its memory use is not
    comparable: freed memory sits in quarantine)."""
    path = binary or gateway_binary()
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# The factor bound() scales wall-clock bounds by (3 on the sanitizer build).
SCALE = _scale()


def recv_by(sock, deadline, size=65536):
    """One recv that gives up at 'deadline' (a time.monotonic() value): the bytes read, b""
    when the peer closed or reset the connection, None when the deadline came first."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    sock.settimeout(left)
    try:
        return sock.recv(size)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return b""


class LineClient:
    """A blocking client for the line protocol of the TCP socket server. Every read is bounded
    by 'timeout'."""

    def __init__(self, host, port, timeout=REQUEST_TIMEOUT, rcvbuf=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        """Send raw bytes (a str is UTF-8 encoded), no newline added."""
        self.sock.sendall(data.encode("utf-8") if isinstance(data, str) else data)

    def send_line(self, line):
        self.send((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")

    def read_line(self, timeout=None):
        """The next line without its "\n" (bytes). AssertionError on timeout or EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no complete line within %.1f s (have %r)"
                                     % (timeout or self.timeout, self.buf[:500]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                self.eof = True
                raise AssertionError("connection closed before a complete line (have %r)"
                                     % self.buf[:500])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def read_json(self, timeout=None):
        line = self.read_line(timeout)
        try:
            return json.loads(line.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("answer line is not JSON (%s): %r" % (e, line[:2000]))

    def call(self, line, timeout=None):
        """Send one line, return the next answer parsed as JSON."""
        self.send_line(line)
        return self.read_json(timeout)

    def wait_closed(self, timeout=None):
        """True when the server closes the connection (EOF or reset) within 'timeout'; data
        that arrives meanwhile is kept in self.buf."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            chunk = recv_by(self.sock, deadline)
            if chunk is None:
                return False
            if not chunk:
                self.eof = True
                return True
            self.buf += chunk

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_raw_response(raw):
    """(status, {lower-case header: value}, body) of a raw HTTP/1.x response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, "no end of headers in %r" % raw[:500]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# --------------------------------------------------------------------------------------
# Response bodies


def error_text(body):
    """The error message of a failure body: 'error' is a string, or a table with 'message'."""
    err = body.get("error")
    if isinstance(err, dict):
        return err.get("message")
    return err


def error_field(body, key):
    """A field of a table error: sent at the top level of the body or inside 'error'."""
    err = body.get("error")
    if isinstance(err, dict) and key in err:
        return err[key]
    return body.get(key)


def errors_of(body):
    """The 'errors' list of a failure body as strings (tables become their message or JSON)."""
    out = []
    for e in body.get("errors") or []:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict) and "message" in e:
            out.append(str(e["message"]))
        else:
            out.append(json.dumps(e))
    return out


def has_error(body, text):
    """'text' appears in the error or in one of the errors."""
    return text in (error_text(body) or "") or any(text in e for e in errors_of(body))


# --------------------------------------------------------------------------------------
# Redis (private server for the suite)


@contextlib.contextmanager
def serving(workdir, config):
    """A gateway started for a block of tests (say a module's), stopped when the block ends;
    an unexpected exit status, a leftover worker or a sanitizer report then fails."""
    g = Gateway(workdir, config).start()
    try:
        yield g
    finally:
        g.stop()
        problems = g.teardown_problems()
        assert not problems, "%s\n%s" % ("; ".join(problems), g.describe())


def resp_encode(*args):
    """One Redis command in RESP (arguments as bytes, or anything str() turns into text)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_read(f, text=False):
    """One RESP reply from the binary file 'f': str for status, RuntimeError (returned, not
    raised) for an error, int, bulk as bytes (str with 'text'), list, or None."""
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode() if text else data
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f, text) for _ in range(n)]
    raise AssertionError("bad RESP line %r" % line)


class RedisServer:
    """A private redis-server ('binary', from the redis_binary fixture) on a unix socket in a
    folder of its own under /tmp (unix socket paths are short), and on a loopback TCP port
    with 'tcp'; appendonly on, DEBUG allowed. kill() is SIGKILL; start() again reuses the
    folder and its AOF; cleanup() stops it by PID and removes the folder. Tests get one from
    conftest's private_redis fixture (or redis_url, the session's)."""

    def __init__(self, binary, password=None, tcp=False, fsync_always=False):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="gwr-", dir="/tmp")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.password = password
        self.fsync_always = fsync_always
        self.tcp = tcp
        self.port = free_port() if tcp else 0
        self.proc = None
        self.starts = 0

    def url(self, db=0, password=None, user=None):
        q = "unix://%s?db=%d" % (self.sock, db)
        if user:
            q += "&user=" + urllib.parse.quote(user, safe="")
        if password:
            q += "&password=" + urllib.parse.quote(password, safe="")
        return q

    def start(self, timeout=START_TIMEOUT, keep_port=False):
        """Start it and wait (bounded) for PING. On its first start a TCP port that another
        process took meanwhile (free_port() races) is retried on a new port, unless
        'keep_port' (a gateway already has it); a restart keeps its port."""
        retry = self.starts == 0 and self.tcp and not keep_port
        self.starts += 1
        for attempt in range(5 if retry else 1):
            try:
                return self._start(timeout)
            except PortInUse:
                if not retry or attempt == 4:
                    raise
                self.port = free_port()

    def _start(self, timeout):
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
               "--unixsocket", self.sock, "--unixsocketperm", "700", "--dir", self.dir,
               "--appendonly", "yes", "--save", "", "--daemonize", "no",
               "--logfile", self.log_path, "--enable-debug-command", "yes"]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.fsync_always:
            cmd += ["--appendfsync", "always"]
        log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    log = self.log_text()[log_offset:]
                    error = PortInUse if "Address already in use" in log else AssertionError
                    raise error("redis-server exited with %s\n%s"
                                % (self.proc.returncode, log[-2000:]))
                try:
                    if self.command("PING") == "PONG":
                        return self
                except (OSError, ConnectionError):
                    pass
                time.sleep(0.02)
            raise AssertionError("redis-server did not answer PING within %.0f s\n%s"
                                 % (timeout, self.log_text()[-2000:]))
        except BaseException:
            self.kill()  # a failed start leaves no process behind
            raise

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock)
        except BaseException:
            s.close()
            raise
        return s

    def command(self, *args, db=0, user=None):
        """Run one command on a connection of its own (AUTH and SELECT first) -> the reply;
        an error reply is returned as a RuntimeError."""
        with self.connect() as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(resp_encode("AUTH", self.password) if not user else resp_encode("AUTH", *user))
                resp_read(f)
            if db:
                s.sendall(resp_encode("SELECT", db))
                resp_read(f)
            s.sendall(resp_encode(*args))
            return resp_read(f)

    def info(self, section):
        """INFO <section> as a dict of strings."""
        text = self.command("INFO", section)
        text = text.decode() if isinstance(text, bytes) else text
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def wait_blocked(self, n, timeout=None):
        """Wait (bounded) until exactly 'n' clients are blocked in Redis (BLPOP waiting)."""
        timeout = timeout or bound(5)
        deadline = time.monotonic() + timeout
        while True:
            blocked = int(self.info("clients")["blocked_clients"])
            if blocked == n:
                return
            assert time.monotonic() < deadline, \
                "%d clients blocked in Redis after %.1f s, expected %d" % (blocked, timeout, n)
            time.sleep(0.02)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        """A clean shutdown (SIGTERM): Redis writes and syncs its AOF first."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def cleanup(self):
        """Stop it by PID (SIGTERM, then SIGKILL) and remove its folder, whatever happens."""
        try:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def tcp_url(self, db=0):
        assert self.tcp, "started without tcp=True"
        return "redis://127.0.0.1:%d/%d" % (self.port, db)


# --------------------------------------------------------------------------------------
# Persistent transports: a sequence of JSON messages on one connection


def exchange(g, transport, messages, timeout=5.0):
    """Send each message (a dict, sent as JSON) in turn on ONE new connection of 'transport'
    ("ws" or "tcp") and return the answers, parsed, in order. Each answer is awaited before
    the next message is sent; every wait is bounded by 'timeout'."""
    if transport == "tcp":
        with g.line_client(timeout=timeout) as c:
            return [c.call(json.dumps(m), timeout=timeout) for m in messages]
    assert transport == "ws", transport
    import asyncio

    async def go():
        async with g.ws_connect() as ws:
            out = []
            for m in messages:
                await ws.send(json.dumps(m))
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except asyncio.TimeoutError:
                    raise AssertionError("no WebSocket answer within %.1f s to %r" % (timeout, m))
                assert isinstance(raw, str), "answers must be text frames, got %r" % (raw[:200],)
                out.append(json.loads(raw))
            return out

    return asyncio.run(asyncio.wait_for(go(), timeout * (len(messages) + 2)))
