/* Unit tests for gw_log.h: line formatting (text and JSON), level names.
 * Only gw_log_format is exercised, so nothing is written to stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/gw.h"
#include "base/log.h"

/* 2026-11-23T00:00:00Z plus 123 ms. */
#define T0 1795392000123.0
#define TS0 "2026-11-23T00:00:00.123Z"

#define FIELD(k, v) {k, v, sizeof(v) - 1, 0}

static char line[1024];

static const char *fmt(int level, const char *msg, const struct gw_log_field *f, int n) {
    memset(line, 'X', sizeof line);
    size_t len = gw_log_format(line, sizeof line, T0, level, msg, f, n);
    assert_int_equal(len, strlen(line));
    return line;
}

static int text_mode(void **state) {
    (void)state;
    gw_log_set_json(0);
    return 0;
}

static int json_mode(void **state) {
    (void)state;
    gw_log_set_json(1);
    return 0;
}

/* --- timestamps and levels ---------------------------------------------- */

static void test_timestamp_exact(void **state) {
    (void)state;
    char buf[128];
    gw_log_format(buf, sizeof buf, T0, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, TS0 " info m");

    /* 13:14:15.789 on the same day. */
    gw_log_format(buf, sizeof buf, 1795392000000.0 + 47655789.0, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "2026-11-23T13:14:15.789Z info m");

    gw_log_format(buf, sizeof buf, 0.0, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z info m");

    /* Milliseconds are truncated, never rounded up into the next second. */
    gw_log_format(buf, sizeof buf, 1795392000999.9, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "2026-11-23T00:00:00.999Z info m");

    /* Leading zeros in the milliseconds. */
    gw_log_format(buf, sizeof buf, 1795392000007.0, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "2026-11-23T00:00:00.007Z info m");

    /* A leap day. */
    gw_log_format(buf, sizeof buf, 951782400000.0 + 86399000.0 + 1.0, GW_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "2000-02-29T23:59:59.001Z info m");
}

static void test_level_names_text(void **state) {
    (void)state;
    static const char *names[] = {"debug", "info", "notice", "warning", "error", "crit"};
    char expect[128];
    for (int lvl = GW_LOG_DEBUG; lvl <= GW_LOG_CRIT; lvl++) {
        gw_fmt(expect, sizeof expect, "%s %s hi", TS0, names[lvl]);
        assert_string_equal(fmt(lvl, "hi", NULL, 0), expect);
        assert_string_equal(gw_log_level_name(lvl), names[lvl]);
    }
}

static void test_level_names_json(void **state) {
    (void)state;
    static const char *names[] = {"debug", "info", "notice", "warning", "error", "crit"};
    char expect[128];
    for (int lvl = GW_LOG_DEBUG; lvl <= GW_LOG_CRIT; lvl++) {
        gw_fmt(expect, sizeof expect, "{\"time\":\"%s\",\"level\":\"%s\"}", TS0, names[lvl]);
        assert_string_equal(fmt(lvl, NULL, NULL, 0), expect);
    }
}

static void test_level_parse(void **state) {
    (void)state;
    assert_int_equal(gw_log_level_parse("debug"), GW_LOG_DEBUG);
    assert_int_equal(gw_log_level_parse("info"), GW_LOG_INFO);
    assert_int_equal(gw_log_level_parse("notice"), GW_LOG_NOTICE);
    assert_int_equal(gw_log_level_parse("warning"), GW_LOG_WARNING);
    assert_int_equal(gw_log_level_parse("error"), GW_LOG_ERROR);
    assert_int_equal(gw_log_level_parse("crit"), GW_LOG_CRIT);
    assert_int_equal(gw_log_level_parse("warn"), -1);
    assert_int_equal(gw_log_level_parse("critical"), -1);
    assert_int_equal(gw_log_level_parse("info "), -1);
    assert_int_equal(gw_log_level_parse(""), -1);
    assert_int_equal(gw_log_level_parse("loud"), -1);
}

/* --- text format -------------------------------------------------------- */

static void test_text_message_present_absent(void **state) {
    (void)state;
    struct gw_log_field f[] = {FIELD("k", "v")};
    assert_string_equal(fmt(GW_LOG_INFO, "started", f, 1), TS0 " info started k=v");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, f, 1), TS0 " info k=v");
    assert_string_equal(fmt(GW_LOG_WARNING, NULL, NULL, 0), TS0 " warning");
}

static void test_text_fields_order(void **state) {
    (void)state;
    struct gw_log_field f[] = {FIELD("zeta", "1"), FIELD("alpha", "2"), FIELD("mid", "3")};
    assert_string_equal(fmt(GW_LOG_INFO, "m", f, 3), TS0 " info m zeta=1 alpha=2 mid=3");
    /* Only the first n. */
    assert_string_equal(fmt(GW_LOG_INFO, "m", f, 2), TS0 " info m zeta=1 alpha=2");
}

static void test_text_bare_values(void **state) {
    (void)state;
    struct gw_log_field f[] = {
        FIELD("path", "/api/status?x=1"), /* has '=': quoted */
        FIELD("ip", "127.0.0.1:5000"),
        FIELD("ms", "12.5"),
        FIELD("utf", "caf\xc3\xa9"),
    };
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[1], 3),
                        TS0 " info ip=127.0.0.1:5000 ms=12.5 utf=caf\xc3\xa9");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, f, 1), TS0 " info path=\"/api/status?x=1\"");
}

static void test_text_quoted_values(void **state) {
    (void)state;
    struct gw_log_field f[] = {
        FIELD("a", "hello world"),
        FIELD("b", "say \"hi\""),
        FIELD("c", "k=v"),
        FIELD("d", ""),
        FIELD("e", "line1\nline2"),
        FIELD("f", "tab\there"),
        FIELD("g", "back\\slash here"),
    };
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[0], 1), TS0 " info a=\"hello world\"");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[1], 1), TS0 " info b=\"say \\\"hi\\\"\"");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[2], 1), TS0 " info c=\"k=v\"");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[3], 1), TS0 " info d=\"\"");
    /* A newline must never split the line. */
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[4], 1), TS0 " info e=\"line1\\nline2\"");
    assert_null(strchr(line, '\n'));
    assert_null(strchr(fmt(GW_LOG_INFO, NULL, &f[5], 1), '\t'));
    assert_non_null(strstr(line, " f=\"tab\\"));
    assert_string_equal(fmt(GW_LOG_INFO, NULL, &f[6], 1), TS0 " info g=\"back\\\\slash here\"");
    /* All together, in order. */
    fmt(GW_LOG_INFO, "m", f, 4);
    assert_string_equal(line, TS0 " info m a=\"hello world\" b=\"say \\\"hi\\\"\" c=\"k=v\" d=\"\"");
}

static void test_text_value_len(void **state) {
    (void)state;
    /* value_len counts, not the NUL: a prefix, and bytes after a NUL. */
    struct gw_log_field f[] = {{"k", "abcdef", 3, 0}, {"z", "a\0b", 3, 0}};
    assert_string_equal(fmt(GW_LOG_INFO, NULL, f, 1), TS0 " info k=abc");
    fmt(GW_LOG_INFO, NULL, &f[1], 1);
    assert_string_equal(line, TS0 " info z=\"a\\u0000b\"");
}

/* --- JSON format -------------------------------------------------------- */

static void test_json_basic(void **state) {
    (void)state;
    struct gw_log_field f[] = {FIELD("zeta", "1"), FIELD("alpha", "two words"), FIELD("e", "")};
    assert_string_equal(fmt(GW_LOG_ERROR, "failed", f, 3),
                        "{\"time\":\"" TS0 "\",\"level\":\"error\",\"msg\":\"failed\","
                        "\"zeta\":\"1\",\"alpha\":\"two words\",\"e\":\"\"}");
    assert_string_equal(fmt(GW_LOG_INFO, NULL, f, 1),
                        "{\"time\":\"" TS0 "\",\"level\":\"info\",\"zeta\":\"1\"}");
    assert_null(strstr(line, "msg"));
}

/* Numbers and booleans (raw) are written as JSON literals, strings quoted. */
static void test_json_raw_values(void **state) {
    (void)state;
    struct gw_log_field f[] = {{"status", "200", 3, 1}, {"ms", "0.4", 3, 1}, {"ok", "true", 4, 1},
                               FIELD("s", "200")};
    assert_string_equal(fmt(GW_LOG_INFO, NULL, f, 4),
                        "{\"time\":\"" TS0 "\",\"level\":\"info\",\"status\":200,\"ms\":0.4,"
                        "\"ok\":true,\"s\":\"200\"}");
}

static void test_json_escaping(void **state) {
    (void)state;
    struct gw_log_field f[] = {
        FIELD("q", "say \"hi\""),
        FIELD("b", "C:\\dir\\"),
        FIELD("n", "a\nb"),
        FIELD("c", "\x01\x1f"),
        FIELD("u", "caf\xc3\xa9"),
    };
    fmt(GW_LOG_INFO, "he said \"x\"\\\n", f, 5);
    assert_string_equal(line, "{\"time\":\"" TS0 "\",\"level\":\"info\","
                              "\"msg\":\"he said \\\"x\\\"\\\\\\n\","
                              "\"q\":\"say \\\"hi\\\"\","
                              "\"b\":\"C:\\\\dir\\\\\","
                              "\"n\":\"a\\nb\","
                              "\"c\":\"\\u0001\\u001f\","
                              "\"u\":\"caf\xc3\xa9\"}");
    /* No raw control byte may be left in the line. */
    for (const char *p = line; *p; p++) assert_true((unsigned char)*p >= 0x20);
}

static void test_json_control_chars(void **state) {
    (void)state;
    /* Every control character comes out escaped, in some JSON form. */
    for (int c = 1; c < 0x20; c++) {
        char v[3] = {'a', (char)c, 'b'};
        struct gw_log_field f = {"k", v, 3, 0};
        fmt(GW_LOG_INFO, NULL, &f, 1);
        for (const char *p = line; *p; p++) assert_true((unsigned char)*p >= 0x20);
        assert_non_null(strstr(line, "\"k\":\"a\\"));
    }
    struct gw_log_field nul = {"k", "a\0b", 3, 0};
    fmt(GW_LOG_INFO, NULL, &nul, 1);
    assert_non_null(strstr(line, "\"k\":\"a\\u0000b\"}"));
}

static void test_json_key_escaping(void **state) {
    (void)state;
    struct gw_log_field f[] = {FIELD("we\"ird\\key", "v")};
    fmt(GW_LOG_INFO, NULL, f, 1);
    assert_non_null(strstr(line, ",\"we\\\"ird\\\\key\":\"v\"}"));
}

/* --- truncation --------------------------------------------------------- */

/* A line never spills past its buffer. Text: a prefix of the full line
 * until the cut, and never a raw newline. JSON: whenever the buffer holds
 * the time and level, the line is an object (the last byte is its '}', the
 * quotes balance), the fields that did not fit left out. */
static int quotes_balance(const char *s) {
    int open = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && open) {
            p++;
            continue;
        }
        if (*p == '"') open = !open;
    }
    return !open;
}

static void check_truncation(int json) {
    struct gw_log_field f[] = {FIELD("path", "/a b/c"), FIELD("n", "12345")};
    char full[512], buf[600];
    size_t full_len = gw_log_format(full, sizeof full, T0, GW_LOG_NOTICE, "truncate me", f, 2);
    assert_int_equal(full_len, strlen(full));
    assert_true(full_len > 40);

    for (size_t len = 1; len <= full_len + 2; len++) {
        memset(buf, 'X', sizeof buf);
        size_t n = gw_log_format(buf, len, T0, GW_LOG_NOTICE, "truncate me", f, 2);
        assert_true(n <= len - 1);
        assert_int_equal(buf[n], '\0');
        assert_int_equal(n, strlen(buf));
        /* Nothing written past the buffer. */
        for (size_t i = len; i < sizeof buf; i++) assert_int_equal(buf[i], 'X');
        if (len > full_len) assert_string_equal(buf, full);
        assert_null(strchr(buf, '\n'));
        if (json && len > 60) {
            assert_int_equal(buf[0], '{');
            assert_int_equal(buf[n - 1], '}');
            assert_true(quotes_balance(buf));
        }
    }
}

static void test_truncation_text(void **state) {
    (void)state;
    check_truncation(0);
}

static void test_truncation_json(void **state) {
    (void)state;
    check_truncation(1);
}

/* A huge value is cut inside its quotes: the line stays valid JSON and the
 * fields after it are still there. */
static void test_json_long_value_cut_inside(void **state) {
    (void)state;
    static char big[100000], buf[20000];
    memset(big, 'v', sizeof big);
    big[5000] = '"';
    big[6000] = '\n';
    memcpy(big + 4090, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8); /* é around the cut */
    struct gw_log_field f[] = {{"params", big, sizeof big, 0}, FIELD("status", "200")};
    size_t n = gw_log_format(buf, sizeof buf, T0, GW_LOG_INFO, "m", f, 2);
    assert_true(n < sizeof buf - 1);
    assert_int_equal(buf[n - 1], '}');
    assert_true(quotes_balance(buf));
    assert_non_null(strstr(buf, "...[truncated]\",\"status\":\"200\"}"));
    /* Not inside a UTF-8 sequence: what comes before the marker is whole. */
    const char *cut = strstr(buf, "...[truncated]");
    assert_true(((unsigned char)cut[-1] & 0xC0) != 0xC0);
    assert_true(((unsigned char)cut[-1] < 0x80) || (unsigned char)cut[-2] == 0xc3);
    for (const char *p = buf; *p; p++) assert_true((unsigned char)*p >= 0x20);
    /* A huge message too. */
    big[sizeof big - 1] = '\0';
    n = gw_log_format(buf, sizeof buf, T0, GW_LOG_INFO, big, f + 1, 1);
    assert_int_equal(buf[n - 1], '}');
    assert_true(quotes_balance(buf));
    assert_non_null(strstr(buf, "...[truncated]\",\"status\":\"200\"}"));
}

/* Text lines escape control characters (and DEL) in the message, the keys
 * and the values: a client cannot forge a line. */
static void test_text_escapes_everywhere(void **state) {
    (void)state;
    struct gw_log_field f[] = {FIELD("k\ney", "v\r\n2026-01-01T00:00:00.000Z error forged"),
                               FIELD("d", "a\x7f" "b"), FIELD("t", "a\tb")};
    fmt(GW_LOG_INFO, "msg\n2026-01-01T00:00:00.000Z error forged\x1b[31m\x7f", f, 3);
    assert_null(strchr(line, '\n'));
    assert_null(strchr(line, '\r'));
    for (const char *p = line; *p; p++) assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
    assert_string_equal(line, TS0 " info msg\\n2026-01-01T00:00:00.000Z error forged\\u001b[31m\\u007f"
                              " \"k\\ney\"=\"v\\r\\n2026-01-01T00:00:00.000Z error forged\""
                              " d=\"a\\u007fb\" t=\"a\\tb\"");
}
static void test_truncation_long_value(void **state) {
    (void)state;
    static char big[20000];
    char buf[256];
    memset(big, 'v', sizeof big);
    struct gw_log_field f = {"big", big, sizeof big, 0};
    memset(buf, 'X', sizeof buf);
    size_t n = gw_log_format(buf, 100, T0, GW_LOG_INFO, "m", &f, 1);
    assert_int_equal(n, 99);
    assert_int_equal(buf[99], '\0');
    assert_int_equal(buf[100], 'X');
    assert_int_equal(strlen(buf), 99);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_timestamp_exact, text_mode),
        cmocka_unit_test_setup(test_level_names_text, text_mode),
        cmocka_unit_test_setup_teardown(test_level_names_json, json_mode, text_mode),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup(test_text_message_present_absent, text_mode),
        cmocka_unit_test_setup(test_text_fields_order, text_mode),
        cmocka_unit_test_setup(test_text_bare_values, text_mode),
        cmocka_unit_test_setup(test_text_quoted_values, text_mode),
        cmocka_unit_test_setup(test_text_value_len, text_mode),
        cmocka_unit_test_setup_teardown(test_json_basic, json_mode, text_mode),
        cmocka_unit_test_setup_teardown(test_json_escaping, json_mode, text_mode),
        cmocka_unit_test_setup_teardown(test_json_control_chars, json_mode, text_mode),
        cmocka_unit_test_setup_teardown(test_json_key_escaping, json_mode, text_mode),
        cmocka_unit_test_setup(test_truncation_text, text_mode),
        cmocka_unit_test_setup_teardown(test_truncation_json, json_mode, text_mode),
        cmocka_unit_test_setup(test_truncation_long_value, text_mode),
        cmocka_unit_test_setup_teardown(test_json_long_value_cut_inside, json_mode, text_mode),
        cmocka_unit_test_setup(test_text_escapes_everywhere, text_mode),
        cmocka_unit_test_setup_teardown(test_json_raw_values, json_mode, text_mode),
    };
    return cmocka_run_group_tests_name("gw_log", tests, NULL, NULL);
}
