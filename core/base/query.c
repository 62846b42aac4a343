/* Percent-decoding, query-string parsing and UTF-8 checking; see query.h. */
#include "base/query.h"
#include "base/gw.h"

#include <stdlib.h>
#include <string.h>

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The one percent-decoder: a malformed escape is kept as it is, or, when
 * 'strict', fails with -1. */
static long decode(const char *in, size_t len, char *out, int plus_is_space, int strict) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < len && (hi = hexval(in[i + 1])) >= 0 &&
            (lo = hexval(in[i + 2])) >= 0) {
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (in[i] == '%' && strict) {
            return -1;
        } else if (in[i] == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = in[i];
        }
    }
    return (long)o;
}

size_t gw_url_decode(const char *in, size_t len, char *out, int plus_is_space) {
    return (size_t)decode(in, len, out, plus_is_space, 0);
}

long gw_url_decode_strict(const char *in, size_t len, char *out) {
    return decode(in, len, out, 0, 1);
}

int gw_query_parse(const char *s, size_t len, gw_query_pair_fn fn, void *ud) {
    char small[512];
    char *buf = len <= sizeof small ? small : malloc(len);
    int rc = GW_OK;
    if (!buf) return GW_ERR;

    size_t start = 0;
    while (start <= len && rc == GW_OK) {
        size_t end = start;
        while (end < len && s[end] != '&' && s[end] != ';') end++;
        if (end > start) {
            const char *piece = s + start;
            size_t plen = end - start;
            const char *eq = memchr(piece, '=', plen);
            size_t klen_raw = eq ? (size_t)(eq - piece) : plen;
            size_t klen = gw_url_decode(piece, klen_raw, buf, 1);
            size_t vlen = 0;
            char *val = buf + klen;
            if (eq) vlen = gw_url_decode(eq + 1, plen - klen_raw - 1, val, 1);
            if (klen > 0) rc = fn(ud, buf, klen, val, vlen);
        }
        start = end + 1;
    }
    if (buf != small) free(buf);
    return rc;
}

int gw_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return 0;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}
