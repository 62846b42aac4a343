/* Unit tests for gw_regex.h: the compiled-pattern cache, flags, matching
 * with offsets, named groups and invalid UTF-8 subjects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "base/regex.h"

static char err[512];

static const struct gw_regex *get(const char *pattern, const char *flags) {
    err[0] = '\0';
    const struct gw_regex *re = gw_regex_get(pattern, strlen(pattern), flags, err, sizeof err);
    assert_non_null(re);
    assert_non_null(re->code);
    assert_non_null(re->md);
    return re;
}

/* Match count for 'subject' from 'offset' (0 = no match). */
static int exec(const struct gw_regex *re, const char *subject, size_t offset, PCRE2_SIZE **ov) {
    PCRE2_SIZE *dummy = NULL;
    return gw_regex_exec(re, subject, strlen(subject), offset, ov ? ov : &dummy);
}

static int matches(const char *pattern, const char *flags, const char *subject) {
    int rc = exec(get(pattern, flags), subject, 0, NULL);
    assert_true(rc >= 0);
    return rc > 0;
}

static int teardown(void **state) {
    (void)state;
    gw_regex_cache_clear();
    return 0;
}

/* --- the cache ----------------------------------------------------------- */

static void test_cache_same_pointer(void **state) {
    (void)state;
    const struct gw_regex *a = get("a+b", NULL);
    const struct gw_regex *b = get("a+b", NULL);
    assert_ptr_equal(a, b);
    /* Same bytes from another buffer: the key is the content. */
    char copy[] = "a+b";
    assert_ptr_equal(gw_regex_get(copy, 3, NULL, err, sizeof err), a);

    const struct gw_regex *ci = get("a+b", "i");
    assert_ptr_not_equal(ci, a);
    assert_ptr_equal(get("a+b", "i"), ci);
    const struct gw_regex *cm = get("a+b", "m");
    assert_ptr_not_equal(cm, a);
    assert_ptr_not_equal(cm, ci);
    const struct gw_regex *cim = get("a+b", "im");
    assert_ptr_not_equal(cim, ci);
    assert_ptr_not_equal(cim, cm);

    const struct gw_regex *other = get("a+c", NULL);
    assert_ptr_not_equal(other, a);
    /* And the earlier entries still work after more were added. */
    assert_int_equal(exec(a, "xaab", 0, NULL), 1);
    assert_int_equal(exec(ci, "XAAB", 0, NULL), 1);
}

static void test_cache_uses_len(void **state) {
    (void)state;
    /* Only 'len' bytes of the pattern count. */
    const struct gw_regex *abc = gw_regex_get("abcdef", 3, NULL, err, sizeof err);
    assert_non_null(abc);
    const struct gw_regex *all = gw_regex_get("abcdef", 6, NULL, err, sizeof err);
    assert_non_null(all);
    assert_ptr_not_equal(abc, all);
    assert_int_equal(exec(abc, "xxabcxx", 0, NULL), 1);
    assert_int_equal(exec(all, "xxabcxx", 0, NULL), 0);

    /* A pattern with a NUL byte in it. */
    const struct gw_regex *nul = gw_regex_get("a\0b", 3, NULL, err, sizeof err);
    assert_non_null(nul);
    assert_ptr_not_equal(nul, gw_regex_get("a", 1, NULL, err, sizeof err));
    PCRE2_SIZE *ov;
    assert_int_equal(gw_regex_exec(nul, "xa\0b", 4, 0, &ov), 1);
    assert_int_equal(ov[0], 1);
    assert_int_equal(ov[1], 4);
    assert_int_equal(gw_regex_exec(nul, "xab", 3, 0, &ov), 0);
}

static void test_cache_long_pattern(void **state) {
    (void)state;
    /* Longer than the 256-byte stack key. */
    char pat[1024];
    for (int i = 0; i < 100; i++) memcpy(pat + 5 * i, "(?:x)", 5);
    pat[500] = '\0';
    assert_true(strlen(pat) > 300);
    const struct gw_regex *a = get(pat, "i");
    assert_ptr_equal(get(pat, "i"), a);
    char subject[200];
    memset(subject, 'X', 150);
    subject[150] = '\0';
    assert_int_equal(exec(a, subject, 0, NULL), 1);
    subject[50] = 'y'; /* no run of 100 left */
    assert_int_equal(exec(a, subject, 0, NULL), 0);
}

static void test_bad_pattern(void **state) {
    (void)state;
    err[0] = '\0';
    const struct gw_regex *re = gw_regex_get("ab(cd", 5, NULL, err, sizeof err);
    assert_null(re);
    assert_non_null(strstr(err, "ab(cd"));
    assert_non_null(strstr(err, "offset"));
    assert_non_null(strstr(err, "offset 5"));

    /* Not cached as a failure either: the second call fails the same way. */
    err[0] = '\0';
    assert_null(gw_regex_get("ab(cd", 5, NULL, err, sizeof err));
    assert_non_null(strstr(err, "ab(cd"));

    err[0] = '\0';
    assert_null(gw_regex_get("x{2,1}", 6, "i", err, sizeof err));
    assert_non_null(strstr(err, "x{2,1}"));
    assert_non_null(strstr(err, "offset"));

    /* A small error buffer is not overrun. */
    char small[16];
    memset(small, 'Z', sizeof small);
    assert_null(gw_regex_get("ab(cd", 5, NULL, small, 8));
    assert_int_equal(strlen(small), 7);
    assert_int_equal(small[8], 'Z');
}

static void test_unknown_flag(void **state) {
    (void)state;
    err[0] = '\0';
    assert_null(gw_regex_get("abc", 3, "iq", err, sizeof err));
    assert_true(err[0] != '\0');
    assert_non_null(strstr(err, "flag"));
    assert_non_null(strstr(err, "q"));
    err[0] = '\0';
    assert_null(gw_regex_get("abc", 3, "g", err, sizeof err));
    assert_non_null(strstr(err, "'g'"));
}

/* --- flags --------------------------------------------------------------- */

static void test_flag_i(void **state) {
    (void)state;
    assert_false(matches("abc", NULL, "xABCx"));
    assert_true(matches("abc", "i", "xABCx"));
    /* Caseless works on non-ASCII letters too (UTF mode). */
    assert_true(matches("\xc3\xa9t\xc3\xa9", "i", "\xc3\x89T\xc3\x89"));
}

static void test_flag_m(void **state) {
    (void)state;
    assert_false(matches("^b$", NULL, "a\nb\nc"));
    assert_true(matches("^b$", "m", "a\nb\nc"));
}

static void test_flag_s(void **state) {
    (void)state;
    assert_false(matches("a.b", NULL, "a\nb"));
    assert_true(matches("a.b", "s", "a\nb"));
}

static void test_flag_x(void **state) {
    (void)state;
    assert_false(matches("a b c # comment", NULL, "abc"));
    assert_true(matches("a b c # comment", "x", "abc"));
}

static void test_flag_A(void **state) {
    (void)state;
    assert_true(matches("b", NULL, "ab"));
    assert_false(matches("b", "A", "ab"));
    assert_true(matches("a", "A", "ab"));
}

static void test_flags_combined(void **state) {
    (void)state;
    assert_true(matches("^ B . c $", "imsx", "a\nb\nC\nd"));
    assert_false(matches("^ B . c $", "msx", "a\nb\nC\nd"));
}

/* --- exec ---------------------------------------------------------------- */

static void test_exec_match_and_groups(void **state) {
    (void)state;
    const struct gw_regex *re = get("(\\d+)-(\\d+)", NULL);
    assert_int_equal(re->ncaptures, 2);
    PCRE2_SIZE *ov = NULL;
    int rc = exec(re, "tel 555-1234 ok", 0, &ov);
    assert_int_equal(rc, 3);
    assert_non_null(ov);
    assert_int_equal(ov[0], 4);
    assert_int_equal(ov[1], 12);
    assert_int_equal(ov[2], 4);
    assert_int_equal(ov[3], 7);
    assert_int_equal(ov[4], 8);
    assert_int_equal(ov[5], 12);

    assert_int_equal(get("abc", NULL)->ncaptures, 0);
}

static void test_exec_no_match(void **state) {
    (void)state;
    const struct gw_regex *re = get("\\d+", NULL);
    PCRE2_SIZE *ov = NULL;
    assert_int_equal(exec(re, "no digits here", 0, &ov), 0);
    assert_int_equal(exec(re, "", 0, &ov), 0);
}

static void test_exec_unset_group(void **state) {
    (void)state;
    const struct gw_regex *re = get("(a)|(b)", NULL);
    PCRE2_SIZE *ov;
    int rc = exec(re, "xb", 0, &ov);
    assert_int_equal(rc, 3);
    assert_int_equal(ov[0], 1);
    assert_int_equal(ov[1], 2);
    assert_true(ov[2] == PCRE2_UNSET);
    assert_int_equal(ov[4], 1);
    assert_int_equal(ov[5], 2);
}

static void test_exec_offset(void **state) {
    (void)state;
    const struct gw_regex *re = get("\\d+", NULL);
    PCRE2_SIZE *ov;
    const char *s = "12 345 6789";
    assert_int_equal(exec(re, s, 0, &ov), 1);
    assert_int_equal(ov[0], 0);
    assert_int_equal(ov[1], 2);
    assert_int_equal(exec(re, s, 2, &ov), 1);
    assert_int_equal(ov[0], 3);
    assert_int_equal(ov[1], 6);
    assert_int_equal(exec(re, s, 4, &ov), 1); /* starts inside "345" */
    assert_int_equal(ov[0], 4);
    assert_int_equal(ov[1], 6);
    assert_int_equal(exec(re, s, 7, &ov), 1);
    assert_int_equal(ov[0], 7);
    assert_int_equal(ov[1], 11);
    assert_int_equal(exec(re, s, 11, &ov), 0); /* at the end: nothing left */

    /* Lookbehind sees before the offset. */
    const struct gw_regex *lb = get("(?<=a)b", NULL);
    assert_int_equal(exec(lb, "ab", 1, &ov), 1);
    assert_int_equal(ov[0], 1);

    /* An offset past the end is an error, not a match. */
    assert_true(exec(re, s, 12, &ov) < 0);
}

static void test_named_groups(void **state) {
    (void)state;
    const struct gw_regex *re = get("(?<year>\\d{4})-(?<month>\\d{2})", NULL);
    assert_int_equal(re->ncaptures, 2);
    uint32_t namecount = 0;
    assert_int_equal(pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &namecount), 0);
    assert_int_equal(namecount, 2);
    int year = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR) "year");
    int month = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR) "month");
    assert_int_equal(year, 1);
    assert_int_equal(month, 2);
    assert_true(pcre2_substring_number_from_name(re->code, (PCRE2_SPTR) "day") < 0);

    PCRE2_SIZE *ov;
    const char *s = "on 2024-05-01";
    assert_int_equal(exec(re, s, 0, &ov), 3);
    assert_int_equal(ov[2 * year], 3);
    assert_int_equal(ov[2 * year + 1], 7);
    assert_int_equal(ov[2 * month], 8);
    assert_int_equal(ov[2 * month + 1], 10);

    /* The shared match data also answers by name. */
    PCRE2_UCHAR buf[16];
    PCRE2_SIZE len = sizeof buf;
    assert_int_equal(pcre2_substring_copy_byname(re->md, (PCRE2_SPTR) "month", buf, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "05", 2);
}

static void test_utf_pattern(void **state) {
    (void)state;
    PCRE2_SIZE *ov;
    /* '.' is one character, not one byte. */
    assert_int_equal(exec(get("^.$", NULL), "\xc3\xa9", 0, &ov), 1);
    assert_int_equal(exec(get("^.$", NULL), "\xe2\x82\xac", 0, &ov), 1);
    assert_int_equal(exec(get("^.$", NULL), "ab", 0, &ov), 0);
    assert_int_equal(exec(get("\xc3\xa9+", NULL), "x\xc3\xa9\xc3\xa9y", 0, &ov), 1);
    assert_int_equal(ov[0], 1);
    assert_int_equal(ov[1], 5);
}

static void test_invalid_utf8_subject(void **state) {
    (void)state;
    PCRE2_SIZE *ov;
    const struct gw_regex *re = get("b+", NULL);
    const char *s = "a\xff" "bbb\xc0";
    assert_int_equal(gw_regex_exec(re, s, strlen(s), 0, &ov), 1);
    assert_int_equal(ov[0], 2);
    assert_int_equal(ov[1], 5);

    /* No match is 0, never a UTF error code. */
    assert_int_equal(exec(get("z", NULL), "\xff\xfe\xc0\xaf", 0, &ov), 0);
    assert_int_equal(exec(get("z", "i"), "\xed\xa0\x80" "a", 0, &ov), 0);
    /* Valid parts around invalid bytes still match, caseless too. */
    assert_int_equal(exec(get("\xc3\xa9", "i"), "\xff\xc3\x89\xff", 0, &ov), 1);
    assert_int_equal(ov[0], 1);
    assert_int_equal(ov[1], 3);
    /* A truncated sequence at the very end. */
    assert_int_equal(exec(get("a$", NULL), "xa\xe2\x82", 0, &ov), 0);
    assert_int_equal(exec(get("a", NULL), "xa\xe2\x82", 0, &ov), 1);
}

static void test_cache_clear(void **state) {
    (void)state;
    const struct gw_regex *a = get("cl(e)ar", "i");
    assert_int_equal(exec(a, "CLEAR", 0, NULL), 2);
    gw_regex_cache_clear();
    /* Everything compiles afresh and works after a clear. */
    const struct gw_regex *other = get("something(else)", NULL);
    const struct gw_regex *b = get("cl(e)ar", "i");
    assert_ptr_not_equal(other, b);
    assert_ptr_equal(get("cl(e)ar", "i"), b);
    assert_int_equal(b->ncaptures, 1);
    PCRE2_SIZE *ov;
    assert_int_equal(exec(b, "xxCLEAR", 0, &ov), 2);
    assert_int_equal(ov[0], 2);
    assert_int_equal(exec(other, "something else", 0, NULL), 0);
    assert_int_equal(exec(other, "somethingelse", 0, NULL), 2);
    /* Clearing twice and clearing an empty cache are harmless. */
    gw_regex_cache_clear();
    gw_regex_cache_clear();
    assert_int_equal(exec(get("x", NULL), "x", 0, NULL), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cache_same_pointer, teardown),
        cmocka_unit_test_teardown(test_cache_uses_len, teardown),
        cmocka_unit_test_teardown(test_cache_long_pattern, teardown),
        cmocka_unit_test_teardown(test_bad_pattern, teardown),
        cmocka_unit_test_teardown(test_unknown_flag, teardown),
        cmocka_unit_test_teardown(test_flag_i, teardown),
        cmocka_unit_test_teardown(test_flag_m, teardown),
        cmocka_unit_test_teardown(test_flag_s, teardown),
        cmocka_unit_test_teardown(test_flag_x, teardown),
        cmocka_unit_test_teardown(test_flag_A, teardown),
        cmocka_unit_test_teardown(test_flags_combined, teardown),
        cmocka_unit_test_teardown(test_exec_match_and_groups, teardown),
        cmocka_unit_test_teardown(test_exec_no_match, teardown),
        cmocka_unit_test_teardown(test_exec_unset_group, teardown),
        cmocka_unit_test_teardown(test_exec_offset, teardown),
        cmocka_unit_test_teardown(test_named_groups, teardown),
        cmocka_unit_test_teardown(test_utf_pattern, teardown),
        cmocka_unit_test_teardown(test_invalid_utf8_subject, teardown),
        cmocka_unit_test_teardown(test_cache_clear, teardown),
    };
    return cmocka_run_group_tests_name("gw_regex", tests, NULL, NULL);
}
