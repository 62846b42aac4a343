"""Request bodies (SPEC §5, §8 "Web"): urlencoded forms and multipart/form-data.

Multipart fields become strings and files `{filename, type, data}` (the test action
`upload_echo` answers a file's name, type, size and bytes in hex). A malformed body is 400
(`invalid form body`, `invalid multipart body`); a body over maxBodySize is 413. JSON bodies
are pinned in test_abuse.py (`test_odd_json_bodies`)."""

import json
import os

import pytest

import gateway as gw

pytestmark = pytest.mark.asan

BODY_ACTIONS = os.path.join(gw.HERE, "body_actions")
MAX_BODY = 16384
BOUNDARY = "gwBoundary7MA4YWxk"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def bgw(gateway_bin, redis_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bodies")
    config = gw.deep_merge(gw.default_config(str(workdir), redis_url), {
        "paths": {"actions": [gw.EXAMPLE_ACTIONS, gw.TEST_ACTIONS, BODY_ACTIONS]},
        "servers": {"web": {"maxBodySize": MAX_BODY}},
    })
    with gw.serving(workdir, config) as g:
        yield g


@pytest.fixture
def g(bgw):
    assert bgw.alive(), "the module's gateway died\n" + bgw.describe()
    return bgw


def strict_json(r):
    """The body as JSON, which must be valid UTF-8 (a binary upload must not leak into it)."""
    try:
        return json.loads(r.body.decode("utf-8"))
    except ValueError as e:
        raise AssertionError("not a UTF-8 JSON body (%s): %r" % (e, r.body[:500]))


def part(name, value, filename=None, ctype=None, disposition=None):
    """One part: (header lines, value bytes)."""
    if disposition is None:
        disposition = 'form-data; name="%s"' % name
        if filename is not None:
            disposition += '; filename="%s"' % filename
    head = ["Content-Disposition: " + disposition] if disposition else []
    if ctype:
        head.append("Content-Type: " + ctype)
    return head, value if isinstance(value, bytes) else value.encode("utf-8")


def multipart(parts, boundary=BOUNDARY, close=True):
    out = b""
    for head, value in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        out += "".join(h + "\r\n" for h in head).encode("utf-8") + b"\r\n" + value + b"\r\n"
    if close:
        out += b"--" + boundary.encode() + b"--\r\n"
    return out


def post_multipart(g, body, boundary=BOUNDARY, content_type=None):
    ctype = content_type or "multipart/form-data; boundary=%s" % boundary
    return g.request("POST", "/api/upload_echo", body, {"Content-Type": ctype})


def received(body):
    return body["requesterInformation"]["receivedParams"]


# -- urlencoded forms --------------------------------------------------------------------

def test_form_body_is_decoded(g):
    r = g.request("POST", "/api/echo_params", b"a=1&b=x+y%21", FORM)
    assert r.status == 200, r.body
    p = strict_json(r)["params"]
    assert p["a"] == "1" and p["b"] == "x y!", p


def test_form_body_repeated_key_becomes_a_list(g):
    # As for query strings (README "HTTP"): every value, in order.
    r = g.request("POST", "/api/echo_params", b"a=1&a=%C3%A9&a=&b=2", FORM)
    assert r.status == 200, r.body
    p = strict_json(r)["params"]
    assert p["a"] == ["1", "\u00e9", ""], p
    assert p["b"] == "2", p


def test_form_body_beats_query(g):
    r = g.request("POST", "/api/echo_params?a=q&b=q", b"a=body", FORM)
    assert r.status == 200, r.body
    p = strict_json(r)["params"]
    assert p["a"] == "body" and p["b"] == "q", p


# -- multipart: fields and files ---------------------------------------------------------

def test_multipart_one_field(g):
    r = post_multipart(g, multipart([part("f1", "hello")]))
    assert r.status == 200, r.body
    body = strict_json(r)
    assert body["f1"] == "hello", body
    assert received(body)["f1"] == "hello", body


def test_multipart_several_fields(g):
    r = post_multipart(g, multipart([
        part("f1", "caf\u00e9 \u2713"),
        part("f2", ""),
        part("f3", "two\r\nlines -- with dashes"),
        part("undeclared", "scrubbed"),
    ]))
    assert r.status == 200, r.body
    body = strict_json(r)
    assert body["f1"] == "caf\u00e9 \u2713", body
    assert body["f2"] == "", body
    assert body["f3"] == "two\r\nlines -- with dashes", body
    assert "undeclared" not in body, body
    # Middleware would have seen it; scrubbing removed it before the action (SPEC §3.3).
    assert "undeclared" not in received(body), body


def test_multipart_repeated_name_keeps_the_last(g):
    # ActionHero's form parser keeps the last part of a name; so does the gateway.
    r = post_multipart(g, multipart([part("f1", "first"), part("f1", "second")]))
    assert r.status == 200, r.body
    assert strict_json(r)["f1"] == "second"


def test_multipart_file(g):
    text = "line one\nline two\n"
    r = post_multipart(g, multipart([part("f1", "note"),
                                     part("upload", text, filename="notes.txt", ctype="text/plain")]))
    assert r.status == 200, r.body
    body = strict_json(r)
    assert body["f1"] == "note", body
    assert body["upload"] == {"filename": "notes.txt", "type": "text/plain",
                              "size": len(text), "hex": text.encode().hex()}, body
    # receivedParams shows a file without its bytes.
    assert received(body)["upload"] == {"filename": "notes.txt", "type": "text/plain",
                                        "size": len(text)}, body


def test_multipart_binary_file(g):
    # Every byte value, CR/LF pairs, lone CR and LF, and `--` (but never the boundary).
    data = (bytes(range(256)) + b"\r\n--\r\n--" + BOUNDARY[:-1].encode() + b"\r\r\n\n--\r\n"
            + b"\x00" * 10 + b"\r\n")
    r = post_multipart(g, multipart([part("upload", data, filename="blob.bin",
                                          ctype="application/octet-stream")]))
    assert r.status == 200, r.body
    body = strict_json(r)  # the bytes are not echoed raw anywhere in the answer
    up = body["upload"]
    assert up["filename"] == "blob.bin" and up["type"] == "application/octet-stream", up
    assert up["size"] == len(data), (up["size"], len(data))
    assert bytes.fromhex(up["hex"]) == data
    assert received(body)["upload"] == {"filename": "blob.bin", "type": "application/octet-stream",
                                        "size": len(data)}, body


def test_multipart_file_without_content_type(g):
    r = post_multipart(g, multipart([part("upload", "x", filename="a.txt")]))
    assert r.status == 200, r.body
    assert strict_json(r)["upload"] == {"filename": "a.txt", "size": 1, "hex": "78"}


def test_multipart_empty_file_name(g):
    # What a browser sends for a file input left empty: a file with no name and no bytes.
    r = post_multipart(g, multipart([part("upload", b"", filename="",
                                          ctype="application/octet-stream")]))
    assert r.status == 200, r.body
    assert strict_json(r)["upload"] == {"filename": "", "type": "application/octet-stream",
                                        "size": 0, "hex": ""}


def test_multipart_quoted_boundary(g):
    # A boundary with a space and a colon must be quoted in the header (RFC 2046 §5.1.1).
    boundary = "quoted b:ndary"
    r = post_multipart(g, multipart([part("f1", "q")], boundary=boundary),
                       content_type='multipart/form-data; boundary="%s"' % boundary)
    assert r.status == 200, r.body
    assert strict_json(r)["f1"] == "q"


def test_multipart_boundary_parameter_case_and_charset(g):
    r = post_multipart(g, multipart([part("f1", "c")]),
                       content_type="Multipart/Form-Data; charset=utf-8; Boundary=%s" % BOUNDARY)
    assert r.status == 200, r.body
    assert strict_json(r)["f1"] == "c"


def test_multipart_header_names_in_any_case(g):
    head = ["CONTENT-DISPOSITION: form-data; name=\"upload\"; filename=\"up.txt\"",
            "content-type: text/plain"]
    r = post_multipart(g, multipart([(head, b"abc")]))
    assert r.status == 200, r.body
    assert strict_json(r)["upload"] == {"filename": "up.txt", "type": "text/plain", "size": 3,
                                        "hex": "616263"}


def test_multipart_filename_before_name(g):
    # Parameters in any order: `name=` must not be read out of `filename=`.
    r = post_multipart(g, multipart([part("upload", "z", disposition='form-data; filename="doc"; '
                                          'name="upload"')]))
    assert r.status == 200, r.body
    body = strict_json(r)
    assert body.get("upload") == {"filename": "doc", "size": 1, "hex": "7a"}, body
    assert "doc" not in body, body


def test_multipart_unquoted_name_and_preamble(g):
    # A preamble before the first delimiter and an epilogue after the last are ignored.
    body = (b"this is a preamble\r\n"
            + multipart([part("f1", "plain", disposition="form-data; name=f1")])
            + b"epilogue")
    r = post_multipart(g, body)
    assert r.status == 200, r.body
    assert strict_json(r)["f1"] == "plain"


def test_multipart_only_closing_delimiter(g):
    r = post_multipart(g, b"--" + BOUNDARY.encode() + b"--\r\n")
    assert r.status == 200, r.body
    body = strict_json(r)
    assert not any(k in body for k in ("f1", "f2", "f3", "upload", "doc")), body


# -- multipart: malformed bodies ---------------------------------------------------------

MALFORMED = {
    "no-boundary-parameter": (multipart([part("f1", "x")]), "multipart/form-data"),
    "empty-boundary": (multipart([part("f1", "x")]), 'multipart/form-data; boundary=""'),
    "other-boundary": (multipart([part("f1", "x")]), "multipart/form-data; boundary=nothere"),
    "no-closing-delimiter": (multipart([part("f1", "x")], close=False), None),
    "cut-inside-a-part": (multipart([part("f1", "x")])[:-20], None),
    "no-content-disposition": (multipart([part("f1", "x", disposition="", ctype="text/plain")]),
                               None),
    "disposition-without-name": (multipart([part("f1", "x", disposition="form-data")]), None),
    "not-form-data": (multipart([part("f1", "x", disposition='attachment; name="f1"')]), None),
    "header-line-without-colon": (multipart([(['Content-Disposition: form-data; name="f1"',
                                               "garbage"], b"x")]), None),
    "delimiter-not-on-its-own-line": (multipart([part("f1", "x")]).replace(
        b"--" + BOUNDARY.encode() + b"\r\n", b"--" + BOUNDARY.encode() + b"XX\r\n", 1), None),
    "field-not-utf8": (multipart([part("f1", b"\xff\xfe")]), None),
    "name-not-utf8": (multipart([(['Content-Disposition: form-data; name="f\xff"'], b"x")])
                      .replace("f\xff".encode(), b"f\xff"), None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_multipart_is_400(g, case):
    body, ctype = MALFORMED[case]
    r = post_multipart(g, body, content_type=ctype)
    assert r.status == 400, (r.status, r.body)
    assert strict_json(r) == {"error": "invalid multipart body",
                              "errors": ["invalid multipart body"]}
    g.assert_serving()


def test_multipart_over_max_body_size_is_413(g):
    data = b"\xab" * (MAX_BODY + 1)
    r = post_multipart(g, multipart([part("upload", data, filename="big.bin",
                                          ctype="application/octet-stream")]))
    assert r.status == 413, (r.status, r.body[:300])
    assert strict_json(r)["error"] == "request body is larger than maxBodySize"
    # Just under the limit is read and parsed.
    small = b"\xab" * (MAX_BODY - 300)
    r = post_multipart(g, multipart([part("upload", small, filename="ok.bin")]))
    assert r.status == 200, r.body[:300]
    assert strict_json(r)["upload"]["size"] == len(small)
    g.assert_serving()
