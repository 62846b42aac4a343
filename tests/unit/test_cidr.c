/* Unit tests for base/cidr.h: address lists and the X-Forwarded-For walk.
 * Bytes in, answers out: no network, no Lua. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/cidr.h"
#include "base/gw.h"

static struct gw_cidr_list list_of(const char *const *entries) {
    struct gw_cidr_list l = {0};
    char err[160];
    for (; *entries; entries++) assert_int_equal(gw_cidr_add(&l, *entries, err, sizeof err), GW_OK);
    return l;
}

static int in(const struct gw_cidr_list *l, const char *ip) { return gw_cidr_match_text(l, ip, strlen(ip)); }

static void test_blocks_and_addresses(void **state) {
    (void)state;
    static const char *const e[] = {"10.0.0.0/8", "127.0.0.1", "fd00::/8", "::1", "192.168.1.128/25", NULL};
    struct gw_cidr_list l = list_of(e);
    assert_true(in(&l, "10.255.1.2"));
    assert_false(in(&l, "11.0.0.1"));
    assert_true(in(&l, "127.0.0.1"));
    assert_false(in(&l, "127.0.0.2"));
    assert_true(in(&l, "::ffff:127.0.0.1")); /* a dual-stack socket's spelling */
    assert_true(in(&l, "fdab::1"));
    assert_false(in(&l, "fe80::1"));
    assert_true(in(&l, "::1"));
    assert_true(in(&l, "192.168.1.200"));
    assert_false(in(&l, "192.168.1.127"));
    assert_false(in(&l, "not an address"));
    assert_false(in(&l, ""));
}

static void test_zero_prefix_matches_a_family(void **state) {
    (void)state;
    static const char *const e[] = {"0.0.0.0/0", NULL};
    struct gw_cidr_list l = list_of(e);
    assert_true(in(&l, "203.0.113.1"));
    assert_false(in(&l, "2001:db8::1")); /* an IPv4 block holds no IPv6 address */
}

static void test_bad_entries(void **state) {
    (void)state;
    struct gw_cidr_list l = {0};
    char err[160];
    assert_int_equal(gw_cidr_add(&l, "localhost", err, sizeof err), GW_ERR);
    assert_non_null(strstr(err, "not an IPv4 or IPv6 address"));
    assert_int_equal(gw_cidr_add(&l, "10.0.0.0/33", err, sizeof err), GW_ERR);
    assert_int_equal(gw_cidr_add(&l, "::/129", err, sizeof err), GW_ERR);
    assert_int_equal(gw_cidr_add(&l, "10.0.0.0/", err, sizeof err), GW_ERR);
    assert_int_equal(gw_cidr_add(&l, "10.0.0.0/8x", err, sizeof err), GW_ERR);
    assert_int_equal(l.n, 0);
    for (int i = 0; i < GW_CIDR_MAX; i++) assert_int_equal(gw_cidr_add(&l, "10.0.0.1", err, sizeof err), GW_OK);
    assert_int_equal(gw_cidr_add(&l, "10.0.0.1", err, sizeof err), GW_ERR);
}

static const char *walk(const struct gw_cidr_list *l, const char *xff, char *out) {
    size_t n;
    const char *p = gw_cidr_forwarded(l, xff, strlen(xff), &n);
    if (!p) return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void test_forwarded_walk(void **state) {
    (void)state;
    static const char *const e[] = {"10.0.0.0/8", "127.0.0.1", NULL};
    struct gw_cidr_list l = list_of(e);
    char out[64];
    assert_string_equal(walk(&l, "203.0.113.7", out), "203.0.113.7");
    assert_string_equal(walk(&l, "1.1.1.1, 203.0.113.7", out), "203.0.113.7");
    assert_string_equal(walk(&l, "1.1.1.1, 10.0.0.2", out), "1.1.1.1");
    assert_string_equal(walk(&l, " 1.1.1.1 ,10.0.0.2,  10.0.0.3 ", out), "1.1.1.1");
    assert_string_equal(walk(&l, "10.0.0.9, 10.0.0.2", out), "10.0.0.9");
    assert_string_equal(walk(&l, "x, 10.0.0.2", out), "10.0.0.2");
    assert_null(walk(&l, "1.1.1.1, x", out));
    assert_null(walk(&l, "", out));
    assert_null(walk(&l, " , ,", out));
    assert_string_equal(walk(&l, "1.1.1.1,,10.0.0.2", out), "1.1.1.1");
    assert_string_equal(walk(&l, "2001:db8::1", out), "2001:db8::1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_and_addresses),
        cmocka_unit_test(test_zero_prefix_matches_a_family),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_forwarded_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
