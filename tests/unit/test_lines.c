/* Unit tests for gw_lines.h, the TCP transport's line framing, fed bytes:
 * "\n" and "\r\n", empty lines, lines split across reads at every byte,
 * many lines in one read, NUL bytes, maxLineLength (413 once, then the
 * rest of the line dropped), a line exactly at the limit, and stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/lines.h"

#define TOO_LONG "<413>"

/* What the callback saw: every line (or TOO_LONG) in order, as one string
 * with each event followed by '|', and the count. */
struct events {
    char text[1 << 20];
    size_t len;
    int count;
    int stop_after; /* return non-zero from this event on (0: never) */
};

static int record(void *ud, const char *line, size_t len) {
    struct events *e = ud;
    if (!line) {
        assert_int_equal(len, 0);
        line = TOO_LONG;
        len = strlen(TOO_LONG);
    } else {
        assert_true(len > 0); /* empty lines are never reported */
    }
    assert_true(e->len + len + 1 < sizeof e->text);
    memcpy(e->text + e->len, line, len);
    e->len += len;
    e->text[e->len++] = '|';
    e->text[e->len] = '\0';
    e->count++;
    return e->stop_after && e->count >= e->stop_after;
}

static struct events *events_new(void) {
    struct events *e = calloc(1, sizeof *e);
    assert_non_null(e);
    return e;
}

/* Feed 'in' whole to a fresh reader with limit 'max'; return what it saw. */
static void feed_whole(size_t max, const char *in, size_t n, struct events *e) {
    struct gw_lines r;
    gw_lines_init(&r, max, record, e);
    assert_int_equal(gw_lines_feed(&r, in, n), 0);
    gw_lines_close(&r);
}

/* Feed 'in' to a fresh reader in pieces cut at the offsets in 'cuts'
 * (ascending, 'ncuts' of them). */
static void feed_cut(size_t max, const char *in, size_t n, const size_t *cuts, int ncuts,
                     struct events *e) {
    struct gw_lines r;
    size_t from = 0;
    gw_lines_init(&r, max, record, e);
    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        /* A copy of just this piece, so a reader that kept a pointer into
         * an earlier piece would read freed memory under ASan. */
        char *piece = malloc(to - from + 1);
        assert_non_null(piece);
        memcpy(piece, in + from, to - from);
        assert_int_equal(gw_lines_feed(&r, piece, to - from), 0);
        free(piece);
        from = to;
    }
    gw_lines_close(&r);
}

/* 'in' gives exactly 'want' (events joined as in struct events) however
 * it is cut: whole, at every single position, at every pair of positions,
 * and one byte at a time. */
static void assert_lines(size_t max, const char *in, size_t n, const char *want) {
    struct events *e = events_new();
    feed_whole(max, in, n, e);
    if (strcmp(e->text, want) != 0) fail_msg("whole: got \"%s\", want \"%s\"", e->text, want);
    for (size_t i = 0; i <= n; i++) {
        memset(e, 0, sizeof *e);
        size_t cut[1] = {i};
        feed_cut(max, in, n, cut, 1, e);
        if (strcmp(e->text, want) != 0)
            fail_msg("cut at %zu: got \"%s\", want \"%s\"", i, e->text, want);
        for (size_t j = i; j <= n && n <= 64; j++) {
            memset(e, 0, sizeof *e);
            size_t cuts[2] = {i, j};
            feed_cut(max, in, n, cuts, 2, e);
            if (strcmp(e->text, want) != 0)
                fail_msg("cut at %zu and %zu: got \"%s\", want \"%s\"", i, j, e->text, want);
        }
    }
    memset(e, 0, sizeof *e);
    struct gw_lines r;
    gw_lines_init(&r, max, record, e);
    for (size_t i = 0; i < n; i++) assert_int_equal(gw_lines_feed(&r, in + i, 1), 0);
    gw_lines_close(&r);
    if (strcmp(e->text, want) != 0) fail_msg("byte by byte: got \"%s\", want \"%s\"", e->text, want);
    free(e);
}

#define LINES(max, in, want) assert_lines((max), (in), sizeof(in) - 1, (want))

/* --- framing --------------------------------------------------------------- */

static void test_lf_and_crlf(void **state) {
    (void)state;
    LINES(100, "one\n", "one|");
    LINES(100, "one\r\n", "one|");
    LINES(100, "one\ntwo\r\nthree\n", "one|two|three|");
    /* Only the "\r" just before "\n" belongs to the terminator. */
    LINES(100, "a\rb\r\n", "a\rb|");
    LINES(100, "a\r\r\n", "a\r|");
    LINES(100, "\ra\n", "\ra|");
}

static void test_unterminated_line_waits(void **state) {
    (void)state;
    LINES(100, "no end yet", "");
    LINES(100, "done\npartial", "done|");
    LINES(100, "done\npartial\r", "done|");
    /* The rest arrives later, in the same reader. */
    struct events *e = events_new();
    struct gw_lines r;
    gw_lines_init(&r, 100, record, e);
    gw_lines_feed(&r, "par", 3);
    gw_lines_feed(&r, "tial", 4);
    assert_int_equal(e->count, 0);
    gw_lines_feed(&r, "\r", 1);
    assert_int_equal(e->count, 0);
    gw_lines_feed(&r, "\nnext", 5);
    assert_string_equal(e->text, "partial|");
    gw_lines_close(&r);
    free(e);
}

static void test_empty_lines_are_skipped(void **state) {
    (void)state;
    LINES(100, "\n", "");
    LINES(100, "\r\n", "");
    LINES(100, "\n\r\n\n\r\n", "");
    LINES(100, "a\n\nb\r\n\r\nc\n", "a|b|c|");
    LINES(100, "\n\nlast\n", "last|");
}

static void test_split_at_every_byte(void **state) {
    (void)state;
    LINES(100, "{\"action\":\"randomNumber\"}\r\nparamAdd a=1\n\ndetailsView\r\n",
          "{\"action\":\"randomNumber\"}|paramAdd a=1|detailsView|");
}

static void test_many_lines_in_one_read(void **state) {
    (void)state;
    enum { N = 5000 };
    char *in = malloc(N * 16), *want = malloc(N * 16);
    size_t n = 0, w = 0;
    assert_non_null(in);
    assert_non_null(want);
    for (int i = 0; i < N; i++) {
        n += (size_t)sprintf(in + n, i % 2 ? "line %d\r\n" : "line %d\n", i);
        w += (size_t)sprintf(want + w, "line %d|", i);
    }
    struct events *e = events_new();
    feed_whole(100, in, n, e);
    assert_int_equal(e->count, N);
    assert_string_equal(e->text, want);
    free(e);
    free(in);
    free(want);
}

/* A line that arrives whole in one read is handed over from the read
 * buffer itself, not copied. */
static const char *seen_ptr;
static int remember_ptr(void *ud, const char *line, size_t len) {
    (void)ud, (void)len;
    seen_ptr = line;
    return 0;
}

static void test_whole_line_is_not_copied(void **state) {
    (void)state;
    static const char in[] = "xx\nhello\n";
    struct gw_lines r;
    gw_lines_init(&r, 100, remember_ptr, NULL);
    gw_lines_feed(&r, in, sizeof in - 1);
    assert_ptr_equal(seen_ptr, in + 3);
    assert_null(r.buf); /* nothing was collected */
    gw_lines_close(&r);
}

static void test_nul_bytes(void **state) {
    (void)state;
    static const char in[] = "a\0b\n\0\n\0\0\r\n";
    struct events *e = events_new();
    feed_whole(100, in, sizeof in - 1, e);
    assert_int_equal(e->count, 3);
    assert_int_equal(e->len, 4 + 2 + 3);
    assert_memory_equal(e->text, "a\0b|\0|\0\0|", e->len);
    /* The same, split at every byte. */
    for (size_t i = 0; i <= sizeof in - 1; i++) {
        memset(e, 0, sizeof *e);
        size_t cut[1] = {i};
        feed_cut(100, in, sizeof in - 1, cut, 1, e);
        assert_int_equal(e->count, 3);
        assert_int_equal(e->len, 9);
        assert_memory_equal(e->text, "a\0b|\0|\0\0|", e->len);
    }
    free(e);
}

/* --- maxLineLength ---------------------------------------------------------- */

static void test_line_at_the_limit(void **state) {
    (void)state;
    /* The limit counts the line without its terminator. */
    LINES(8, "12345678\n", "12345678|");
    LINES(8, "12345678\r\n", "12345678|");
    LINES(8, "1234567\r\n", "1234567|");
    LINES(8, "12345678\n12345678\r\n", "12345678|12345678|");
}

static void test_line_over_the_limit(void **state) {
    (void)state;
    LINES(8, "123456789\n", TOO_LONG "|");
    LINES(8, "123456789\r\n", TOO_LONG "|");
    LINES(8, "12345678\r\r\n", TOO_LONG "|");
    /* One 413 per long line, and the lines around it are kept. */
    LINES(8, "ok\n123456789abcdef\nok2\r\n", "ok|" TOO_LONG "|ok2|");
    LINES(8, "123456789\n123456789\r\nend\n", TOO_LONG "|" TOO_LONG "|end|");
    /* A long line that has not ended yet is refused already. */
    LINES(8, "123456789", TOO_LONG "|");
    LINES(1, "12\nx\n", TOO_LONG "|x|");
}

/* 413 as soon as the line is known to be too long; what follows up to the
 * newline is dropped, however much it is; then lines work again. */
static void test_long_line_dropped_until_newline(void **state) {
    (void)state;
    struct events *e = events_new();
    struct gw_lines r;
    gw_lines_init(&r, 16, record, e);
    gw_lines_feed(&r, "paramAdd b=yyyy", 15);
    assert_int_equal(e->count, 0);
    gw_lines_feed(&r, "yy", 2);
    assert_string_equal(e->text, TOO_LONG "|");
    char junk[4096];
    memset(junk, 'z', sizeof junk);
    for (int i = 0; i < 100; i++) gw_lines_feed(&r, junk, sizeof junk);
    assert_int_equal(e->count, 1);
    assert_int_equal(r.len, 0); /* nothing of the dropped line is kept */
    assert_true(r.cap <= 17);
    gw_lines_feed(&r, "zz\nparamView b\r\n", 17);
    assert_string_equal(e->text, TOO_LONG "|paramView b|");
    gw_lines_close(&r);
    free(e);
}

/* A split line never makes the buffer larger than the limit allows. */
static void test_buffer_bounded(void **state) {
    (void)state;
    struct events *e = events_new();
    struct gw_lines r;
    gw_lines_init(&r, 1000, record, e);
    for (int i = 0; i < 1000; i++) gw_lines_feed(&r, "x", 1);
    assert_int_equal(e->count, 0);
    assert_true(r.cap <= 1001);
    gw_lines_feed(&r, "\n", 1);
    assert_int_equal(e->count, 1);
    assert_int_equal(e->len, 1001);
    gw_lines_close(&r);
    free(e);
}

/* After a large split line the buffer is freed, so an idle client holds
 * none; a small one is kept for the next line. */
static void test_large_buffer_released(void **state) {
    (void)state;
    enum { BIG = 200000 };
    char *big = malloc(BIG);
    assert_non_null(big);
    memset(big, 'b', BIG);
    struct events *e = events_new();
    struct gw_lines r;
    gw_lines_init(&r, 1 << 20, record, e);
    gw_lines_feed(&r, big, BIG);
    assert_true(r.cap >= BIG);
    gw_lines_feed(&r, "b\n", 2);
    assert_int_equal(e->count, 1);
    assert_int_equal(e->len, BIG + 2);
    assert_null(r.buf);
    assert_int_equal(r.cap, 0);
    gw_lines_feed(&r, "sm", 2);
    gw_lines_feed(&r, "all\n", 4);
    assert_non_null(r.buf);
    assert_memory_equal(e->text + BIG + 2, "small|", 6);
    gw_lines_close(&r);
    assert_null(r.buf);
    free(e);
    free(big);
}

/* --- a pending line, for lineTimeout ------------------------------------------ */

/* gw_lines_pending tells whether what was fed ends inside a line, and
 * 'ends' counts newlines, so a transport can tell a line that began in the
 * last feed from one that goes on. */
static void test_pending_and_ends(void **state) {
    (void)state;
    struct events *e = events_new();
    struct gw_lines r;
    gw_lines_init(&r, 8, record, e);
    assert_false(gw_lines_pending(&r));
    gw_lines_feed(&r, "ab", 2);
    assert_true(gw_lines_pending(&r));
    assert_int_equal(r.ends, 0);
    gw_lines_feed(&r, "c\nd", 3);
    assert_true(gw_lines_pending(&r)); /* "d" began in this feed */
    assert_int_equal(r.ends, 1);
    gw_lines_feed(&r, "\n\r\n", 3);
    assert_false(gw_lines_pending(&r));
    assert_int_equal(r.ends, 3); /* empty lines end too */
    /* A line too long, being dropped, is still pending until its newline. */
    gw_lines_feed(&r, "123456789012", 12);
    assert_true(gw_lines_pending(&r));
    gw_lines_feed(&r, "zzz", 3);
    assert_true(gw_lines_pending(&r));
    assert_int_equal(r.ends, 3);
    gw_lines_feed(&r, "z\n", 2);
    assert_false(gw_lines_pending(&r));
    assert_int_equal(r.ends, 4);
    assert_string_equal(e->text, "abc|d|" TOO_LONG "|");
    gw_lines_close(&r);
    free(e);
}

/* --- stopping ------------------------------------------------------------------ */

static void test_callback_stops(void **state) {
    (void)state;
    struct events *e = events_new();
    struct gw_lines r;
    e->stop_after = 2;
    gw_lines_init(&r, 8, record, e);
    assert_int_equal(gw_lines_feed(&r, "a\nb\nc\n", 6), 1);
    assert_string_equal(e->text, "a|b|");
    gw_lines_close(&r);

    /* Stopping at a 413 drops the rest too. */
    memset(e, 0, sizeof *e);
    e->stop_after = 1;
    gw_lines_init(&r, 4, record, e);
    assert_int_equal(gw_lines_feed(&r, "123456\nx\n", 9), 1);
    assert_string_equal(e->text, TOO_LONG "|");
    gw_lines_close(&r);

    /* A split line that stops. */
    memset(e, 0, sizeof *e);
    e->stop_after = 1;
    gw_lines_init(&r, 8, record, e);
    assert_int_equal(gw_lines_feed(&r, "ab", 2), 0);
    assert_int_equal(gw_lines_feed(&r, "c\nd\n", 4), 1);
    assert_string_equal(e->text, "abc|");
    gw_lines_close(&r);
    free(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_and_crlf),
        cmocka_unit_test(test_unterminated_line_waits),
        cmocka_unit_test(test_empty_lines_are_skipped),
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_many_lines_in_one_read),
        cmocka_unit_test(test_whole_line_is_not_copied),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_line_at_the_limit),
        cmocka_unit_test(test_line_over_the_limit),
        cmocka_unit_test(test_long_line_dropped_until_newline),
        cmocka_unit_test(test_buffer_bounded),
        cmocka_unit_test(test_large_buffer_released),
        cmocka_unit_test(test_pending_and_ends),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests_name("gw_lines", tests, NULL, NULL);
}
