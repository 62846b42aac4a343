/* libFuzzer target for the TCP line splitter (core/net/lines.c): the
 * input's first byte picks the line limit and the size of the pieces the
 * rest is fed in; a plain splitter over the whole input says which lines
 * (and which "too long" reports) must come out, whatever the pieces.
 * Build and run: make fuzz-run FUZZ_TARGETS=lines (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What came out, as one text: each line then "\n", a too-long report as
 * "!\n" (the fuzzed lines have '!' replaced, so it cannot be confused). */
struct out {
    char *buf;
    size_t len, cap;
    size_t max;
};

static void put(struct out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) abort(); /* sized for the worst case */
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len++] = '\n';
}

static int on_line(void *ud, const char *line, size_t len) {
    struct out *o = ud;
    if (!line) {
        if (len) abort();
        put(o, "!", 1);
        return 0;
    }
    if (len == 0 || len > o->max || memchr(line, '\n', len)) abort();
    if (line[len - 1] == '\r' && len == o->max + 1) abort();
    put(o, line, len);
    return 0;
}

/* The reference: the same rules over the whole input at once. */
static void reference(struct out *o, const char *p, size_t n) {
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!nl) { /* the unfinished line: reported once it cannot fit any more */
            if (len > o->max + 1 || (len == o->max + 1 && p[len - 1] != '\r')) put(o, "!", 1);
            break;
        }
        if (len && p[len - 1] == '\r') len--;
        if (len > o->max) put(o, "!", 1);
        else if (len) put(o, p, len);
        p = nl + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t max = 1 + data[0] % 32, step = 1 + data[1] % 17;
    size_t n = size - 2;
    char *in = malloc(n + 1);
    struct out got = {malloc(2 * n + 4), 0, 2 * n + 4, max};
    struct out want = {malloc(2 * n + 4), 0, 2 * n + 4, max};
    if (!in || !got.buf || !want.buf) goto done;
    memcpy(in, data + 2, n);
    for (size_t i = 0; i < n; i++)
        if (in[i] == '!') in[i] = '?';
    if (data[1] & 0x80) step = n ? n : 1; /* all at once */

    struct gw_lines r;
    gw_lines_init(&r, max, on_line, &got);
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        if (gw_lines_feed(&r, in + off, k) != 0) abort();
        if (r.len > max + 1 || r.cap > max + 1) abort();
    }
    gw_lines_close(&r);
    reference(&want, in, n);
    if (got.len != want.len || memcmp(got.buf, want.buf, got.len) != 0) abort();
done:
    free(in);
    free(got.buf);
    free(want.buf);
    return 0;
}
