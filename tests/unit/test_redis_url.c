/* Unit tests for the redis.url parser of gw_redis.h, the URL as logs show
 * it (no password), and the commands the shared connection refuses.
 * Strings in, fields out: no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/gw.h"
#include "base/redis.h"

static char err[512];

static struct gw_redis_url ok(const char *url) {
    struct gw_redis_url u;
    err[0] = '\0';
    if (gw_redis_url_parse(url, &u, err, sizeof err) != GW_OK) fail_msg("%s: %s", url, err);
    return u;
}

/* Parsing fails, and the reason contains 'want'. */
static void bad(const char *url, const char *want) {
    struct gw_redis_url u;
    memset(&u, 0x55, sizeof u);
    struct gw_redis_url before = u;
    err[0] = '\0';
    assert_int_equal(gw_redis_url_parse(url, &u, err, sizeof err), GW_ERR);
    if (!strstr(err, want)) fail_msg("%s: reason \"%s\" lacks \"%s\"", url, err, want);
    assert_memory_equal(&u, &before, sizeof u); /* untouched on error */
}

static void test_tcp_full(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://127.0.0.1:6380/2");
    assert_int_equal(u.is_unix, 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
}

static void test_tcp_defaults(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://redis.local");
    assert_string_equal(u.host, "redis.local");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    u = ok("redis://redis.local/");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    u = ok("redis://h:1");
    assert_int_equal(u.port, 1);
    u = ok("redis://h:65535/15");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 15);
}

static void test_tcp_ipv6(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://[::1]:7000/3");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    u = ok("redis://[fe80::1]");
    assert_string_equal(u.host, "fe80::1");
    assert_int_equal(u.port, 6379);
}

static void test_password_only(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://:s3cret@127.0.0.1:6379/1");
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.db, 1);
}

static void test_user_and_password(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://alice:pw@h:6379/4");
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.db, 4);
}

/* The last '@' ends the password, so generated passwords with '@', ':'
 * or '/' work unescaped; escapes are decoded. */
static void test_password_special_characters(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://:a@b:c/d@h:1/0");
    assert_string_equal(u.password, "a@b:c/d");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 1);
    u = ok("redis://us%40er:p%3Fw%25@h");
    assert_string_equal(u.user, "us@er");
    assert_string_equal(u.password, "p?w%");
    bad("redis://:p%zz@h", "password");
    bad("redis://:p%4@h", "password");
    bad("redis://:p%00@h", "password"); /* a NUL would cut it short */
}

static void test_unix(void **state) {
    (void)state;
    struct gw_redis_url u = ok("unix:///tmp/redis.sock");
    assert_int_equal(u.is_unix, 1);
    assert_string_equal(u.path, "/tmp/redis.sock");
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");
    u = ok("unix:///var/run/redis/redis.sock?db=5");
    assert_string_equal(u.path, "/var/run/redis/redis.sock");
    assert_int_equal(u.db, 5);
    u = ok("unix:///r.sock?db=1&password=p%26w&user=bob");
    assert_int_equal(u.db, 1);
    assert_string_equal(u.password, "p&w");
    assert_string_equal(u.user, "bob");
    u = ok("unix:///r.sock?password=x");
    assert_string_equal(u.password, "x");
    assert_string_equal(u.user, "");
}

static void test_query_on_tcp(void **state) {
    (void)state;
    struct gw_redis_url u = ok("redis://h:1?db=7&password=z");
    assert_int_equal(u.db, 7);
    assert_string_equal(u.password, "z");
}

static void test_bad_scheme(void **state) {
    (void)state;
    bad("", "redis:// or unix://");
    bad("http://h", "redis:// or unix://");
    bad("127.0.0.1:6379", "redis:// or unix://");
    bad("rediss://h:6380", "TLS");
}

static void test_bad_tcp(void **state) {
    (void)state;
    bad("redis://", "no host");
    bad("redis://:6379/0", "no host");
    bad("redis://h:0", "port");
    bad("redis://h:65536", "port");
    bad("redis://h:x", "port");
    bad("redis://h:/0", "port");
    bad("redis://h/x", "database");
    bad("redis://h/-1", "database");
    bad("redis://h/1/2", "database");
    bad("redis://[::1", "']'");
    bad("redis://[::1]x", "after the host");
    bad("redis://pass@h", "colon");
    bad("redis://alice:@h", "password");
}

static void test_bad_unix(void **state) {
    (void)state;
    bad("unix://", "absolute");
    bad("unix://relative.sock", "absolute");
    bad("unix:///r.sock?db=x", "db");
    bad("unix:///r.sock?db=", "db");
    bad("unix:///r.sock?db", "needs a value");
    bad("unix:///r.sock?timeout=1", "unknown query parameter \"timeout\"");
    char path[200] = "unix:///";
    memset(path + 8, 'a', 120);
    path[128] = '\0';
    bad(path, "too long");
}

static void test_describe_hides_password(void **state) {
    (void)state;
    char buf[256];
    struct gw_redis_url u = ok("redis://alice:topsecret@h:6380/2");
    gw_redis_url_describe(&u, buf, sizeof buf);
    assert_string_equal(buf, "redis://alice:***@h:6380/2");
    u = ok("redis://:topsecret@[::1]");
    gw_redis_url_describe(&u, buf, sizeof buf);
    assert_string_equal(buf, "redis://:***@[::1]:6379/0");
    u = ok("redis://h");
    gw_redis_url_describe(&u, buf, sizeof buf);
    assert_string_equal(buf, "redis://h:6379/0");
    u = ok("unix:///r.sock?password=topsecret&db=3");
    gw_redis_url_describe(&u, buf, sizeof buf);
    assert_string_equal(buf, "unix:///r.sock?db=3&password=***");
}

static const char *refuses(int argc, const char **argv) {
    size_t lens[8];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    return gw_redis_refuses(argc, argv, lens);
}

static void test_refused_commands(void **state) {
    (void)state;
    const char *names[] = {"SUBSCRIBE", "psubscribe", "SSubscribe", "UNSUBSCRIBE", "MONITOR",
                           "MULTI", "exec", "WATCH", "SELECT", "AUTH", "HELLO", "QUIT", "RESET"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *argv[2] = {names[i], "x"};
        if (!refuses(2, argv)) fail_msg("%s must be refused", names[i]);
    }
    const char *client_reply[] = {"CLIENT", "reply", "off"};
    assert_non_null(refuses(3, client_reply));
    const char *fine[][2] = {{"GET", "k"}, {"EVAL", "return 1"}, {"CLIENT", "LIST"},
                             {"SUBSCRIBER", "x"}, {"SCRIPT", "LOAD"}, {"FUNCTION", "LIST"}};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        if (refuses(2, fine[i])) fail_msg("%s %s must be allowed", fine[i][0], fine[i][1]);
}

/* Refused unless redis.allowCommands names them: each class, any case,
 * with the command and the key in the reason; blocking ones only with a
 * zero timeout. */
static void test_dangerous_commands(void **state) {
    (void)state;
    const char *const cases[][6] = {
        {"FLUSHALL"}, {"flushdb", "ASYNC"}, {"CONFIG", "SET", "save", ""}, {"Shutdown", "NOSAVE"},
        {"DEBUG", "SLEEP", "1"}, {"CLIENT", "kill", "ID", "3"}, {"client", "PAUSE", "100"},
        {"WAIT", "1", "0"}, {"WAITAOF", "1", "0", "0"}, {"SCRIPT", "FLUSH"}, {"function", "flush"},
        {"BLPOP", "a", "b", "0"}, {"brpop", "a", "0.0"}, {"BRPOPLPUSH", "a", "b", "0"},
        {"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"}, {"BZPOPMIN", "z", "0"}, {"BZPOPMAX", "z", "00"},
        {"BLMPOP", "0", "1", "a", "LEFT"}, {"BZMPOP", "0", "1", "z", "MIN"},
        {"XREAD", "COUNT", "2", "block", "0", "STREAMS"}, {"XREADGROUP", "GROUP", "g", "c", "BLOCK", "0"},
    };
    const char *names[] = {"FLUSHALL", "FLUSHDB", "CONFIG", "SHUTDOWN", "DEBUG", "CLIENT KILL",
                           "CLIENT PAUSE", "WAIT", "WAITAOF", "SCRIPT FLUSH", "FUNCTION FLUSH",
                           "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "BLMPOP",
                           "BZMPOP", "XREAD", "XREADGROUP"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int argc = 0;
        while (argc < 6 && cases[i][argc]) argc++;
        const char *why = refuses(argc, (const char **)cases[i]);
        if (!why) fail_msg("%s must be refused", names[i]);
        char hint[128];
        snprintf(hint, sizeof hint, "name \"%s\" in redis.allowCommands", names[i]);
        if (!strstr(why, hint)) fail_msg("%s: the reason \"%s\" lacks '%s'", names[i], why, hint);
        int bit = gw_redis_allowable(names[i]);
        assert_true(bit >= 0);
        gw_redis_allow(1UL << bit);
        if (refuses(argc, (const char **)cases[i])) fail_msg("%s allowed by name is still refused", names[i]);
        gw_redis_allow(0);
    }
    /* Blocking with a timeout, XREAD without BLOCK 0 (a group named BLOCK
     * is not the option), other CLIENT subcommands: fine. */
    const char *const fine[][7] = {
        {"BLPOP", "a", "1"}, {"BRPOP", "a", "0.5"}, {"BLMPOP", "0.1", "1", "a", "LEFT"},
        {"XREAD", "BLOCK", "10", "STREAMS", "s", "$"}, {"XREAD", "STREAMS", "block", "0"},
        {"XREADGROUP", "GROUP", "BLOCK", "0", "STREAMS", "s", ">"}, {"CLIENT", "SETNAME", "x"},
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        int argc = 0;
        while (argc < 7 && fine[i][argc]) argc++;
        if (refuses(argc, (const char **)fine[i])) fail_msg("%s (case %zu) must be allowed", fine[i][0], i);
    }
    /* The always-refused ones cannot be allowed, and names are checked. */
    assert_int_equal(gw_redis_allowable("SUBSCRIBE"), -1);
    assert_int_equal(gw_redis_allowable("FLUSHBD"), -1);
    assert_true(gw_redis_allowable("client kill") >= 0);
    assert_non_null(strstr(gw_redis_allowable_names(), "FLUSHDB, CONFIG"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_full),
        cmocka_unit_test(test_tcp_defaults),
        cmocka_unit_test(test_tcp_ipv6),
        cmocka_unit_test(test_password_only),
        cmocka_unit_test(test_user_and_password),
        cmocka_unit_test(test_password_special_characters),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_query_on_tcp),
        cmocka_unit_test(test_bad_scheme),
        cmocka_unit_test(test_bad_tcp),
        cmocka_unit_test(test_bad_unix),
        cmocka_unit_test(test_describe_hides_password),
        cmocka_unit_test(test_refused_commands),
        cmocka_unit_test(test_dangerous_commands),
    };
    return cmocka_run_group_tests_name("gw_redis url", tests, NULL, NULL);
}
