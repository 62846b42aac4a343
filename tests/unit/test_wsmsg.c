/* Unit tests for gw_wsmsg.h, WebSocket message assembly fed bytes as lws
 * hands them over: a frame in one chunk or in pieces, fragmented messages,
 * the binary flag of the first frame, maxMessageSize (1009) counted with
 * what is still to come of a frame, empty messages, and the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/wsmsg.h"

/* The messages delivered, in order. */
struct got {
    int count;
    char text[8][512];
    size_t len[8];
    int binary[8];
    const char *ptr[8];
};

static void record(void *ud, const char *msg, size_t len, int binary) {
    struct got *g = ud;
    assert_non_null(msg);
    assert_true(g->count < 8);
    assert_true(len < sizeof g->text[0]);
    memcpy(g->text[g->count], msg, len);
    g->len[g->count] = len;
    g->binary[g->count] = binary;
    g->ptr[g->count] = msg;
    g->count++;
}

struct fixture {
    struct gw_wsmsg m;
    struct got got;
};

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    gw_wsmsg_init(&f->m, 16, record, &f->got);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    gw_wsmsg_close(&f->m);
    free(f);
    return 0;
}

/* Feed a text chunk: 'last' ends the message, 'remaining' of its frame
 * is still to come. */
static int feed(struct fixture *f, const char *s, int binary, int last, size_t remaining) {
    return gw_wsmsg_feed(&f->m, s, strlen(s), binary, last, remaining);
}

static void test_one_chunk_is_not_copied(void **state) {
    struct fixture *f = *state;
    static const char in[] = "{\"action\":\"a\"}";
    assert_int_equal(gw_wsmsg_feed(&f->m, in, sizeof in - 1, 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 1);
    assert_ptr_equal(f->got.ptr[0], in);
    assert_int_equal(f->got.len[0], sizeof in - 1);
    assert_int_equal(f->got.binary[0], 0);
    assert_null(f->m.buf);
}

static void test_fragments_are_joined(void **state) {
    struct fixture *f = *state;
    /* Three fragments: a text frame without FIN, then continuations. */
    assert_int_equal(feed(f, "{\"act", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "ion\":", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 0);
    assert_int_equal(feed(f, "\"a\"}", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 1);
    assert_int_equal(f->got.len[0], 14);
    assert_memory_equal(f->got.text[0], "{\"action\":\"a\"}", 14);
    assert_int_equal(f->got.binary[0], 0);
    /* The next message starts afresh. */
    assert_int_equal(feed(f, "next", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 2);
    assert_int_equal(f->got.len[1], 4);
    assert_memory_equal(f->got.text[1], "next", 4);
}

/* lws may hand over one frame in several chunks (remaining > 0). */
static void test_frame_in_pieces(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "abc", 0, 0, 7), GW_WSMSG_OK);
    assert_int_equal(feed(f, "defg", 0, 0, 3), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 0);
    assert_int_equal(feed(f, "hij", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 1);
    assert_int_equal(f->got.len[0], 10);
    assert_memory_equal(f->got.text[0], "abcdefghij", 10);
}

/* The message's type is its first frame's: continuations do not change it. */
static void test_binary_flag_of_first_frame(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "bin", 1, 1, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "b1", 1, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "b2", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "t1", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "t2", 1, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 3);
    assert_int_equal(f->got.binary[0], 1);
    assert_int_equal(f->got.binary[1], 1);
    assert_memory_equal(f->got.text[1], "b1b2", 4);
    assert_int_equal(f->got.binary[2], 0);
    assert_memory_equal(f->got.text[2], "t1t2", 4);
}

static void test_empty_messages(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "", 0, 1, 0), GW_WSMSG_OK);
    /* Empty fragments around an empty message, and around text. */
    assert_int_equal(feed(f, "", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "x", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 3);
    assert_int_equal(f->got.len[0], 0);
    assert_int_equal(f->got.len[1], 0);
    assert_int_equal(f->got.len[2], 1);
    assert_memory_equal(f->got.text[2], "x", 1);
}

/* --- maxMessageSize (16 here) ------------------------------------------------- */

static void test_exactly_max(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "0123456789abcdef", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "01234567", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "89abcdef", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "0123", 0, 0, 12), GW_WSMSG_OK);
    assert_int_equal(feed(f, "456789abcdef", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->got.len[i], 16);
        assert_memory_equal(f->got.text[i], "0123456789abcdef", 16);
    }
    assert_true(f->m.cap <= 16); /* the buffer never grows past the limit */
}

static void test_one_frame_over_max(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "0123456789abcdefX", 0, 1, 0), GW_WSMSG_TOO_BIG);
    assert_int_equal(f->got.count, 0);
    assert_null(f->m.buf); /* refused before anything was copied */
}

/* A large frame is refused at its first chunk: what is still to come of
 * the frame counts. */
static void test_frame_refused_at_first_chunk(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "0123", 0, 0, 13), GW_WSMSG_TOO_BIG);
    assert_int_equal(f->got.count, 0);
    assert_null(f->m.buf);
    assert_int_equal(f->m.len, 0);
    /* Also in a later fragment of a message. */
    assert_int_equal(feed(f, "0123", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "45", 0, 0, 11), GW_WSMSG_TOO_BIG);
    assert_int_equal(f->got.count, 0);
}

static void test_fragments_over_max(void **state) {
    struct fixture *f = *state;
    assert_int_equal(feed(f, "01234567", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "89abcdef", 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(feed(f, "X", 0, 1, 0), GW_WSMSG_TOO_BIG);
    assert_int_equal(f->got.count, 0);
    /* Nothing of the refused message is left over. */
    assert_int_equal(feed(f, "ok", 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(f->got.count, 1);
    assert_int_equal(f->got.len[0], 2);
    assert_memory_equal(f->got.text[0], "ok", 2);
}

/* Many small fragments add up: the one that crosses max is refused, and
 * the buffer never grew past max; 'in_progress' tells a message is open
 * (what fragmentTimeout times) until it ends or is refused. */
static void test_many_small_fragments_over_max(void **state) {
    struct fixture *f = *state;
    assert_false(f->m.in_progress);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(feed(f, "ab", 0, 0, 0), GW_WSMSG_OK);
        assert_true(f->m.in_progress);
    }
    assert_int_equal(feed(f, "c", 0, 0, 0), GW_WSMSG_TOO_BIG);
    assert_false(f->m.in_progress);
    assert_true(f->m.cap <= 16);
    assert_int_equal(f->got.count, 0);
}

/* A large message's buffer is freed once it is delivered, so an idle
 * connection holds none; a small one is kept for the next message. */
struct sizes {
    int count;
    size_t last_len;
    int all_w;
};

static void count_big(void *ud, const char *msg, size_t len, int binary) {
    struct sizes *s = ud;
    (void)binary;
    s->count++;
    s->last_len = len;
    s->all_w = 1;
    for (size_t i = 0; i < len; i++)
        if (msg[i] != 'w') s->all_w = 0;
}

static void test_large_buffer_released(void **state) {
    (void)state;
    enum { BIG = 300000, PIECE = 4096 };
    char *big = malloc(BIG);
    assert_non_null(big);
    memset(big, 'w', BIG);
    struct sizes s = {0};
    struct gw_wsmsg m;
    gw_wsmsg_init(&m, 1 << 20, count_big, &s);
    for (size_t off = 0; off < BIG; off += PIECE) {
        size_t n = BIG - off < PIECE ? BIG - off : PIECE;
        assert_int_equal(gw_wsmsg_feed(&m, big + off, n, 0, off + n == BIG, 0), GW_WSMSG_OK);
    }
    assert_int_equal(s.count, 1);
    assert_int_equal(s.last_len, BIG);
    assert_true(s.all_w);
    assert_null(m.buf);
    assert_int_equal(m.cap, 0);
    /* A small fragmented message keeps its buffer. */
    assert_int_equal(gw_wsmsg_feed(&m, "ww", 2, 0, 0, 0), GW_WSMSG_OK);
    assert_int_equal(gw_wsmsg_feed(&m, "w", 1, 0, 1, 0), GW_WSMSG_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.last_len, 3);
    assert_non_null(m.buf);
    gw_wsmsg_close(&m);
    assert_null(m.buf);
    free(big);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_one_chunk_is_not_copied),
        T(test_fragments_are_joined),
        T(test_frame_in_pieces),
        T(test_binary_flag_of_first_frame),
        T(test_empty_messages),
        T(test_exactly_max),
        T(test_one_frame_over_max),
        T(test_frame_refused_at_first_chunk),
        T(test_fragments_over_max),
        T(test_many_small_fragments_over_max),
        cmocka_unit_test(test_large_buffer_released),
    };
    return cmocka_run_group_tests_name("gw_wsmsg", tests, NULL, NULL);
}
