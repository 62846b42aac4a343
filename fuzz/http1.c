/* libFuzzer target for gw_http1: the input's first byte picks the size of
 * the pieces the rest is fed in (1 to 64 bytes, or all at once), so
 * requests split at odd places are explored too. Every request that comes
 * out is read through the accessors and the URL helpers, as gw_http does.
 * Build and run: make fuzz-run (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "base/query.h"
#include "net/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_request(struct gw_http1 *p) {
    size_t len, pl, ql, bl;
    const char *url = gw_http1_url(p, &len), *path, *query;
    (void)gw_http1_method(p);
    (void)gw_http1_keep_alive(p);
    (void)gw_http1_header(p, "content-type");
    for (int i = 0; i < gw_http1_nfields(p); i++) {
        const char *name, *value;
        size_t nl, vl;
        gw_http1_field(p, i, &name, &nl, &value, &vl);
        if (strlen(name) != nl || strlen(value) > vl) abort(); /* NUL-terminated at their length */
    }
    const char *body = gw_http1_body(p, &bl);
    if (body && bl) (void)body[bl - 1];
    if (gw_http1_split_target(url, len, &path, &pl, &query, &ql) == GW_OK) {
        char *out = malloc(pl + 1);
        if (out) {
            long n = gw_url_decode_strict(path, pl, out);
            if (n > (long)pl) abort();
            free(out);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = data[0] % 65; /* 0: all at once */
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct gw_http1_limits lim = {4096, 32, 8192};
    struct gw_http1 *p = gw_http1_new(&lim);
    if (!p) return 0;
    size_t off = 0;
    int requests = 0;
    while (off < len && requests < 64) {
        size_t n = step && len - off > step ? step : len - off;
        enum gw_http1_event ev;
        size_t used = gw_http1_feed(p, in + off, n, &ev);
        if (used > n) abort();
        off += used;
        if (ev == GW_HTTP1_ERROR) {
            if (gw_http1_status(p) < 400 || !gw_http1_message(p)) abort();
            break;
        }
        if (ev == GW_HTTP1_REQUEST || ev == GW_HTTP1_UPGRADE) {
            read_request(p);
            gw_http1_next(p);
            requests++;
            if (ev == GW_HTTP1_UPGRADE) break; /* the rest is not HTTP */
        } else if (ev == GW_HTTP1_MORE && used != n) {
            abort(); /* stopped without saying why */
        }
    }
    gw_http1_free(p);
    return 0;
}
