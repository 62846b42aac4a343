/* Unit tests for gw_http1.h, the HTTP/1.1 request parser, fed bytes:
 * a whole request, the same split at every byte, pipelined requests,
 * chunked bodies, Expect: 100-continue, upgrades, every limit and every
 * malformed input with the status it gets, and the URL helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/http1.h"

static const struct gw_http1_limits LIMITS = {16384, 100, 1 << 20};

/* Feed all of 'data' (in pieces of 'step' bytes, 0: at once); returns the
 * last event, and the bytes left over after it in *rest. Stops at the
 * first REQUEST, UPGRADE or ERROR. */
static enum gw_http1_event feed(struct gw_http1 *p, const char *data, size_t len, size_t step,
                                size_t *rest) {
    enum gw_http1_event ev = GW_HTTP1_MORE;
    size_t off = 0;
    while (off < len) {
        size_t n = step && len - off > step ? step : len - off;
        size_t used = gw_http1_feed(p, data + off, n, &ev);
        off += used;
        if (ev == GW_HTTP1_REQUEST || ev == GW_HTTP1_UPGRADE || ev == GW_HTTP1_ERROR) break;
        if (ev == GW_HTTP1_CONTINUE) continue;
        assert_int_equal(used, n);
    }
    if (rest) *rest = len - off;
    return ev;
}

static enum gw_http1_event feed_str(struct gw_http1 *p, const char *s) {
    return feed(p, s, strlen(s), 0, NULL);
}

static void test_simple_get(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "GET /api/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Custom-Thing: Yes\r\n\r\n"),
                     GW_HTTP1_REQUEST);
    size_t len;
    const char *url = gw_http1_url(p, &len);
    assert_int_equal(len, 10);
    assert_string_equal(url, "/api/x?a=1");
    assert_string_equal(gw_http1_method(p), "GET");
    assert_string_equal(gw_http1_header(p, "host"), "h");
    assert_string_equal(gw_http1_header(p, "x-custom-thing"), "Yes");
    assert_null(gw_http1_header(p, "X-Custom-Thing")); /* names are stored lower case */
    assert_int_equal(gw_http1_nfields(p), 2);
    assert_true(gw_http1_keep_alive(p));
    assert_null(gw_http1_body(p, &len));
    gw_http1_free(p);
}

static const char POST[] = "POST /api/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                           "Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}";

/* The same request split at every byte parses the same. */
static void test_split_at_every_byte(void **state) {
    (void)state;
    for (size_t step = 1; step <= 8; step++) {
        struct gw_http1 *p = gw_http1_new(&LIMITS);
        size_t rest;
        assert_int_equal(feed(p, POST, strlen(POST), step, &rest), GW_HTTP1_REQUEST);
        assert_int_equal(rest, 0);
        size_t len;
        const char *body = gw_http1_body(p, &len);
        assert_int_equal(len, 11);
        assert_memory_equal(body, "{\"a\":\"bcd\"}", 11);
        assert_string_equal(gw_http1_header(p, "content-type"), "application/json");
        assert_string_equal(gw_http1_url(p, &len), "/api/echo");
        gw_http1_free(p);
    }
}

static void test_pipelined(void **state) {
    (void)state;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n%sGET /c HTTP/1.1\r\n\r\n", POST);
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    const char *at = buf;
    size_t left = (size_t)n, len;
    const char *want[] = {"/a", "/api/echo", "/c"};
    for (int i = 0; i < 3; i++) {
        enum gw_http1_event ev;
        size_t used = gw_http1_feed(p, at, left, &ev);
        assert_int_equal(ev, GW_HTTP1_REQUEST);
        assert_string_equal(gw_http1_url(p, &len), want[i]);
        at += used;
        left -= used;
        gw_http1_next(p);
    }
    assert_int_equal(left, 0);
    gw_http1_free(p);
}

static void test_chunked_body(void **state) {
    (void)state;
    const char *req = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
    for (size_t step = 0; step <= 3; step++) {
        struct gw_http1 *p = gw_http1_new(&LIMITS);
        assert_int_equal(feed(p, req, strlen(req), step, NULL), GW_HTTP1_REQUEST);
        size_t len;
        const char *body = gw_http1_body(p, &len);
        assert_int_equal(len, 9);
        assert_memory_equal(body, "Wikipedia", 9);
        assert_int_equal(gw_http1_nfields(p), 1); /* the trailer is dropped */
        assert_null(gw_http1_header(p, "trailer"));
        gw_http1_free(p);
    }
}

static void test_empty_chunked_body(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                     GW_HTTP1_REQUEST);
    size_t len;
    assert_non_null(gw_http1_body(p, &len));
    assert_int_equal(len, 0);
    gw_http1_free(p);
}

static void test_expect_continue(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    const char *head = "POST /x HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-Continue\r\n\r\n";
    enum gw_http1_event ev;
    size_t used = gw_http1_feed(p, head, strlen(head), &ev);
    assert_int_equal(ev, GW_HTTP1_CONTINUE);
    /* The parser stops on the header's last byte and takes it on the next call. */
    used += gw_http1_feed(p, head + used, strlen(head) - used, &ev);
    assert_int_equal(used, strlen(head));
    assert_int_equal(ev, GW_HTTP1_MORE);
    gw_http1_feed(p, "{}", 2, &ev);
    assert_int_equal(ev, GW_HTTP1_REQUEST);
    gw_http1_free(p);

    /* Without a body there is nothing to wait for. */
    p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"), GW_HTTP1_REQUEST);
    gw_http1_free(p);
}

static void test_upgrade(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    const char *req = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85";
    size_t rest;
    assert_int_equal(feed(p, req, strlen(req), 0, &rest), GW_HTTP1_UPGRADE);
    assert_int_equal(rest, 2); /* the frame's bytes are not HTTP */
    assert_string_equal(gw_http1_header(p, "upgrade"), "websocket");
    gw_http1_free(p);
}

static void test_repeated_and_empty_headers(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "GET / HTTP/1.1\r\nA: 1\r\nB:\r\nA: 2\r\nC: \r\n\r\n"), GW_HTTP1_REQUEST);
    assert_int_equal(gw_http1_nfields(p), 4);
    const char *name, *value;
    size_t nl, vl;
    gw_http1_field(p, 1, &name, &nl, &value, &vl);
    assert_string_equal(name, "b");
    assert_string_equal(value, "");
    gw_http1_field(p, 2, &name, &nl, &value, &vl);
    assert_string_equal(value, "2");
    assert_string_equal(gw_http1_header(p, "c"), "");
    gw_http1_free(p);
}

static void test_http10(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "GET / HTTP/1.0\r\n\r\n"), GW_HTTP1_REQUEST);
    assert_false(gw_http1_keep_alive(p));
    assert_int_equal(gw_http1_minor(p), 0);
    gw_http1_free(p);
    p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), GW_HTTP1_REQUEST);
    assert_true(gw_http1_keep_alive(p));
    gw_http1_free(p);
}

/* Each bad input, the status it gets, and the message. */
static void expect_error(const char *req, int status, const char *message) {
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    enum gw_http1_event ev = feed(p, req, strlen(req), 0, NULL);
    if (ev != GW_HTTP1_ERROR) fail_msg("no error for %s", req);
    assert_int_equal(gw_http1_status(p), status);
    assert_string_equal(gw_http1_message(p), message);
    gw_http1_free(p);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("GARBAGE\r\n\r\n", 400, "malformed HTTP request");
    expect_error("\x01\x02\xff\r\n\r\n", 400, "malformed HTTP request");
    expect_error("BREW /pot HTTP/1.1\r\n\r\n", 501, "method not implemented");
    expect_error("GET / HTTP/2.0\r\n\r\n", 505, "HTTP version not supported");
    expect_error("GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", 400, "malformed HTTP request");
    expect_error("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "invalid Content-Length");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
                 "invalid Content-Length");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400,
                 "invalid Content-Length");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400,
                 "invalid Content-Length");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                 "Content-Length with Transfer-Encoding");
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid chunked body");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413,
                 "request body is larger than maxBodySize");
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n", 413,
                 "request body is larger than maxBodySize");
    expect_error("POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: magic\r\n\r\n", 417,
                 "unsupported Expect header");
}

static void test_zero_padded_length(void **state) {
    (void)state;
    struct gw_http1 *p = gw_http1_new(&LIMITS);
    assert_int_equal(feed_str(p, "POST / HTTP/1.1\r\nContent-Length: 0002\r\n\r\n{}"), GW_HTTP1_REQUEST);
    size_t len;
    gw_http1_body(p, &len);
    assert_int_equal(len, 2);
    gw_http1_free(p);
}

static void test_header_limits(void **state) {
    (void)state;
    struct gw_http1_limits lim = {1024, 3, 100};
    char req[4096];
    struct gw_http1 *p = gw_http1_new(&lim);
    assert_int_equal(feed_str(p, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), GW_HTTP1_REQUEST);
    gw_http1_free(p);
    p = gw_http1_new(&lim);
    assert_int_equal(feed_str(p, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), GW_HTTP1_ERROR);
    assert_int_equal(gw_http1_status(p), 431);
    assert_string_equal(gw_http1_message(p), "too many request headers");
    gw_http1_free(p);
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX: %02000d\r\n\r\n", 0);
    p = gw_http1_new(&lim);
    assert_int_equal(feed(p, req, strlen(req), 7, NULL), GW_HTTP1_ERROR);
    assert_int_equal(gw_http1_status(p), 431);
    gw_http1_free(p);
    snprintf(req, sizeof req, "GET /%02000d HTTP/1.1\r\n\r\n", 0);
    p = gw_http1_new(&lim);
    assert_int_equal(feed(p, req, strlen(req), 0, NULL), GW_HTTP1_ERROR);
    assert_int_equal(gw_http1_status(p), 414);
    gw_http1_free(p);
}

static void test_split_target(void **state) {
    (void)state;
    const char *path, *query;
    size_t pl, ql;
    const char *u = "/a/b?x=1&y#frag";
    assert_int_equal(gw_http1_split_target(u, strlen(u), &path, &pl, &query, &ql), GW_OK);
    assert_int_equal(pl, 4);
    assert_memory_equal(path, "/a/b", 4);
    assert_int_equal(ql, 5);
    assert_memory_equal(query, "x=1&y", 5);
    assert_int_equal(gw_http1_split_target("/p", 2, &path, &pl, &query, &ql), GW_OK);
    assert_int_equal(ql, 0);
    /* absolute-form: the path after the authority, "/" when there is none */
    assert_int_equal(gw_http1_split_target("http://h/p?q", 12, &path, &pl, &query, &ql), GW_OK);
    assert_int_equal(pl, 2);
    assert_memory_equal(path, "/p", 2);
    assert_int_equal(ql, 1);
    assert_int_equal(gw_http1_split_target("HTTPS://h", 9, &path, &pl, &query, &ql), GW_OK);
    assert_int_equal(pl, 1);
    assert_memory_equal(path, "/", 1);
    assert_int_equal(gw_http1_split_target("ftp://h/p", 9, &path, &pl, &query, &ql), GW_ERR);
    assert_int_equal(gw_http1_split_target("*", 1, &path, &pl, &query, &ql), GW_ERR);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_empty_chunked_body),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_repeated_and_empty_headers),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_zero_padded_length),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_split_target),
    };
    return cmocka_run_group_tests_name("gw_http1", tests, NULL, NULL);
}
