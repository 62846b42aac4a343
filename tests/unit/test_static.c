/* Unit tests for the pure parts of gw_static.h: which paths are claimed,
 * path resolution and safety (on a real folder with symlinks, in a mkdtemp
 * folder), MIME types, ETags and If-None-Match, HTTP dates. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/gw.h"
#include "net/static.h"

/* --- gw_static_rest ----------------------------------------------------- */

static void test_rest(void **state) {
    (void)state;
    assert_string_equal(gw_static_rest("public", "/public"), "");
    assert_string_equal(gw_static_rest("public", "/public/"), "");
    assert_string_equal(gw_static_rest("public", "/public/a.txt"), "a.txt");
    assert_string_equal(gw_static_rest("public", "/public/sub/b/c.css"), "sub/b/c.css");
    assert_null(gw_static_rest("public", "/publicity"));
    assert_null(gw_static_rest("public", "/public.txt"));
    assert_null(gw_static_rest("public", "/api/public"));
    assert_null(gw_static_rest("public", "/"));
    assert_null(gw_static_rest("public", "public/a"));
    assert_null(gw_static_rest("public", "/Public/a")); /* case matters, as for /api */
    /* Slashes around the configured name do not matter; an empty one claims nothing. */
    assert_string_equal(gw_static_rest("/static/", "/static/x"), "x");
    assert_string_equal(gw_static_rest("assets/v1", "/assets/v1/app.js"), "app.js");
    assert_null(gw_static_rest("", "/"));
    assert_null(gw_static_rest("/", "/x"));
}

/* --- gw_static_resolve -------------------------------------------------- */

struct tree {
    char dir[256];    /* the mkdtemp folder */
    char pub[300];    /* <dir>/public */
    char real_pub[PATH_MAX];
};

static void put_file(const char *dir, const char *name, const char *text) {
    char path[600];
    gw_fmt(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void put_dir(const char *dir, const char *name) {
    char path[600];
    gw_fmt(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void put_link(const char *dir, const char *name, const char *target) {
    char path[600];
    gw_fmt(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(symlink(target, path), 0);
}

/* <dir>/secret.txt, <dir>/outside/x.txt, <dir>/public_evil/x.txt (shares
 * the prefix "public"), and <dir>/public/ holding files, folders, a FIFO
 * and symlinks that stay inside or lead out. */
static int setup_tree(void **state) {
    struct tree *t = calloc(1, sizeof *t);
    if (!t) return -1;
    strcpy(t->dir, "/tmp/gw-test-static-XXXXXX");
    if (!mkdtemp(t->dir)) return -1;
    gw_fmt(t->pub, sizeof t->pub, "%s/public", t->dir);
    put_file(t->dir, "secret.txt", "secret");
    put_dir(t->dir, "outside");
    put_file(t->dir, "outside/x.txt", "outside");
    put_dir(t->dir, "public_evil");
    put_file(t->dir, "public_evil/x.txt", "evil");
    put_dir(t->dir, "public");
    put_file(t->pub, "index.html", "<h1>root</h1>");
    put_file(t->pub, "a.txt", "a");
    put_file(t->pub, "x..y.txt", "dots inside a name are fine");
    put_file(t->pub, "with space.txt", "space");
    put_dir(t->pub, "sub");
    put_file(t->pub, "sub/index.html", "<h1>sub</h1>");
    put_file(t->pub, "sub/c.css", "c");
    put_dir(t->pub, "empty");
    put_dir(t->pub, "badindex");
    put_link(t->pub, "badindex/index.html", "../../secret.txt");
    put_dir(t->pub, "dirindex");
    put_dir(t->pub, "dirindex/index.html");
    put_link(t->pub, "link_in", "a.txt");
    put_link(t->pub, "link_dir_in", "sub");
    put_link(t->pub, "link_abs_in", t->pub); /* the root itself, by absolute path */
    put_link(t->pub, "passwd", "/etc/passwd");
    put_link(t->pub, "out_dir", "../outside");
    put_link(t->pub, "out_file", "../secret.txt");
    put_link(t->pub, "evil", "../public_evil/x.txt");
    put_link(t->pub, "dangling", "nowhere.txt");
    put_link(t->pub, "loop", "loop");
    put_link(t->dir, "rootlink", "public");
    char fifo[600];
    assert_int_equal(mkfifo(gw_fmt(fifo, sizeof fifo, "%s/fifo", t->pub), 0644), 0);
    assert_non_null(realpath(t->pub, t->real_pub));
    *state = t;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown_tree(void **state) {
    struct tree *t = *state;
    nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

/* 'rest' resolves to <real public>/<expect>. */
static void check_found(struct tree *t, const char *root, const char *rest, const char *expect) {
    char out[PATH_MAX], want[PATH_MAX + 64];
    int rc = gw_static_resolve(root, rest, out, sizeof out);
    if (rc != GW_OK) fail_msg("\"%s\" was not found", rest);
    gw_fmt(want, sizeof want, "%s/%s", t->real_pub, expect);
    assert_string_equal(out, want);
}

static void check_refused(const char *root, const char *rest) {
    char out[PATH_MAX];
    if (gw_static_resolve(root, rest, out, sizeof out) != GW_ERR) fail_msg("\"%s\" gave %s", rest, out);
}

static void test_resolve_files(void **state) {
    struct tree *t = *state;
    check_found(t, t->pub, "a.txt", "a.txt");
    check_found(t, t->pub, "/a.txt", "a.txt");
    check_found(t, t->pub, "sub/c.css", "sub/c.css");
    check_found(t, t->pub, "x..y.txt", "x..y.txt");
    check_found(t, t->pub, "with space.txt", "with space.txt");
    /* The root may be given through a symlink or with a trailing slash. */
    char root[600];
    check_found(t, gw_fmt(root, sizeof root, "%s/rootlink", t->dir), "a.txt", "a.txt");
    check_found(t, gw_fmt(root, sizeof root, "%s/", t->pub), "a.txt", "a.txt");
}

static void test_resolve_index(void **state) {
    struct tree *t = *state;
    check_found(t, t->pub, "", "index.html");
    check_found(t, t->pub, "sub", "sub/index.html");
    check_found(t, t->pub, "sub/", "sub/index.html");
    check_refused(t->pub, "empty");       /* a folder without index.html */
    check_refused(t->pub, "empty/");
    check_refused(t->pub, "badindex");    /* index.html leads outside */
    check_refused(t->pub, "dirindex");    /* index.html is a folder */
}

static void test_resolve_symlinks_inside(void **state) {
    struct tree *t = *state;
    check_found(t, t->pub, "link_in", "a.txt");
    check_found(t, t->pub, "link_dir_in/c.css", "sub/c.css");
    check_found(t, t->pub, "link_dir_in", "sub/index.html");
    check_found(t, t->pub, "link_abs_in/a.txt", "a.txt");
}

static void test_resolve_refuses_outside(void **state) {
    struct tree *t = *state;
    check_refused(t->pub, "passwd");
    check_refused(t->pub, "out_file");
    check_refused(t->pub, "out_dir");
    check_refused(t->pub, "out_dir/x.txt");
    check_refused(t->pub, "evil"); /* /x/public_evil is not inside /x/public */
    check_refused(t->pub, "dangling");
    check_refused(t->pub, "loop");
}

static void test_resolve_refuses_dotdot(void **state) {
    struct tree *t = *state;
    check_refused(t->pub, "..");
    check_refused(t->pub, "../secret.txt");
    check_refused(t->pub, "../public/a.txt");       /* even when it would land inside */
    check_refused(t->pub, "sub/../a.txt");
    check_refused(t->pub, "sub/..");
    check_refused(t->pub, "..\\secret.txt");
    check_refused(t->pub, "sub\\..\\..\\secret.txt");
    check_refused(t->pub, "/../secret.txt");
}

static void test_resolve_refuses_other(void **state) {
    struct tree *t = *state;
    char out[8], root[600];
    check_refused(t->pub, "missing.txt");
    check_refused(t->pub, "a.txt/");       /* a file is not a folder */
    check_refused(t->pub, "fifo");         /* not a regular file */
    check_refused(t->pub, "%2e%2e/secret.txt"); /* no second decoding */
    check_refused(gw_fmt(root, sizeof root, "%s/nope", t->dir), "a.txt"); /* no public folder */
    check_refused(gw_fmt(root, sizeof root, "%s/a.txt", t->pub), "");      /* root is a file */
    /* Too long for 'out', or for PATH_MAX. */
    assert_int_equal(gw_static_resolve(t->pub, "a.txt", out, sizeof out), GW_ERR);
    char *big = malloc(PATH_MAX + 10);
    assert_non_null(big);
    memset(big, 'x', PATH_MAX + 9);
    big[PATH_MAX + 9] = '\0';
    check_refused(t->pub, big);
    free(big);
}

/* --- MIME --------------------------------------------------------------- */

static void test_mime(void **state) {
    (void)state;
    static const char *cases[][2] = {
        {"index.html", "text/html; charset=utf-8"},  {"a.htm", "text/html; charset=utf-8"},
        {"s.css", "text/css; charset=utf-8"},        {"app.js", "text/javascript; charset=utf-8"},
        {"m.mjs", "text/javascript; charset=utf-8"}, {"d.json", "application/json; charset=utf-8"},
        {"r.txt", "text/plain; charset=utf-8"},      {"README.md", "text/markdown; charset=utf-8"},
        {"f.xml", "application/xml; charset=utf-8"}, {"t.csv", "text/csv; charset=utf-8"},
        {"i.svg", "image/svg+xml"},                  {"i.png", "image/png"},
        {"i.jpg", "image/jpeg"},                     {"i.jpeg", "image/jpeg"},
        {"i.gif", "image/gif"},                      {"i.webp", "image/webp"},
        {"favicon.ico", "image/x-icon"},             {"d.pdf", "application/pdf"},
        {"m.wasm", "application/wasm"},              {"f.woff", "font/woff"},
        {"f.woff2", "font/woff2"},                   {"f.ttf", "font/ttf"},
        {"v.mp4", "video/mp4"},                      {"v.webm", "video/webm"},
        {"s.mp3", "audio/mpeg"},                     {"s.wav", "audio/wav"},
        {"a.zip", "application/zip"},                {"a.tar.gz", "application/gzip"},
        {"PHOTO.PNG", "image/png"},                  {"/srv/x/y.Html", "text/html; charset=utf-8"},
        {"noext", "application/octet-stream"},       {".bashrc", "application/octet-stream"},
        {"dir.d/file", "application/octet-stream"},  {"x.exe", "application/octet-stream"},
        {"trailing.", "application/octet-stream"},   {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = gw_static_mime(cases[i][0]);
        if (strcmp(got, cases[i][1]) != 0) fail_msg("%s: got %s, want %s", cases[i][0], got, cases[i][1]);
    }
}

/* --- ETag --------------------------------------------------------------- */

static void test_etag_format(void **state) {
    (void)state;
    char a[64], b[64];
    gw_static_etag(a, sizeof a, 1234, 1700000000, 5);
    assert_string_equal(a, "\"4d2-6553f100-5\"");
    /* Size, seconds and nanoseconds all change it. */
    gw_static_etag(b, sizeof b, 1234, 1700000000, 6);
    assert_string_not_equal(a, b);
    gw_static_etag(b, sizeof b, 1235, 1700000000, 5);
    assert_string_not_equal(a, b);
    gw_static_etag(b, sizeof b, 1234, 1700000001, 5);
    assert_string_not_equal(a, b);
    gw_static_etag(b, sizeof b, 0, 0, 0);
    assert_string_equal(b, "\"0-0-0\"");
}

static void test_etag_match(void **state) {
    (void)state;
    const char *e = "\"4d2-6553f100-5\"";
    assert_true(gw_static_etag_match("\"4d2-6553f100-5\"", e));
    assert_true(gw_static_etag_match("*", e));
    assert_true(gw_static_etag_match("  *  ", e));
    assert_true(gw_static_etag_match("W/\"4d2-6553f100-5\"", e)); /* weak comparison */
    assert_true(gw_static_etag_match("\"a\", \"4d2-6553f100-5\"", e));
    assert_true(gw_static_etag_match("\"a\",W/\"b\" ,\t\"4d2-6553f100-5\" , \"c\"", e));
    assert_true(gw_static_etag_match("\"x,y\", \"4d2-6553f100-5\"", e)); /* a comma inside a tag */
    assert_false(gw_static_etag_match("", e));
    assert_false(gw_static_etag_match("\"4d2-6553f100-6\"", e));
    assert_false(gw_static_etag_match("\"4d2-6553f100-5", e));   /* unterminated */
    assert_false(gw_static_etag_match("4d2-6553f100-5", e));     /* no quotes */
    assert_false(gw_static_etag_match("\"4D2-6553F100-5\"", e)); /* case matters */
    assert_false(gw_static_etag_match("\"a\", \"b\"", e));
    assert_false(gw_static_etag_match("w/\"4d2-6553f100-5\"", e));
    assert_false(gw_static_etag_match(",,,", e));
}

/* --- HTTP dates ----------------------------------------------------------- */

static void test_http_date_format(void **state) {
    (void)state;
    char buf[40];
    assert_int_equal(gw_static_http_date(buf, sizeof buf, 0), 29);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    gw_static_http_date(buf, sizeof buf, 784111777);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    gw_static_http_date(buf, sizeof buf, 951782400); /* leap day */
    assert_string_equal(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
    gw_static_http_date(buf, sizeof buf, 4102444799); /* 2099-12-31 23:59:59 */
    assert_string_equal(buf, "Thu, 31 Dec 2099 23:59:59 GMT");
    /* Truncated, but terminated. */
    assert_int_equal(gw_static_http_date(buf, 5, 0), 4);
    assert_string_equal(buf, "Thu,");
}

static void test_http_date_parse(void **state) {
    (void)state;
    time_t t = 0;
    assert_int_equal(gw_static_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t), GW_OK);
    assert_int_equal(t, 784111777);
    t = 0;
    assert_int_equal(gw_static_parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), GW_OK);
    assert_int_equal(t, 784111777);
    t = 0;
    assert_int_equal(gw_static_parse_http_date("Sun Nov  6 08:49:37 1994", &t), GW_OK);
    assert_int_equal(t, 784111777);
    t = 0;
    assert_int_equal(gw_static_parse_http_date("  Thu, 01 Jan 1970 00:00:00 GMT  ", &t), GW_OK);
    assert_int_equal(t, 0);
    assert_int_equal(gw_static_parse_http_date("Wednesday, 01-Jan-25 00:00:00 GMT", &t), GW_OK);
    assert_int_equal(t, 1735689600); /* two-digit years below 70 are 20xx */

    /* Round trip. */
    char buf[40];
    for (time_t v = 0; v < 4102444800; v += 86400 * 367 + 3671) {
        gw_static_http_date(buf, sizeof buf, v);
        assert_int_equal(gw_static_parse_http_date(buf, &t), GW_OK);
        assert_int_equal(t, v);
    }

    static const char *bad[] = {
        "", "garbage", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Nov 1994 08:49:37 GMT trailing", "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1969 08:49:37 GMT",
        "1994-11-06T08:49:37Z", "Sun Nov  6 08:49:37", "1700000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = 12345;
        if (gw_static_parse_http_date(bad[i], &t) != GW_ERR) fail_msg("\"%s\" parsed as %lld", bad[i], (long long)t);
        assert_int_equal(t, 12345); /* untouched */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rest),
        cmocka_unit_test_setup_teardown(test_resolve_files, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_resolve_index, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_resolve_symlinks_inside, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_resolve_refuses_outside, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_resolve_refuses_dotdot, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_resolve_refuses_other, setup_tree, teardown_tree),
        cmocka_unit_test(test_mime),
        cmocka_unit_test(test_etag_format),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_http_date_format),
        cmocka_unit_test(test_http_date_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
