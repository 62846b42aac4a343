/* libFuzzer target for the query/form decoder (core/base/query.c): the
 * input is a query string, a form body or a path. gw_query_parse must hand
 * out pairs no longer than the input; gw_url_decode_strict, when it
 * succeeds, must agree with gw_url_decode without '+' as space; and
 * gw_utf8_valid must agree with the plain decoder below (RFC 3629: no
 * overlongs, no surrogates, nothing over U+10FFFF).
 * Build and run: make fuzz-run FUZZ_TARGETS=query (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "base/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct pairs {
    size_t len;    /* the input's */
    size_t total;  /* decoded bytes handed out */
    int n, stop_at;
};

static int on_pair(void *ud, const char *key, size_t klen, const char *val, size_t vlen) {
    struct pairs *p = ud;
    if (!key || !val || klen == 0 || klen > p->len || vlen > p->len) abort();
    (void)key[klen - 1];
    if (vlen) (void)val[vlen - 1];
    p->total += klen + vlen;
    if (p->total > p->len) abort(); /* decoding never grows */
    return ++p->n == p->stop_at ? GW_ERR : GW_OK;
}

/* The reference: one code point at a time, by the table of RFC 3629. */
static int utf8_ref(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (len - i - 1 < n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    struct pairs p = {size, 0, 0, size ? 1 + data[0] % 16 : 0};
    int rc = gw_query_parse(in, size, on_pair, &p);
    if (rc == GW_ERR && p.n != p.stop_at) abort(); /* only the callback stops it here */

    char *a = malloc(size + 1), *b = malloc(size + 1);
    if (!a || !b) goto done;
    size_t la = gw_url_decode(in, size, a, 1);
    size_t lb = gw_url_decode(in, size, b, 0);
    if (la > size || lb > size || la != lb) abort(); /* '+' changes a byte, not the length */
    long ls = gw_url_decode_strict(in, size, a);
    if (ls > (long)size || ls < -1) abort();
    if (ls >= 0 && ((size_t)ls != lb || memcmp(a, b, lb) != 0)) abort();

    if (gw_utf8_valid(in, size) != utf8_ref(data, size)) abort();
    /* and on what decoding makes of it, as the gateway checks decoded params */
    if (gw_utf8_valid(b, lb) != utf8_ref((const uint8_t *)b, lb)) abort();
done:
    free(a);
    free(b);
    return 0;
}
