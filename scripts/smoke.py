#!/usr/bin/env python3
"""Black-box smoke: throw mutated input at a running gateway and check it keeps serving.

    scripts/smoke.py --port 8080 [--socket-port 5000] [--seconds 60] [--seed N] [--log FILE]
    scripts/smoke.py --gateway build/gateway [--workers 2] ...   (start one, stop it after)
    scripts/smoke.py --port 8080 --replay FILE [--batch B]        (send a logged run again)

Each batch is one kind of input, from a seeded RNG: mutated HTTP requests (several pipelined
on a connection), a WebSocket connection (a valid handshake, then mutated frames and
messages), or mutated TCP lines (when --socket-port is given). After each batch a few health
requests on fresh connections must each get 200 (with several workers, the kernel spreads
them), and the gateway must not have exited (with --gateway or --pid). Every input is logged
to --log as one JSON line (batch, kind, connection, the bytes in base64), so a failure can be
sent again with --replay, alone or from its batch on (--batch). The same --seed makes the
same inputs. Exits 1 on the first failure, naming the batch; 0 when the time is up.
"""

import argparse
import base64
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HEALTH_PATH = "/api/showDocumentation"
HEALTH_TIMEOUT = 10.0  # seconds a health request may take (a sanitizer build is slow)
READ_WINDOW = 0.3  # seconds a batch waits for answers before closing its connections
BATCH_DEADLINE = 5.0  # seconds a batch may spend sending and reading at most

# Bytes that make parsers take other paths, inserted by the mutator.
TOKENS = [
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\x00", b":", b" ", b"\t", b"%", b"%00", b"%zz", b"%2F",
    b"+", b"&", b"=", b";", b"?", b"#", b"/../", b"//", b"\xff", b"\xc3\x28", b"\xed\xa0\x80",
    b"{", b"}", b"[", b"]", b"\"", b"\\", b"\\u0000", b"\\ud800", b"null", b"true", b"-1", b"0",
    b"1e999", b"99999999999999999999", b"18446744073709551616",
    b"Content-Length: 5\r\n", b"Content-Length: -1\r\n", b"Content-Length: 99999999999\r\n",
    b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"ffffffff\r\n", b"Connection: close\r\n",
    b"Connection: keep-alive\r\n", b"Expect: 100-continue\r\n", b"Upgrade: websocket\r\n",
    b"Host: x\r\n", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1", b"GET ", b"POST ",
    b"Content-Type: application/json\r\n", b"Content-Type: application/x-www-form-urlencoded\r\n",
    b"Content-Type: multipart/form-data; boundary=x\r\n",
    b"\"action\":", b"\"route\":\"items/1/\"", b"\"data\":{", b"\"request_id\":",
    b"paramAdd ", b"paramsView", b"detailsView", b"documentation", b"quit",
]

ACTIONS = ["showDocumentation", "status", "echo", "echo_params", "ping", "nope", "authenticate"]

HTTP_SEEDS = [
    b"GET /api/showDocumentation HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/echo_params?a=1&b=%41&c=x+y HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 22\r\n\r\n{\"a\":1,\"b\":[1,2,{}]}\r\n",
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
    b"\r\nContent-Length: 9\r\n\r\na=1&b=%41",
    b"POST /api/echo_params HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
    b"HEAD /api/showDocumentation HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS /api/echo HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Headers: X-A\r\n\r\n",
    b"PUT /api/items/1/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"DELETE /api/items/1/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /public/index.html HTTP/1.1\r\nHost: x\r\nRange: bytes=0-10\r\n\r\n",
    b"GET /api/nope.json?x HTTP/1.0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
]

MESSAGE_SEEDS = [
    b'{"action":"showDocumentation"}',
    b'{"action":"echo_params","data":{"a":1,"b":"x"},"request_id":7}',
    b'{"action":"status","params":{"x":[1,{"y":null}]},"messageId":"m"}',
    b'{"action":"list","route":"items/?page=2"}',
    b'{"action":"authenticate","data":{"token":"nope"}}',
    b'{"action":"nope"}',
    b'[1,2,3]',
    b'{"action":""}',
]

LINE_SEEDS = [
    b"paramAdd a=1", b"paramAdd b = two", b"paramView a", b"paramsView", b"paramDelete a",
    b"paramsDelete", b"detailsView", b"documentation", b"showDocumentation", b"echo_params",
    b"nope", b"x y   z",
] + MESSAGE_SEEDS


class Failure(Exception):
    pass


def mutate(rng, data, seeds):
    """A few random edits of 'data': flips, new bytes, tokens, cuts, repeats, splices."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op in (2, 3):
            b[pos:pos] = rng.choice(TOKENS)
        elif op == 4 and b:
            del b[pos:pos + rng.randint(1, 16)]
        elif op == 5 and b:
            start = rng.randrange(len(b))
            piece = b[start:start + rng.randint(1, 32)]
            b[pos:pos] = piece * rng.choice([1, 2, 8, 64])
        elif op == 6:
            b[pos:pos] = bytes([rng.choice(b" a\x00\xff/%")]) * rng.choice([1, 3, 100, 5000])
        elif op == 7 and rng.random() < 0.3:
            del b[pos:]
        elif op == 8:
            other = rng.choice(seeds)
            b[pos:] = other[rng.randrange(len(other) + 1):]
    return bytes(b)


def maybe_mutate(rng, seeds, rate=0.8):
    data = rng.choice(seeds)
    return mutate(rng, data, seeds) if rng.random() < rate else data


# --------------------------------------------------------------------------------------
# WebSocket frames


def ws_frame(rng, opcode, payload, fin=True, mask=True, rsv=0, bad_length=False):
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if bad_length:
        n = rng.choice([0, 1, max(0, n - 1), n + 1, 126, 65535, 65536, 2 ** 40, 2 ** 63 - 1])
    if n < 126 and not (bad_length and rng.random() < 0.3):
        head.append((0x80 if mask else 0) | n)
    elif n < 65536:
        head.append((0x80 if mask else 0) | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append((0x80 if mask else 0) | 127)
        head += n.to_bytes(8, "big")
    if mask:
        key = bytes(rng.randrange(256) for _ in range(4))
        head += key
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return bytes(head) + payload


def ws_frames(rng):
    """The bytes of a few frames: mostly valid text messages (mutated JSON), some fragmented,
    some control frames, some broken at the frame level."""
    out = bytearray()
    for _ in range(rng.randint(1, 6)):
        payload = maybe_mutate(rng, MESSAGE_SEEDS)
        kind = rng.randrange(10)
        if kind <= 3:
            out += ws_frame(rng, 1, payload)
        elif kind == 4:  # fragmented: text, continuations, maybe a ping in between
            cut = rng.randrange(len(payload) + 1)
            out += ws_frame(rng, 1, payload[:cut], fin=False)
            if rng.random() < 0.5:
                out += ws_frame(rng, 9, b"p")
            out += ws_frame(rng, 0, payload[cut:], fin=rng.random() < 0.8)
        elif kind == 5:  # control frames, sometimes too long or fragmented
            op = rng.choice([8, 9, 10])
            body = rng.choice([b"", b"\x03\xe8", b"\x03\xe8bye", b"\x00\x01", b"x" * 200])
            out += ws_frame(rng, op, body, fin=rng.random() < 0.8)
        elif kind == 6:  # binary, reserved opcodes or bits, unmasked
            out += ws_frame(rng, rng.choice([2, 3, 7, 11, 15]), payload,
                            mask=rng.random() < 0.5, rsv=rng.randrange(8) if rng.random() < 0.3 else 0)
        elif kind == 7:  # a length that is not the payload's
            out += ws_frame(rng, 1, payload, bad_length=True)
        elif kind == 8:  # a continuation with nothing to continue
            out += ws_frame(rng, 0, payload)
        else:  # a valid frame, then its bytes mutated
            out += mutate(rng, ws_frame(rng, 1, payload), [payload])
    return bytes(out)


WS_HANDSHAKE = (b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


# --------------------------------------------------------------------------------------
# Batches: what to send, as (kind, connection, bytes) items, then sending them


def make_batch(rng, kinds, ws_path):
    kind = rng.choice(kinds)
    items = []
    if kind == "http":
        for c in range(rng.randint(1, 3)):
            reqs = [maybe_mutate(rng, HTTP_SEEDS) for _ in range(rng.randint(1, 5))]
            items.append(("http", c, b"".join(reqs)))
    elif kind == "ws":
        for c in range(rng.randint(1, 2)):
            items.append(("ws", c, WS_HANDSHAKE % ws_path.encode()))
            for _ in range(rng.randint(1, 3)):
                items.append(("ws", c, ws_frames(rng)))
    else:
        for c in range(rng.randint(1, 3)):
            lines = []
            for _ in range(rng.randint(1, 8)):
                line = maybe_mutate(rng, LINE_SEEDS)
                if rng.random() < 0.02:
                    line = line + b"x" * rng.choice([70000, 200000])
                lines.append(line + rng.choice([b"\n", b"\r\n", b"\n\n"]))
            data = b"".join(lines)
            if rng.random() < 0.1:
                data = data.rstrip(b"\r\n")  # an unfinished line
            items.append(("tcp", c, data))
    return kind, items


def drain(socks, deadline):
    """Read whatever comes back until every socket is closed or the deadline passes."""
    open_socks = [s for s in socks if s is not None]
    while open_socks and time.monotonic() < deadline:
        ready, _, _ = select.select(open_socks, [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        for s in ready:
            try:
                if not s.recv(65536):
                    open_socks.remove(s)
            except OSError:
                open_socks.remove(s)


def send_all(s, data, deadline):
    """Send as much as the gateway takes before the deadline (it may stop reading)."""
    s.setblocking(False)
    view = memoryview(data)
    while view and time.monotonic() < deadline:
        try:
            n = s.send(view)
            view = view[n:]
        except BlockingIOError:
            select.select([s], [s], [], 0.05)
            try:
                s.recv(65536)
            except OSError:
                pass
        except OSError:
            return False
    return True


def run_batch(target, items):
    start = time.monotonic()
    deadline = start + BATCH_DEADLINE
    conns = {}
    try:
        for kind, c, data in items:
            key = (kind, c)
            if key not in conns:
                port = target.socket_port if kind == "tcp" else target.port
                try:
                    conns[key] = socket.create_connection((target.host, port), timeout=2)
                except OSError as e:
                    raise Failure("cannot connect to %s port %d: %s" % (kind, port, e))
                if kind == "ws":  # the handshake is the first item; wait for its answer
                    s = conns[key]
                    s.sendall(data)
                    s.settimeout(2)
                    got = b""
                    try:
                        while b"\r\n\r\n" not in got:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            got += chunk
                    except OSError:
                        pass
                    if not got.startswith(b"HTTP/1.1 101"):
                        raise Failure("WebSocket handshake refused: %r" % got[:200])
                    continue
            s = conns[key]
            if s is not None and not send_all(s, data, deadline):
                s.close()
                conns[key] = None
        drain(list(conns.values()), min(deadline, time.monotonic() + READ_WINDOW))
    finally:
        for s in conns.values():
            if s is not None:
                s.close()


# --------------------------------------------------------------------------------------
# The gateway under test


class Target:
    def __init__(self, host, port, socket_port, ws_path, pid=None, proc=None):
        self.host, self.port, self.socket_port, self.ws_path = host, port, socket_port, ws_path
        self.pid, self.proc = pid, proc
        self.workers = None

    def children(self):
        kids = set()
        try:
            for task in os.listdir("/proc/%d/task" % self.pid):
                with open("/proc/%d/task/%s/children" % (self.pid, task)) as f:
                    kids.update(int(x) for x in f.read().split())
        except OSError:
            pass
        return kids

    def check(self, health_requests):
        if self.pid is not None:
            if self.proc is not None and self.proc.poll() is not None:
                raise Failure("the gateway exited with status %s" % self.proc.returncode)
            try:
                os.kill(self.pid, 0)
            except OSError:
                raise Failure("the gateway (pid %d) is gone" % self.pid)
            kids = self.children()
            if self.workers is None:
                self.workers = kids
            elif self.workers and kids != self.workers:
                raise Failure("the workers changed: %s, then %s" % (sorted(self.workers), sorted(kids)))
        for i in range(health_requests):
            self.health()

    def health(self):
        req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % HEALTH_PATH).encode()
        try:
            with socket.create_connection((self.host, self.port), timeout=HEALTH_TIMEOUT) as s:
                s.sendall(req)
                got = b""
                while b"\r\n" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
        except OSError as e:
            raise Failure("health request failed: %s" % e)
        if not got.startswith(b"HTTP/1.1 200"):
            raise Failure("health request answered %r" % got[:100])


def start_gateway(binary, workers, workdir):
    config = os.path.join(workdir, "gateway.lua")
    os.makedirs(os.path.join(workdir, "actions"), exist_ok=True)
    with open(config, "w") as f:
        f.write("return { workers = %d, servers = { web = { port = 0 },"
                " socket = { enabled = true, port = 0 } },"
                " logging = { level = 'warning' } }\n" % workers)
    proc = subprocess.Popen([binary, "--config", config], stdout=subprocess.PIPE,
                            stderr=open(os.path.join(workdir, "gateway.log"), "wb"),
                            start_new_session=True)
    web = sock = None
    deadline = time.monotonic() + 10
    while (web is None or sock is None) and time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        m = re.search(r"listening web http://([^ ]+):(\d+)", line)
        if m:
            web = int(m.group(2))
        m = re.search(r"listening socket tcp://([^ ]+):(\d+)", line)
        if m:
            sock = int(m.group(2))
    if web is None or sock is None:
        proc.kill()
        raise SystemExit("the gateway did not start; see %s/gateway.log" % workdir)
    return proc, web, sock


def stop_gateway(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "killed after 15 s"


# --------------------------------------------------------------------------------------


def batches_from_log(path):
    """The logged batches, in order: (number, kind, items)."""
    by = {}
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if "batch" not in e:
                continue
            b = by.setdefault(e["batch"], (e["kind"], []))
            b[1].append((e["kind"], e["conn"], base64.b64decode(e["data"])))
    return [(n, kind, items) for n, (kind, items) in sorted(by.items())]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="the web port")
    ap.add_argument("--socket-port", type=int, help="the TCP port (no TCP lines without it)")
    ap.add_argument("--ws-path", default="/ws")
    ap.add_argument("--pid", type=int, help="the gateway's master process, checked after each batch")
    ap.add_argument("--gateway", help="start this binary (web and TCP on free ports), stop it after")
    ap.add_argument("--workers", type=int, default=2, help="workers of the started gateway")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, help="default: from the clock (printed)")
    ap.add_argument("--log", help="write every input here, one JSON line each")
    ap.add_argument("--replay", help="send the batches of this log instead of new ones")
    ap.add_argument("--batch", type=int, help="with --replay: start at this batch")
    ap.add_argument("--health", type=int, default=3, help="health requests after each batch")
    args = ap.parse_args(argv)

    proc = None
    workdir = None
    if args.gateway:
        workdir = tempfile.mkdtemp(prefix="gw-smoke-")
        proc, args.port, args.socket_port = start_gateway(args.gateway, args.workers, workdir)
        args.pid = proc.pid
    if args.port is None:
        ap.error("--port or --gateway is required")
    target = Target(args.host, args.port, args.socket_port, args.ws_path, args.pid, proc)
    kinds = ["http", "ws"] + (["tcp"] if args.socket_port else [])

    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2 ** 32)
    log = open(args.log, "w") if args.log else None
    if args.replay:
        print("smoke: replaying %s" % args.replay, flush=True)
    else:
        print("smoke: seed %d, %s s, %s" % (seed, args.seconds, ", ".join(kinds)), flush=True)
    if log:
        log.write(json.dumps({"seed": seed, "kinds": kinds}) + "\n")

    rng = random.Random(seed)
    n = sent = 0
    status = 0
    end = time.monotonic() + args.seconds
    replay = batches_from_log(args.replay) if args.replay else None
    if replay and args.batch is not None:
        replay = [b for b in replay if b[0] >= args.batch]
    try:
        target.check(args.health)
        while True:
            if replay is not None:
                if n >= len(replay):
                    break
                number, kind, items = replay[n]
            else:
                if time.monotonic() >= end:
                    break
                number = n
                kind, items = make_batch(rng, kinds, args.ws_path)
            if log:
                for k, c, data in items:
                    log.write(json.dumps({"batch": number, "kind": k, "conn": c,
                                          "data": base64.b64encode(data).decode()}) + "\n")
                log.flush()
            run_batch(target, items)
            sent += len(items)
            n += 1
            try:
                target.check(args.health)
            except Failure as e:
                raise Failure("after batch %d (%s): %s" % (number, kind, e))
        print("smoke: %d batches, %d inputs, the gateway kept serving" % (n, sent), flush=True)
    except Failure as e:
        status = 1
        print("smoke: FAILED %s" % e, flush=True)
        if args.log:
            print("smoke: replay with --replay %s (--batch N to start there)" % args.log, flush=True)
        print("smoke: or regenerate with --seed %d" % seed, flush=True)
    finally:
        if log:
            log.close()
        if proc is not None:
            rc = stop_gateway(proc)
            if rc != 0:
                print("smoke: the gateway's exit status was %s (log: %s/gateway.log)" % (rc, workdir))
                status = 1
            if status == 0:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print("smoke: the gateway's config and log are in %s" % workdir)
    return status


if __name__ == "__main__":
    sys.exit(main())
