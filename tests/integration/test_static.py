"""Static files under /public (SPEC §6, servers.web.urlPathForFiles, paths.public).

Every file these tests serve is written at test time into the gateway's public folder (under
pytest's tmp_path), next to a secret file outside it that must never be served.
"""

import hashlib
import json
import os
import re
import signal
import socket
import threading
import time

import pytest

import gateway as gw

NOT_FOUND = {"error": "That file is not found", "errors": ["That file is not found"]}
JSON_TYPE = "application/json; charset=utf-8"
SECRET = b"TOP-SECRET-OUTSIDE-THE-PUBLIC-FOLDER"
BIG_SIZE = 20 * 1024 * 1024
MEDIUM_SIZE = 300 * 1024 + 17  # several 64 KiB chunks and a partial one
ETAG_RE = re.compile(r'^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$')
IMF_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                    r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Site:
    """The files of a public folder and of its parent, written once per folder."""

    def __init__(self, public):
        self.public = public
        self.parent = os.path.dirname(public)
        self.big = None
        self.medium = os.urandom(MEDIUM_SIZE)

    def path(self, rel):
        return os.path.join(self.public, rel)

    def write(self, rel, data):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return p

    def build(self, big=False):
        with open(os.path.join(self.parent, "secret.txt"), "wb") as f:
            f.write(SECRET)
        os.makedirs(os.path.join(self.parent, "outside"), exist_ok=True)
        with open(os.path.join(self.parent, "outside", "x.txt"), "wb") as f:
            f.write(SECRET)
        self.write("index.html", "<h1>root index</h1>")
        self.write("hello.txt", "hello, world\n")
        self.write("hello world.txt", "with a space")
        self.write("caf\u00e9.txt", "unicode name")
        self.write("empty.txt", b"")
        self.write("medium.bin", self.medium)
        self.write("sub/index.html", "<h1>sub index</h1>")
        self.write("sub/style.css", "body { color: red }")
        self.write("sub/deeper/page.htm", "<p>deep</p>")
        os.makedirs(self.path("noindex"), exist_ok=True)
        self.write("noindex/file.txt", "in a folder without index.html")
        for ext, data in MIME_FILES.items():
            self.write("types/file." + ext, b"x")
        self.write("types/noext", b"x")
        self.write("types/UPPER.PNG", b"x")
        self._link("alias.txt", "hello.txt")
        self._link("subalias", "sub")
        self._link("passwd", "/etc/passwd")
        self._link("outdir", os.path.join(self.parent, "outside"))
        self._link("outfile", "../secret.txt")
        self._link("dangling", "nothing-here")
        self.write("badindex/.keep", b"")
        self._link("badindex/index.html", "../../secret.txt")
        fifo = self.path("fifo")
        if not os.path.exists(fifo):
            os.mkfifo(fifo)
        if big:
            self.big = os.urandom(BIG_SIZE)
            self.write("big.bin", self.big)
        return self

    def _link(self, rel, target):
        p = self.path(rel)
        if not os.path.lexists(p):
            os.symlink(target, p)


MIME_FILES = {
    "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8", "json": "application/json; charset=utf-8",
    "txt": "text/plain; charset=utf-8", "md": "text/markdown; charset=utf-8",
    "xml": "application/xml; charset=utf-8", "csv": "text/csv; charset=utf-8",
    "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
    "gif": "image/gif", "webp": "image/webp", "ico": "image/x-icon", "pdf": "application/pdf",
    "wasm": "application/wasm", "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf",
    "mp4": "video/mp4", "webm": "video/webm", "mp3": "audio/mpeg", "wav": "audio/wav",
    "zip": "application/zip", "gz": "application/gzip", "exe": "application/octet-stream",
}

_SITES = {}


@pytest.fixture
def site(gateway):
    """The shared gateway's public folder, filled (once) with the files above."""
    public = gateway.config["paths"]["public"]
    if public not in _SITES:
        _SITES[public] = Site(public).build(big=True)
    return _SITES[public]




def raw_get(g, target, method="GET", headers=None, timeout=gw.REQUEST_TIMEOUT):
    """One request with the target sent byte for byte (no client-side normalisation)."""
    target = target.encode("latin-1") if isinstance(target, str) else target
    extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items()).encode()
    raw = g.raw(method.encode() + b" " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                + extra + b"\r\n", timeout=timeout)
    return raw


def assert_not_found(r):
    assert r.status == 404, (r.status, r.body[:300])
    assert r.headers["content-type"] == JSON_TYPE
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.json() == NOT_FOUND
    assert int(r.headers["content-length"]) == len(r.body)


def http_date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


# -------------------------------------------------------------------------------------------
# Serving


def test_get_file(gateway, site):
    r = gateway.request("GET", "/public/hello.txt")
    assert r.status == 200
    assert r.body == b"hello, world\n"
    h = r.headers
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert h["content-length"] == "13"
    assert ETAG_RE.match(h["etag"]), h["etag"]
    assert IMF_RE.match(h["last-modified"]), h["last-modified"]
    assert h["last-modified"] == http_date(int(os.stat(site.path("hello.txt")).st_mtime))
    assert h["access-control-allow-origin"] == "*"
    assert h["cache-control"] == "no-cache"


def test_etag_changes_with_the_file(gateway, site):
    p = site.write("changing.txt", "one")
    st = os.stat(p)
    first = gateway.request("GET", "/public/changing.txt").headers["etag"]
    assert gateway.request("GET", "/public/changing.txt").headers["etag"] == first
    # Same size, same second, other nanoseconds: still a new ETag.
    with open(p, "wb") as f:
        f.write(b"two")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    r = gateway.request("GET", "/public/changing.txt")
    assert r.body == b"two"
    assert r.headers["etag"] != first


@pytest.mark.parametrize("ext", sorted(MIME_FILES))
def test_mime_types(gateway, site, ext):
    r = gateway.request("GET", "/public/types/file." + ext)
    assert r.status == 200
    assert r.headers["content-type"] == MIME_FILES[ext]


def test_mime_unknown_and_case(gateway, site):
    assert gateway.request("GET", "/public/types/noext").headers["content-type"] == \
        "application/octet-stream"
    assert gateway.request("GET", "/public/types/UPPER.PNG").headers["content-type"] == "image/png"


@pytest.mark.parametrize("path", ["/public", "/public/", "/public//", "/public/./", "/public/."])
def test_root_serves_index(gateway, site, path):
    r = gateway.request("GET", path)
    assert r.status == 200
    assert r.body == b"<h1>root index</h1>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("path", ["/public/sub", "/public/sub/", "/public/subalias/"])
def test_folder_serves_index(gateway, site, path):
    r = gateway.request("GET", path)
    assert r.status == 200
    assert r.body == b"<h1>sub index</h1>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"


def test_nested_files(gateway, site):
    assert gateway.request("GET", "/public/sub/style.css").body == b"body { color: red }"
    r = gateway.request("GET", "/public/sub/deeper/page.htm")
    assert (r.status, r.body) == (200, b"<p>deep</p>")
    r = gateway.request("GET", "/public/noindex/file.txt")
    assert (r.status, r.body) == (200, b"in a folder without index.html")


def test_encoded_names(gateway, site):
    assert gateway.request("GET", "/public/hello%20world.txt").body == b"with a space"
    assert gateway.request("GET", "/public/caf%C3%A9.txt").body == b"unicode name"
    assert gateway.request("GET", "/public/%68ello.txt").body == b"hello, world\n"


def test_query_string_is_ignored(gateway, site):
    r = gateway.request("GET", "/public/hello.txt?v=123&x=%2e%2e")
    assert (r.status, r.body) == (200, b"hello, world\n")


def test_empty_file(gateway, site):
    r = gateway.request("GET", "/public/empty.txt")
    assert (r.status, r.body) == (200, b"")
    assert r.headers["content-length"] == "0"


def test_symlink_inside_is_served(gateway, site):
    r = gateway.request("GET", "/public/alias.txt")
    assert (r.status, r.body) == (200, b"hello, world\n")
    r = gateway.request("GET", "/public/subalias/style.css")
    assert (r.status, r.body) == (200, b"body { color: red }")


def test_medium_file_in_chunks(gateway, site):
    r = gateway.request("GET", "/public/medium.bin")
    assert r.status == 200
    assert r.headers["content-length"] == str(MEDIUM_SIZE)
    assert r.body == site.medium


def test_log_line(gateway, site):
    offset = gateway.log_size()
    assert gateway.request("GET", "/public/hello.txt").status == 200
    m = gateway.wait_for_log(r"debug static file path=/public/hello\.txt .*status=200 bytes=13\b",
                             since=offset)
    assert m, gateway.log_since(offset)
    offset = gateway.log_size()
    assert gateway.request("GET", "/public/missing.txt").status == 404
    m = gateway.wait_for_log(r"debug static file path=/public/missing\.txt .*status=404 bytes=0",
                             since=offset)
    assert m, gateway.log_since(offset)


# -------------------------------------------------------------------------------------------
# Not found


@pytest.mark.parametrize("path", [
    "/public/missing.txt", "/public/noindex", "/public/noindex/", "/public/hello.txt/",
    "/public/dangling", "/public/fifo", "/public/badindex", "/public/badindex/",
    "/public/types/file.txt/x", "/public/...",
])
def test_not_found(gateway, site, path):
    assert_not_found(gateway.request("GET", path))


def test_fifo_does_not_hang(gateway, site):
    t0 = time.monotonic()
    assert_not_found(gateway.request("GET", "/public/fifo", timeout=gw.bound(5)))
    assert time.monotonic() - t0 < gw.bound(3)
    gateway.assert_serving()


@pytest.mark.parametrize("path", [
    "/public/passwd", "/public/outfile", "/public/outdir", "/public/outdir/",
    "/public/outdir/x.txt",
])
def test_symlinks_leading_out_are_not_found(gateway, site, path):
    r = gateway.request("GET", path)
    assert_not_found(r)
    assert b"root:" not in r.body and SECRET not in r.body


# SPEC §6 and the README: a ".." segment and any path that leaves the folder are
# 404 "That file is not found"; the HTTP layer does not fold ".." before the path reaches
# the files.
TRAVERSALS = [
    "/public/../secret.txt",
    "/public/./../secret.txt",
    "/public//../secret.txt",
    "/public/sub/../../secret.txt",
    "/public/%2e%2e/secret.txt",
    "/public/%2E%2E/secret.txt",
    "/public/%2e./secret.txt",
    "/public/.%2e/secret.txt",
    "/public/%2E%2E%2Fsecret.txt",
    "/public/%2e%2e%2fsecret.txt",
    "/public/..%2fsecret.txt",
    "/public/..%2Fsecret.txt",
    "/public/sub/%2e%2e/%2e%2e/secret.txt",
    "/public/sub%2f..%2f..%2fsecret.txt",
    "/public/%252e%252e/secret.txt",
    "/public/%252e%252e%252fsecret.txt",
    "/public/..%252fsecret.txt",
    "/public/..\\secret.txt",
    "/public/..%5csecret.txt",
    "/public/..%5Csecret.txt",
    "/public/%2e%2e%5csecret.txt",
    "/public/sub\\..\\..\\secret.txt",
    "/public/%c0%ae%c0%ae/secret.txt",
    "/public/..;/secret.txt",
    "/public/outdir/../../secret.txt",
    "/public/%2fetc%2fpasswd",
    "/public//etc/passwd",
    "/public/../../../../../../etc/passwd",
    "/public/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_refused(gateway, site, target):
    # Whatever the 404 (see below): nothing outside the folder is ever sent.
    raw = raw_get(gateway, target)
    status, headers, body = gw.split_raw_response(raw)
    assert status == 404, raw[:500]
    assert SECRET not in raw and b"root:" not in raw
    assert headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_not_found(gateway, site, target):
    status, headers, body = gw.split_raw_response(raw_get(gateway, target))
    assert (status, json.loads(body)) == (404, NOT_FOUND)
    assert headers["content-type"] == JSON_TYPE


# A NUL cannot be in a file name: every one of these is a missing file.
NULS = [
    "/public/hello.txt%00.png",
    "/public/hello.txt%00",
    "/public/%00hello.txt",
    "/public/sub/%00/style.css",
    "/public%00",
    "/public/hello.txt%00?x=1",
    "/public/%00",
]


@pytest.mark.parametrize("target", NULS)
def test_nul_is_refused(gateway, site, target):
    # Whatever the answer (see below): no file is served, the gateway closes the connection
    # and serves on.
    raw = raw_get(gateway, target)
    assert b"hello, world" not in raw and b"color: red" not in raw
    assert gateway.wait_clients_closed(), gateway.client_sockets()
    gateway.assert_serving()


@pytest.mark.parametrize("target", NULS)
def test_nul_is_not_found(gateway, site, target):
    raw = raw_get(gateway, target)
    assert raw.startswith(b"HTTP/1.1 404 "), raw[:300]
    status, headers, body = gw.split_raw_response(raw)
    assert json.loads(body) == NOT_FOUND
    assert headers["content-type"] == JSON_TYPE


def test_head_not_found(gateway, site):
    r = gateway.request("HEAD", "/public/missing.txt")
    assert r.status == 404
    assert r.body == b""
    assert r.headers["content-type"] == JSON_TYPE
    assert r.headers["content-length"] == str(len(json.dumps(NOT_FOUND, separators=(",", ":"))))


# -------------------------------------------------------------------------------------------
# HEAD and conditional requests


def test_head(gateway, site):
    get = gateway.request("GET", "/public/medium.bin")
    head = gateway.request("HEAD", "/public/medium.bin")
    assert head.status == 200
    assert head.body == b""
    for k in ("content-type", "content-length", "etag", "last-modified", "cache-control",
              "access-control-allow-origin"):
        assert head.headers[k] == get.headers[k], k


def test_head_big_file_sends_no_body(gateway, site):
    raw = raw_get(gateway, "/public/big.bin", method="HEAD")
    status, headers, body = gw.split_raw_response(raw)
    assert status == 200
    assert headers["content-length"] == str(BIG_SIZE)
    assert body == b""


def _etag(gateway, path="/public/hello.txt"):
    return gateway.request("GET", path).headers["etag"]


def assert_not_modified(r, etag=None):
    assert r.status == 304, (r.status, r.body[:200])
    assert r.body == b""
    assert r.headers["access-control-allow-origin"] == "*"
    assert "last-modified" in r.headers
    if etag:
        assert r.headers["etag"] == etag


def test_if_none_match(gateway, site):
    etag = _etag(gateway)
    assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                        headers={"If-None-Match": etag}), etag)
    assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                        headers={"If-None-Match": '"nope", %s, "x"' % etag}), etag)
    assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                        headers={"If-None-Match": "W/" + etag}), etag)
    assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                        headers={"If-None-Match": "*"}), etag)


def test_if_none_match_other_tag(gateway, site):
    for value in ['"nope"', '"a", "b"', etag_without_quotes(_etag(gateway)), "garbage"]:
        r = gateway.request("GET", "/public/hello.txt", headers={"If-None-Match": value})
        assert (r.status, r.body) == (200, b"hello, world\n"), value


def etag_without_quotes(etag):
    return etag.strip('"')


def test_if_none_match_on_index(gateway, site):
    etag = _etag(gateway, "/public/")
    assert_not_modified(gateway.request("GET", "/public", headers={"If-None-Match": etag}), etag)


def test_if_none_match_head(gateway, site):
    etag = _etag(gateway)
    assert_not_modified(gateway.request("HEAD", "/public/hello.txt",
                                        headers={"If-None-Match": etag}), etag)


def test_if_none_match_on_missing_file(gateway, site):
    assert_not_found(gateway.request("GET", "/public/missing.txt", headers={"If-None-Match": "*"}))


def test_if_modified_since(gateway, site):
    mtime = int(os.stat(site.path("hello.txt")).st_mtime)
    for ts in (mtime, mtime + 1, mtime + 86400 * 365):
        assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                            headers={"If-Modified-Since": http_date(ts)}))
    # The obsolete date formats are accepted too.
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(mtime))
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(mtime))
    for value in (rfc850, asctime):
        assert_not_modified(gateway.request("GET", "/public/hello.txt",
                                            headers={"If-Modified-Since": value}))


def test_if_modified_since_older_or_invalid(gateway, site):
    mtime = int(os.stat(site.path("hello.txt")).st_mtime)
    for value in (http_date(mtime - 1), http_date(0), "yesterday", "", "Sun, 06 Nov 1994"):
        r = gateway.request("GET", "/public/hello.txt", headers={"If-Modified-Since": value})
        assert (r.status, r.body) == (200, b"hello, world\n"), value


def test_if_none_match_wins_over_if_modified_since(gateway, site):
    mtime = int(os.stat(site.path("hello.txt")).st_mtime)
    r = gateway.request("GET", "/public/hello.txt",
                        headers={"If-None-Match": '"other"', "If-Modified-Since": http_date(mtime)})
    assert (r.status, r.body) == (200, b"hello, world\n")


def test_not_modified_after_change(gateway, site):
    p = site.write("edited.txt", "v1")
    etag = _etag(gateway, "/public/edited.txt")
    with open(p, "wb") as f:
        f.write(b"version 2")
    r = gateway.request("GET", "/public/edited.txt", headers={"If-None-Match": etag})
    assert (r.status, r.body) == (200, b"version 2")


# -------------------------------------------------------------------------------------------
# Other methods, configuration


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_not_static(gateway, site, method):
    # Only GET and HEAD serve files; OPTIONS is the CORS answer (SPEC §5), and any other
    # method finds no file there.
    offset = gateway.log_size()
    r = gateway.request(method, "/public/hello.txt", body=b"{}" if method != "OPTIONS" else None)
    if method == "OPTIONS":
        assert (r.status, r.body) == (204, b"")
    else:
        assert_not_found(r)
    assert r.headers["access-control-allow-origin"] == "*"
    # A file request after it logs its line: once that is there, any line of the first
    # request would be too (one process writes the log in order).
    assert gateway.request("GET", "/public/empty.txt").status == 200
    assert gateway.wait_for_log(r"static file path=/public/empty\.txt ", since=offset), \
        gateway.log_since(offset)
    assert "static file path=/public/hello.txt" not in gateway.log_since(offset)


def test_url_path_for_files(make_gateway):
    g = make_gateway({"servers": {"web": {"urlPathForFiles": "assets"}}})
    Site(g.config["paths"]["public"]).build()
    r = g.request("GET", "/assets/hello.txt")
    assert (r.status, r.body) == (200, b"hello, world\n")
    assert g.request("GET", "/assets/").body == b"<h1>root index</h1>"
    assert_not_found(g.request("GET", "/assets/missing.txt"))
    r = g.request("GET", "/public/hello.txt")
    assert r.status == 404, r.body
    assert r.json() == {"error": "unknown action or invalid apiVersion",
                        "errors": ["unknown action or invalid apiVersion"]}
    g.assert_serving()


def test_public_relative_to_config_file(make_gateway, tmp_path):
    wd = tmp_path / "relcfg"
    site_dir = wd / "site"
    os.makedirs(site_dir)
    Site(str(site_dir)).build()
    g = make_gateway({"paths": {"public": "site"}}, workdir=wd, cwd=str(tmp_path))
    r = g.request("GET", "/public/hello.txt")
    assert (r.status, r.body) == (200, b"hello, world\n")


def test_missing_public_folder(make_gateway, tmp_path):
    g = make_gateway({"paths": {"public": str(tmp_path / "does-not-exist")}})
    assert_not_found(g.request("GET", "/public/"))
    assert_not_found(g.request("GET", "/public/hello.txt"))
    g.assert_serving()


# -------------------------------------------------------------------------------------------
# Keep-alive, big files, the loop, clients that leave


def test_keep_alive_after_files(gateway, site):
    with gateway.client() as c:
        port = c.local_port()
        etag = None
        for _ in range(3):
            r = c.request("GET", "/public/medium.bin")
            assert r.body == site.medium
            etag = r.headers["etag"]
            assert c.request("GET", "/api/randomNumber").status == 200
            assert c.request("HEAD", "/public/medium.bin").status == 200
            assert c.request("GET", "/public/medium.bin",
                             headers={"If-None-Match": etag}).status == 304
            assert c.request("GET", "/public/missing").status == 404
            assert c.request("GET", "/public/empty.txt").body == b""
            assert c.request("GET", "/public/hello.txt").body == b"hello, world\n"
        assert c.local_port() == port, "the connection was not kept alive"


def test_pipelined_requests(gateway, site):
    req = (b"GET /public/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
           b"GET /public/medium.bin HTTP/1.1\r\nHost: t\r\n\r\n"
           b"GET /public/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    raw = gateway.raw(req)
    assert raw.count(b"HTTP/1.1 200") == 3, raw[:300]
    assert raw.count(b"hello, world\n") == 2
    assert site.medium in raw


def _slow_download(g, path, rate_bytes_per_s=None, rcvbuf=65536, stop_after=None):
    """GET 'path' on a raw socket with a small receive buffer, reading at most
    'rate_bytes_per_s'. Returns a dict filled in as it goes (thread-friendly)."""
    state = {"first_byte": None, "end": None, "raw": b"", "error": None, "got": 0,
             "started": threading.Event()}

    def run():
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(gw.REQUEST_TIMEOUT)
            s.connect((g.host, g.port))
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            chunks, got = [], 0
            t0 = time.monotonic()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                if state["first_byte"] is None:
                    state["first_byte"] = time.monotonic()
                    state["started"].set()
                chunks.append(chunk)
                got += len(chunk)
                state["got"] = got
                if stop_after and got >= stop_after:
                    break
                if rate_bytes_per_s:
                    ahead = got / rate_bytes_per_s - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            s.close()
            state["raw"] = b"".join(chunks)
        except Exception as e:  # reported by the test
            state["error"] = e
        finally:
            state["end"] = time.monotonic()
            state["started"].set()

    t = threading.Thread(target=run, daemon=True)
    state["thread"] = t
    t.start()
    return state


def test_big_file_while_the_loop_serves_others(gateway, site):
    # About 2 s for 20 MiB: long enough to see other requests answered in between.
    dl = _slow_download(gateway, "/public/big.bin", rate_bytes_per_s=10 * 1024 * 1024)
    assert dl["started"].wait(10), "no byte of the big file within 10 s"
    latencies, during = [], 0
    while dl["end"] is None and len(latencies) < 200:
        t0 = time.monotonic()
        status, body = gateway.get("/api/randomNumber")
        t1 = time.monotonic()
        assert status == 200
        latencies.append(t1 - t0)
        if dl["end"] is None:
            during += 1
        time.sleep(0.02)
    dl["thread"].join(30)
    assert dl["error"] is None, dl["error"]
    status, headers, body = gw.split_raw_response(dl["raw"])
    assert status == 200
    assert headers["content-length"] == str(BIG_SIZE)
    assert len(body) == BIG_SIZE
    assert hashlib.sha256(body).digest() == hashlib.sha256(site.big).digest()
    assert during >= 5, "only %d small requests finished during the download" % during
    assert max(latencies) < gw.bound(1.0), \
        "a small request took %.3f s during the download" % max(latencies)


def test_big_file_at_full_speed(gateway, site):
    r = gateway.request("GET", "/public/big.bin", timeout=30)
    assert r.status == 200
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(site.big).digest()


def test_many_concurrent_downloads(gateway, site):
    results = [None] * 8

    def fetch(i):
        results[i] = gateway.request("GET", "/public/medium.bin", timeout=30)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r.status == 200 and r.body == site.medium for r in results)


def _drop(g, path, read_bytes, reset=False, wait=None):
    """GET 'path', read 'read_bytes' of the answer, then leave (with a reset if asked).
    'wait' before leaving: "sending" until the gateway has begun to send, "full" until its
    send queue is full."""
    s = socket.create_connection((g.host, g.port), timeout=gw.REQUEST_TIMEOUT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < read_bytes:
        chunk = s.recv(min(65536, read_bytes - got))
        if not chunk:
            break
        got += len(chunk)
    if wait == "sending":
        _wait_send_queue(g, s, full=False)
    elif wait == "full":
        _wait_send_queue(g, s, full=True)
    if reset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def _wait_send_queue(g, sock, full, timeout=5.0):
    """Wait until the gateway's end of 'sock' has data in its send queue; with 'full', until
    that queue is also stuck (the client reads nothing): not moved for 100 ms."""
    port = sock.getsockname()[1]
    deadline = time.monotonic() + gw.bound(timeout)
    seen = []
    while True:
        side = g.server_side(port)
        seen = (seen + [side and side["tx_queue"]])[-6:]
        if seen[-1] and (not full or (len(seen) == 6 and len(set(seen)) == 1)):
            return
        assert time.monotonic() < deadline, "the send queue never filled: %r" % seen
        time.sleep(0.02)


@pytest.mark.asan
def test_client_leaves_mid_file(make_gateway):
    # A transfer left counted as in flight would hold shutdown for shutdownTimeout: longer
    # than stop() waits before it kills the gateway (then the exit status is not 0).
    g = make_gateway({"general": {"shutdownTimeout": 3 * int(gw.STOP_TIMEOUT * 1000)}})
    site = Site(g.config["paths"]["public"]).build(big=True)
    offset = g.log_size()
    for _ in range(4):
        _drop(g, "/public/big.bin", 0)                       # while the file is being opened
        _drop(g, "/public/big.bin", 0, wait="sending")      # before reading anything
        _drop(g, "/public/big.bin", 100 * 1024)              # after the first chunks
        _drop(g, "/public/big.bin", 3 * 1024 * 1024, reset=True)
        _drop(g, "/public/big.bin", 200, reset=True, wait="full")  # server blocked on a full socket
    # Two requests pipelined, the client gone after the first bytes.
    s = socket.create_connection((g.host, g.port), timeout=gw.REQUEST_TIMEOUT)
    s.sendall(b"GET /public/big.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
    s.recv(1000)
    s.close()
    assert g.wait_for_log(r"static file path=/public/big\.bin .*error=\"the client went away\"",
                          timeout=5, since=offset), g.log_since(offset)[-3000:]
    g.assert_serving()
    r = g.request("GET", "/public/big.bin", timeout=30)
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(site.big).digest()
    # Nothing is left counted as in flight: once the gateway has closed every connection,
    # shutdown does not wait for shutdownTimeout.
    assert g.wait_clients_closed(), g.client_sockets()
    t0 = time.monotonic()
    assert g.stop() == 0
    assert time.monotonic() - t0 < gw.bound(3.0), "shutdown waited for a transfer that had ended"
    assert not g.sanitizer_reports(), g.describe()


@pytest.mark.asan
def test_shutdown_lets_a_download_finish(make_gateway):
    g = make_gateway({"general": {"shutdownTimeout": 10000}})
    site = Site(g.config["paths"]["public"]).build(big=True)
    dl = _slow_download(g, "/public/big.bin", rate_bytes_per_s=8 * 1024 * 1024)
    assert dl["started"].wait(10)
    # Well into the file (20 MiB) when the signal comes.
    deadline = time.monotonic() + gw.bound(5)
    while dl["got"] < 2 * 1024 * 1024 and dl["end"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 2 * 1024 * 1024 <= dl["got"] < BIG_SIZE, dl
    g.signal(signal.SIGTERM)
    dl["thread"].join(30)
    assert dl["error"] is None, dl["error"]
    status, headers, body = gw.split_raw_response(dl["raw"])
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(site.big).digest()
    assert g.wait(10) == 0, g.describe()


@pytest.mark.asan
def test_shutdown_with_a_stalled_download(make_gateway):
    g = make_gateway({"general": {"shutdownTimeout": 500}})
    Site(g.config["paths"]["public"]).build(big=True)
    s = socket.create_connection((g.host, g.port), timeout=gw.REQUEST_TIMEOUT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.sendall(b"GET /public/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    s.recv(100)
    try:
        _wait_send_queue(g, s, full=True)
        t0 = time.monotonic()
        assert g.stop() == 0
        assert time.monotonic() - t0 < gw.bound(5.0)
    finally:
        s.close()
    assert not g.sanitizer_reports(), g.describe()


def test_encoded_plus_and_space_in_a_file_name(gateway, site):
    site.write("a+b.txt", "plus")
    site.write("a b.txt", "space")
    assert gateway.request("GET", "/public/a%2Bb.txt").body == b"plus"
    assert gateway.request("GET", "/public/a%20b.txt").body == b"space"


def test_plus_in_a_file_name(gateway, site):
    # SPEC §6: a path is percent-decoded only. "+" is a plus sign there, not a space (that
    # is the form encoding of query strings and bodies).
    site.write("a+b.txt", "plus")
    site.write("a b.txt", "space")
    r = gateway.request("GET", "/public/a+b.txt")
    assert (r.status, r.body) == (200, b"plus")
