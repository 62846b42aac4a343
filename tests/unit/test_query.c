/* Unit tests for gw_query.h: form/query parsing, percent-decoding and
 * UTF-8 validation. Bytes in, bytes out: no network, no Lua. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "base/query.h"

#define MAX_PAIRS 32
#define MAX_LEN 2048

/* Every pair the parser hands out, copied (they are valid only during the
 * callback), plus a call count and an optional stop point. */
struct pairs {
    int n;
    int calls;
    int stop_after; /* return GW_ERR on this call (1-based); 0: never */
    struct {
        char key[MAX_LEN];
        size_t klen;
        char val[MAX_LEN];
        size_t vlen;
    } p[MAX_PAIRS];
};

static int collect(void *ud, const char *key, size_t klen, const char *val, size_t vlen) {
    struct pairs *ps = ud;
    ps->calls++;
    assert_true(ps->n < MAX_PAIRS);
    assert_true(klen < MAX_LEN && vlen < MAX_LEN);
    memcpy(ps->p[ps->n].key, key, klen);
    ps->p[ps->n].klen = klen;
    memcpy(ps->p[ps->n].val, val, vlen);
    ps->p[ps->n].vlen = vlen;
    ps->n++;
    if (ps->stop_after && ps->calls == ps->stop_after) return GW_ERR;
    return GW_OK;
}

static struct pairs *parse(const char *s, size_t len, int expect_rc) {
    struct pairs *ps = calloc(1, sizeof *ps);
    assert_non_null(ps);
    assert_int_equal(gw_query_parse(s, len, collect, ps), expect_rc);
    return ps;
}

static struct pairs *parse_str(const char *s) { return parse(s, strlen(s), GW_OK); }

/* Pair i is exactly key=val (both compared by length, so embedded NULs and
 * trailing garbage are caught). */
static void check_pair_n(const struct pairs *ps, int i, const char *key, size_t klen,
                         const char *val, size_t vlen) {
    assert_true(i < ps->n);
    assert_int_equal(ps->p[i].klen, klen);
    assert_memory_equal(ps->p[i].key, key, klen);
    assert_int_equal(ps->p[i].vlen, vlen);
    if (vlen) assert_memory_equal(ps->p[i].val, val, vlen);
}

static void check_pair(const struct pairs *ps, int i, const char *key, const char *val) {
    check_pair_n(ps, i, key, strlen(key), val, strlen(val));
}

/* --- gw_query_parse ---------------------------------------------------- */

static void test_parse_pairs(void **state) {
    (void)state;
    struct pairs *ps = parse_str("a=1&bb=22&ccc=333");
    assert_int_equal(ps->n, 3);
    check_pair(ps, 0, "a", "1");
    check_pair(ps, 1, "bb", "22");
    check_pair(ps, 2, "ccc", "333");
    free(ps);
}

static void test_parse_empty_input(void **state) {
    (void)state;
    struct pairs *ps = parse("", 0, GW_OK);
    assert_int_equal(ps->calls, 0);
    free(ps);
    ps = parse_str("&&;;&");
    assert_int_equal(ps->calls, 0);
    free(ps);
}

static void test_parse_plus_is_space(void **state) {
    (void)state;
    struct pairs *ps = parse_str("q=hello+big+world&first+name=a+b");
    assert_int_equal(ps->n, 2);
    check_pair(ps, 0, "q", "hello big world");
    check_pair(ps, 1, "first name", "a b");
    free(ps);
    /* An encoded plus stays a plus. */
    ps = parse_str("sum=1%2B1%2b1");
    assert_int_equal(ps->n, 1);
    check_pair(ps, 0, "sum", "1+1+1");
    free(ps);
}

static void test_parse_percent_decoding(void **state) {
    (void)state;
    struct pairs *ps = parse_str("k%65y=%41%62%2f%2F&euro=%e2%82%AC&mix=%4a%4A%3d%26");
    assert_int_equal(ps->n, 3);
    check_pair(ps, 0, "key", "Ab//");
    check_pair(ps, 1, "euro", "\xe2\x82\xac");
    /* Decoded '=' and '&' are data, not separators. */
    check_pair(ps, 2, "mix", "JJ=&");
    free(ps);
}

static void test_parse_decoded_nul(void **state) {
    (void)state;
    struct pairs *ps = parse_str("a=x%00y");
    assert_int_equal(ps->n, 1);
    check_pair_n(ps, 0, "a", 1, "x\0y", 3);
    free(ps);
}

static void test_parse_invalid_escapes_kept(void **state) {
    (void)state;
    struct pairs *ps = parse_str("a=%zz&b=100%&c=%g1&d=%1g&%zz=1&e=%4");
    assert_int_equal(ps->n, 6);
    check_pair(ps, 0, "a", "%zz");
    check_pair(ps, 1, "b", "100%");
    check_pair(ps, 2, "c", "%g1");
    check_pair(ps, 3, "d", "%1g");
    check_pair(ps, 4, "%zz", "1");
    check_pair(ps, 5, "e", "%4");
    free(ps);
}

static void test_parse_trailing_partial_escape(void **state) {
    (void)state;
    /* Only 'len' bytes count: "a=%41" cut to 4 bytes ends in "%4". */
    struct pairs *ps = parse("a=%41", 4, GW_OK);
    assert_int_equal(ps->n, 1);
    check_pair(ps, 0, "a", "%4");
    free(ps);
    ps = parse_str("a=%");
    assert_int_equal(ps->n, 1);
    check_pair(ps, 0, "a", "%");
    free(ps);
}

static void test_parse_respects_len(void **state) {
    (void)state;
    struct pairs *ps = parse("a=1&b=2", 3, GW_OK);
    assert_int_equal(ps->n, 1);
    check_pair(ps, 0, "a", "1");
    free(ps);
}

static void test_parse_empty_pieces(void **state) {
    (void)state;
    struct pairs *ps = parse_str("a=1&&b=2");
    assert_int_equal(ps->n, 2);
    check_pair(ps, 0, "a", "1");
    check_pair(ps, 1, "b", "2");
    free(ps);
    ps = parse_str("&a=1&&&b=2&");
    assert_int_equal(ps->n, 2);
    check_pair(ps, 0, "a", "1");
    check_pair(ps, 1, "b", "2");
    free(ps);
}

static void test_parse_key_without_equals(void **state) {
    (void)state;
    struct pairs *ps = parse_str("flag&x=1&other");
    assert_int_equal(ps->n, 3);
    check_pair(ps, 0, "flag", "");
    check_pair(ps, 1, "x", "1");
    check_pair(ps, 2, "other", "");
    free(ps);
    ps = parse_str("a=&b");
    assert_int_equal(ps->n, 2);
    check_pair(ps, 0, "a", "");
    check_pair(ps, 1, "b", "");
    free(ps);
}

static void test_parse_value_with_equals(void **state) {
    (void)state;
    /* Split on the first '=' only. */
    struct pairs *ps = parse_str("expr=a=b==c");
    assert_int_equal(ps->n, 1);
    check_pair(ps, 0, "expr", "a=b==c");
    free(ps);
}

static void test_parse_semicolon_separator(void **state) {
    (void)state;
    struct pairs *ps = parse_str("a=1;b=2&c=3;;d");
    assert_int_equal(ps->n, 4);
    check_pair(ps, 0, "a", "1");
    check_pair(ps, 1, "b", "2");
    check_pair(ps, 2, "c", "3");
    check_pair(ps, 3, "d", "");
    free(ps);
}

static void test_parse_empty_key_skipped(void **state) {
    (void)state;
    struct pairs *ps = parse_str("=1&b=2&=&=x=y");
    assert_int_equal(ps->calls, 1);
    check_pair(ps, 0, "b", "2");
    free(ps);
}

static void test_parse_callback_stops(void **state) {
    (void)state;
    struct pairs *ps = calloc(1, sizeof *ps);
    assert_non_null(ps);
    ps->stop_after = 2;
    assert_int_equal(gw_query_parse("a=1&b=2&c=3&d=4", 15, collect, ps), GW_ERR);
    assert_int_equal(ps->calls, 2);
    check_pair(ps, 1, "b", "2");
    free(ps);

    ps = calloc(1, sizeof *ps);
    assert_non_null(ps);
    ps->stop_after = 1;
    assert_int_equal(gw_query_parse("a=1", 3, collect, ps), GW_ERR);
    assert_int_equal(ps->calls, 1);
    free(ps);
}

/* Longer than the 512-byte stack buffer, so the decoding buffer comes
 * from the heap; everything must still decode and nothing may spill. */
static void test_parse_long_input_heap_path(void **state) {
    (void)state;
    char *s = malloc(4096);
    char expect_v1[400], expect_v3[700];
    assert_non_null(s);
    size_t o = 0;
    memcpy(s + o, "long%20key=", 11);
    o += 11;
    for (int i = 0; i < 300; i++) { /* 900 bytes of escapes -> 300 bytes */
        o += (size_t)sprintf(s + o, "%%%02X", 'A' + i % 26);
        expect_v1[i] = (char)('A' + i % 26);
    }
    memcpy(s + o, "&short=x+y&plain=", 17);
    o += 17;
    for (int i = 0; i < 600; i++) {
        s[o++] = (char)('a' + i % 26);
        expect_v3[i] = (char)('a' + i % 26);
    }
    assert_true(o > 1500);

    struct pairs *ps = parse(s, o, GW_OK);
    assert_int_equal(ps->n, 3);
    check_pair_n(ps, 0, "long key", 8, expect_v1, 300);
    check_pair(ps, 1, "short", "x y");
    check_pair_n(ps, 2, "plain", 5, expect_v3, 600);
    free(ps);

    /* One single piece much longer than 512 with a key of its own size. */
    memset(s, 'k', 1000);
    s[1000] = '=';
    memset(s + 1001, 'v', 1000);
    ps = parse(s, 2001, GW_OK);
    assert_int_equal(ps->n, 1);
    assert_int_equal(ps->p[0].klen, 1000);
    assert_int_equal(ps->p[0].vlen, 1000);
    assert_int_equal(ps->p[0].key[999], 'k');
    assert_int_equal(ps->p[0].val[0], 'v');
    assert_int_equal(ps->p[0].val[999], 'v');
    free(ps);
    free(s);
}

/* Inputs right at the stack/heap boundary. */
static void test_parse_boundary_lengths(void **state) {
    (void)state;
    for (size_t len = 510; len <= 514; len++) {
        char *s = malloc(len);
        assert_non_null(s);
        s[0] = 'k';
        s[1] = '=';
        memset(s + 2, '+', len - 2);
        struct pairs *ps = parse(s, len, GW_OK);
        assert_int_equal(ps->n, 1);
        assert_int_equal(ps->p[0].vlen, len - 2);
        assert_int_equal(ps->p[0].val[0], ' ');
        assert_int_equal(ps->p[0].val[len - 3], ' ');
        free(ps);
        free(s);
    }
}

/* --- gw_url_decode ------------------------------------------------------ */

static void test_url_decode_plus(void **state) {
    (void)state;
    char out[64];
    const char *in = "a+b%20c%2B";
    size_t n = gw_url_decode(in, strlen(in), out, 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "a+b c+", 6);

    n = gw_url_decode(in, strlen(in), out, 1);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "a b c+", 6);
}

static void test_url_decode_hex_case(void **state) {
    (void)state;
    char out[64];
    const char *in = "%4a%4A%7e%7E%c3%A9%00";
    size_t n = gw_url_decode(in, strlen(in), out, 0);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "JJ~~\xc3\xa9\0", 7);
}

static void test_url_decode_invalid(void **state) {
    (void)state;
    char out[64];
    const char *in = "%zz%4%";
    size_t n = gw_url_decode(in, strlen(in), out, 1);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "%zz%4%", 6);

    /* A valid escape whose last digit lies beyond 'len' is kept. */
    n = gw_url_decode("x%41", 3, out, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "x%4", 3);

    n = gw_url_decode("", 0, out, 1);
    assert_int_equal(n, 0);
}

/* --- gw_utf8_valid ------------------------------------------------------ */

#define VALID(lit) assert_int_equal(gw_utf8_valid(lit, sizeof(lit) - 1), 1)
#define INVALID(lit) assert_int_equal(gw_utf8_valid(lit, sizeof(lit) - 1), 0)

static void test_utf8_valid(void **state) {
    (void)state;
    VALID("");
    VALID("hello, world");
    VALID("a\0b"); /* NUL is ASCII */
    VALID("\x7f");
    VALID("\xc2\x80");             /* U+0080, smallest 2-byte */
    VALID("caf\xc3\xa9");          /* é */
    VALID("\xdf\xbf");             /* U+07FF */
    VALID("\xe0\xa0\x80");         /* U+0800, smallest 3-byte */
    VALID("\xe2\x82\xac");         /* € */
    VALID("\xed\x9f\xbf");         /* U+D7FF, just below surrogates */
    VALID("\xee\x80\x80");         /* U+E000, just above surrogates */
    VALID("\xef\xbf\xbf");         /* U+FFFF */
    VALID("\xf0\x90\x80\x80");     /* U+10000, smallest 4-byte */
    VALID("\xf0\x9f\x98\x80");     /* 😀 */
    VALID("\xf4\x8f\xbf\xbf");     /* U+10FFFF, largest */
    VALID("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z");
}

static void test_utf8_overlong(void **state) {
    (void)state;
    INVALID("\xc0\xaf");           /* '/' in 2 bytes */
    INVALID("\xc1\xbf");
    INVALID("\xc0\x80");
    INVALID("\xe0\x80\xaf");       /* '/' in 3 bytes */
    INVALID("\xe0\x9f\xbf");       /* U+07FF in 3 bytes */
    INVALID("\xf0\x80\x80\xaf");   /* '/' in 4 bytes */
    INVALID("\xf0\x8f\xbf\xbf");   /* U+FFFF in 4 bytes */
}

static void test_utf8_surrogates_and_range(void **state) {
    (void)state;
    INVALID("\xed\xa0\x80");       /* U+D800 */
    INVALID("\xed\xbf\xbf");       /* U+DFFF */
    INVALID("a\xed\xb0\x80z");
    INVALID("\xf4\x90\x80\x80");   /* U+110000 */
    INVALID("\xf5\x80\x80\x80");
    INVALID("\xf8\x88\x80\x80\x80");
    INVALID("\xfe");
    INVALID("\xff");
}

static void test_utf8_truncated(void **state) {
    (void)state;
    INVALID("\xc3");
    INVALID("abc\xc3");
    INVALID("\xe2\x82");
    INVALID("abc\xe2");
    INVALID("\xf0\x9f\x98");
    INVALID("\xf0\x9f");
    INVALID("\xf0");
    /* A valid sequence cut short by 'len'. */
    assert_int_equal(gw_utf8_valid("\xe2\x82\xac", 2), 0);
    assert_int_equal(gw_utf8_valid("\xe2\x82\xac", 3), 1);
}

static void test_utf8_bad_continuation(void **state) {
    (void)state;
    INVALID("\x80");
    INVALID("a\xbf" "b");
    INVALID("\xc3\xa9\xa9");       /* one continuation too many */
    INVALID("\xe2\x28\xa1");       /* second byte is not a continuation */
    INVALID("\xe2\x82\x28");       /* third byte is not a continuation */
    INVALID("\xc3" "a");
    INVALID("\xf0\x9f\x98" "a");
}

/* Paths and URLs: '+' stays, a malformed escape fails. */
static void test_url_decode_strict(void **state) {
    (void)state;
    char out[64];
    long n = gw_url_decode_strict("/a%2Fb+c%41", 11, out);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "/a/b+cA", 7);
    n = gw_url_decode_strict("/x%00y", 6, out);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "/x\0y", 4);
    assert_int_equal(gw_url_decode_strict("/%zz", 4, out), -1);
    assert_int_equal(gw_url_decode_strict("/%4", 3, out), -1);
    assert_int_equal(gw_url_decode_strict("/%", 2, out), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_pairs),
        cmocka_unit_test(test_parse_empty_input),
        cmocka_unit_test(test_parse_plus_is_space),
        cmocka_unit_test(test_parse_percent_decoding),
        cmocka_unit_test(test_parse_decoded_nul),
        cmocka_unit_test(test_parse_invalid_escapes_kept),
        cmocka_unit_test(test_parse_trailing_partial_escape),
        cmocka_unit_test(test_parse_respects_len),
        cmocka_unit_test(test_parse_empty_pieces),
        cmocka_unit_test(test_parse_key_without_equals),
        cmocka_unit_test(test_parse_value_with_equals),
        cmocka_unit_test(test_parse_semicolon_separator),
        cmocka_unit_test(test_parse_empty_key_skipped),
        cmocka_unit_test(test_parse_callback_stops),
        cmocka_unit_test(test_parse_long_input_heap_path),
        cmocka_unit_test(test_parse_boundary_lengths),
        cmocka_unit_test(test_url_decode_plus),
        cmocka_unit_test(test_url_decode_hex_case),
        cmocka_unit_test(test_url_decode_invalid),
        cmocka_unit_test(test_url_decode_strict),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_overlong),
        cmocka_unit_test(test_utf8_surrogates_and_range),
        cmocka_unit_test(test_utf8_truncated),
        cmocka_unit_test(test_utf8_bad_continuation),
    };
    return cmocka_run_group_tests_name("gw_query", tests, NULL, NULL);
}
