/* Unit tests for gw_h2.h, fed bytes by a real HTTP/2 client: an nghttp2
 * client session on the other side of a pair of buffers. A request comes
 * out as HTTP/1.1 text (Host from :authority, cookies joined, a
 * Content-Length for the body); an HTTP/1.1 answer goes back as HEADERS
 * and DATA; limits refuse with their status; a reset closes the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/h2.h"

static const struct gw_h2_limits LIMITS = {16384, 100, 1 << 20, 100, 65535};

/* --- The server side's owner: records what gw_h2 tells it ------------- */

struct rec {
    int opened, closed, sent;
    int32_t last_id;
    uint32_t close_error;
    char text[8192];
    size_t text_len;
    int status;
    const char *message;
    size_t received;
};

static struct rec rec;

static void *on_open(void *conn, int32_t id) {
    (void)conn;
    rec.opened++;
    rec.last_id = id;
    return &rec;
}

static void on_request(void *stream, const char *text, size_t len, int status, const char *message) {
    (void)stream;
    rec.status = status;
    rec.message = message;
    if (text && len < sizeof rec.text) {
        memcpy(rec.text, text, len);
        rec.text[len] = '\0';
        rec.text_len = len;
    }
}

static void on_received(void *stream, size_t len) {
    (void)stream;
    rec.received += len;
}

static void on_sent(void *stream) {
    (void)stream;
    rec.sent++;
}

static void on_closed(void *stream, uint32_t error) {
    (void)stream;
    rec.closed++;
    rec.close_error = error;
}

static const struct gw_h2_ops OPS = {on_open, on_request, on_received, on_sent, on_closed};

/* --- The client: an nghttp2 client session ------------------------------ */

struct client {
    nghttp2_session *s;
    int status;
    char body[4096];
    size_t body_len;
    int ended, reset;
    uint32_t reset_code, goaway_code;
    int goaway;
};

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                    const uint8_t *value, size_t vl, uint8_t flags, void *ud) {
    (void)s;
    (void)f;
    (void)flags;
    (void)vl;
    struct client *c = ud;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) c->status = atoi((const char *)value);
    /* HTTP/2 forbids these: never sent */
    assert_false(nl == 10 && memcmp(name, "connection", 10) == 0);
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud) {
    (void)s;
    (void)flags;
    (void)id;
    struct client *c = ud;
    assert_true(c->body_len + len < sizeof c->body);
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    return 0;
}

static int c_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
    (void)s;
    struct client *c = ud;
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS))
        c->ended = 1;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        c->reset = 1;
        c->reset_code = f->rst_stream.error_code;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        c->goaway_code = f->goaway.error_code;
    }
    return 0;
}

static void client_init(struct client *c) {
    memset(c, 0, sizeof *c);
    nghttp2_session_callbacks *cbs;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_frame);
    assert_int_equal(nghttp2_session_client_new(&c->s, cbs, c), 0);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

/* Move bytes both ways until neither side has any to send. */
static void exchange(struct client *c, struct gw_h2 *h2) {
    for (int round = 0; round < 100; round++) {
        int moved = 0;
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->s, &out)) > 0) {
            gw_h2_feed(h2, (const char *)out, (size_t)n);
            moved = 1;
        }
        const char *sout;
        while ((n = gw_h2_pull(h2, &sout)) > 0) {
            assert_int_equal(nghttp2_session_mem_recv(c->s, (const uint8_t *)sout, (size_t)n), n);
            moved = 1;
        }
        if (!moved) return;
    }
    fail_msg("the two sides kept talking");
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE}

static struct gw_h2 *start(struct client *c) {
    memset(&rec, 0, sizeof rec);
    client_init(c);
    struct gw_h2 *h2 = gw_h2_new(&LIMITS, &OPS, NULL);
    assert_non_null(h2);
    return h2;
}

static void finish(struct client *c, struct gw_h2 *h2) {
    gw_h2_free(h2);
    nghttp2_session_del(c->s);
}

static void test_get_and_answer(void **state) {
    (void)state;
    struct client c;
    struct gw_h2 *h2 = start(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "example.org"),
                       NV(":path", "/api/x?a=1"), NV("cookie", "a=1"), NV("x-one", "1"),
                       NV("cookie", "b=2")};
    int32_t id = nghttp2_submit_request(c.s, NULL, nv, sizeof nv / sizeof nv[0], NULL, NULL);
    exchange(&c, h2);
    assert_int_equal(rec.opened, 1);
    assert_int_equal(rec.last_id, id);
    assert_int_equal(rec.status, 0);
    assert_string_equal(rec.text, "GET /api/x?a=1 HTTP/1.1\r\nhost: example.org\r\nx-one: 1\r\n"
                                  "cookie: a=1; b=2\r\n\r\n");
    assert_int_equal(gw_h2_streams(h2), 1);
    /* The answer in two pieces, head split mid-line. */
    static const char a1[] = "HTTP/1.1 201 Created\r\nConnection: close\r\nX-Thing: y\r\nCont";
    static const char a2[] = "ent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhel";
    assert_int_equal(gw_h2_write(h2, id, a1, sizeof a1 - 1), 0);
    assert_int_equal(gw_h2_write(h2, id, a2, sizeof a2 - 1), 1);
    assert_int_equal(gw_h2_write(h2, id, "lo", 2), 1);
    exchange(&c, h2);
    assert_int_equal(c.status, 201);
    assert_int_equal(c.body_len, 5);
    assert_memory_equal(c.body, "hello", 5);
    assert_true(c.ended);
    assert_true(rec.sent >= 1);
    assert_int_equal(rec.closed, 1);
    assert_int_equal(rec.close_error, 0);
    assert_int_equal(gw_h2_streams(h2), 0);
    finish(&c, h2);
}

static ssize_t body_src(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud) {
    (void)s;
    (void)id;
    (void)ud;
    const char *text = src->ptr;
    size_t n = strlen(text);
    assert_true(n <= len);
    memcpy(buf, text, n);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void test_post_body_and_head(void **state) {
    (void)state;
    struct client c;
    struct gw_h2 *h2 = start(&c);
    nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "h"),
                       NV(":path", "/p"), NV("host", "given")};
    nghttp2_data_provider prd = {.source.ptr = (void *)"{\"a\":1}", .read_callback = body_src};
    int32_t id = nghttp2_submit_request(c.s, NULL, nv, sizeof nv / sizeof nv[0], &prd, NULL);
    exchange(&c, h2);
    assert_string_equal(rec.text, "POST /p HTTP/1.1\r\nhost: given\r\ncontent-length: 7\r\n\r\n{\"a\":1}");
    assert_int_equal(rec.received, 7);
    /* A 204 has no body whatever the head says. */
    static const char a[] = "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n";
    assert_int_equal(gw_h2_write(h2, id, a, sizeof a - 1), 0);
    exchange(&c, h2);
    assert_int_equal(c.status, 204);
    assert_int_equal(c.body_len, 0);
    assert_true(c.ended);
    finish(&c, h2);
}

static void test_limits(void **state) {
    (void)state;
    struct client c;
    struct gw_h2 *h2 = start(&c);
    char big[20000];
    memset(big, 'a', sizeof big);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h"),
                       NV(":path", "/"), {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof big, 0}};
    nghttp2_submit_request(c.s, NULL, nv, sizeof nv / sizeof nv[0], NULL, NULL);
    exchange(&c, h2);
    assert_int_equal(rec.status, 431);
    assert_string_equal(rec.message, "request headers are too large");
    /* Announced larger than max_body: refused from the head. */
    nghttp2_nv post[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "h"),
                         NV(":path", "/"), NV("content-length", "99999999")};
    rec.status = 0;
    nghttp2_submit_headers(c.s, NGHTTP2_FLAG_NONE, -1, NULL, post, sizeof post / sizeof post[0], NULL);
    exchange(&c, h2);
    assert_int_equal(rec.status, 413);
    finish(&c, h2);
}

static void test_reset_and_goaway(void **state) {
    (void)state;
    struct client c;
    struct gw_h2 *h2 = start(&c);
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h"), NV(":path", "/")};
    int32_t id = nghttp2_submit_request(c.s, NULL, nv, sizeof nv / sizeof nv[0], NULL, NULL);
    exchange(&c, h2);
    assert_int_equal(rec.opened, 1);
    nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    exchange(&c, h2);
    assert_int_equal(rec.closed, 1);
    assert_int_equal(rec.close_error, NGHTTP2_CANCEL);
    assert_int_equal(gw_h2_write(h2, id, "HTTP/1.1 200 OK\r\n\r\n", 19), GW_ERR); /* gone */
    gw_h2_shutdown(h2);
    exchange(&c, h2);
    assert_true(c.goaway);
    assert_int_equal(c.goaway_code, NGHTTP2_NO_ERROR);
    assert_true(gw_h2_done(h2));
    finish(&c, h2);
}

static void test_garbage(void **state) {
    (void)state;
    struct gw_h2 *h2 = gw_h2_new(&LIMITS, &OPS, NULL);
    static const char bad[] = GW_H2_PREFACE "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    gw_h2_feed(h2, bad, sizeof bad - 1);
    const char *out;
    ssize_t n, total = 0;
    int goaway = 0;
    while ((n = gw_h2_pull(h2, &out)) > 0) {
        for (ssize_t i = 0; i + 9 <= n; i++) /* a GOAWAY frame's header: type 7 on stream 0 */
            if (out[i + 3] == 7 && !out[i + 5] && !out[i + 6] && !out[i + 7] && !out[i + 8]) goaway = 1;
        total += n;
    }
    assert_true(total > 0);
    assert_true(goaway);
    assert_true(gw_h2_done(h2));
    gw_h2_free(h2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_answer),
        cmocka_unit_test(test_post_body_and_head),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_reset_and_goaway),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests_name("gw_h2", tests, NULL, NULL);
}
