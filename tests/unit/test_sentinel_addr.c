/* Unit tests for the redis.sentinels address parser of base/sentinel.h
 * and the address as logs show it. Strings in, fields out: no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/gw.h"
#include "base/sentinel.h"

static char err[512];

static struct gw_sentinel_addr ok(const char *s) {
    struct gw_sentinel_addr a;
    err[0] = '\0';
    if (gw_sentinel_addr_parse(s, &a, err, sizeof err) != GW_OK) fail_msg("%s: %s", s, err);
    return a;
}

/* Parsing fails, the reason contains 'want', and 'out' is untouched. */
static void bad(const char *s, const char *want) {
    struct gw_sentinel_addr a, before;
    memset(&a, 0x55, sizeof a);
    before = a;
    err[0] = '\0';
    assert_int_equal(gw_sentinel_addr_parse(s, &a, err, sizeof err), GW_ERR);
    if (!strstr(err, want)) fail_msg("%s: reason \"%s\" lacks \"%s\"", s, err, want);
    assert_memory_equal(&a, &before, sizeof a);
}

static void describes(const char *s, const char *want) {
    char buf[400];
    struct gw_sentinel_addr a = ok(s);
    gw_sentinel_addr_describe(&a, buf, sizeof buf);
    assert_string_equal(buf, want);
}

static void test_forms(void **state) {
    (void)state;
    struct gw_sentinel_addr a = ok("127.0.0.1:26380");
    assert_int_equal(a.is_unix, 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 26380);
    a = ok("sentinel-1.local");
    assert_string_equal(a.host, "sentinel-1.local");
    assert_int_equal(a.port, GW_SENTINEL_PORT);
    a = ok("[::1]:1");
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 1);
    a = ok("[fe80::1]");
    assert_int_equal(a.port, GW_SENTINEL_PORT);
    a = ok("/run/redis/sentinel.sock");
    assert_int_equal(a.is_unix, 1);
    assert_string_equal(a.path, "/run/redis/sentinel.sock");
    describes("10.0.0.1:65535", "10.0.0.1:65535");
    describes("h", "h:26379");
    describes("[::1]:26379", "[::1]:26379");
    describes("/tmp/s.sock", "/tmp/s.sock");
}

static void test_bad(void **state) {
    (void)state;
    bad("", "no host");
    bad(":26379", "no host");
    bad("h:", "the port must be a number from 1 to 65535");
    bad("h:0", "the port must be");
    bad("h:65536", "the port must be");
    bad("h:123456", "the port must be");
    bad("h:-1", "the port must be");
    bad("h:26379x", "the port must be");
    bad("h:1:2", "the port must be");
    bad("[::1:26379", "missing ']'");
    bad("[::1]x", "unexpected text after the host");
    bad("redis://h:26379", "the port must be"); /* a URL is not an address */
    bad("a b:1", "not a host name or address");
    bad("user@h:1", "not a host name or address");
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    bad(longpath, "the socket path is too long");
    char longhost[300];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    bad(longhost, "host name too long");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests_name("gw_sentinel addresses", tests, NULL, NULL);
}
