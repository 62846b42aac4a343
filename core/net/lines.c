/* See lines.h. The buffer grows only for a line split across feeds,
 * never past max + 1 bytes, and is freed between lines once it has grown
 * large, so an idle client holds no big buffer. */
#include "net/lines.h"
#include "base/gw.h"

#include <stdlib.h>
#include <string.h>

#define KEEP_CAP 65536 /* a buffer up to this size is kept between lines */

void gw_lines_init(struct gw_lines *r, size_t max, gw_lines_fn fn, void *ud) {
    memset(r, 0, sizeof *r);
    r->max = max;
    r->fn = fn;
    r->ud = ud;
}

void gw_lines_close(struct gw_lines *r) {
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
    r->discarding = 0;
}

/* A complete line: without its "\r", and only when something is left. */
static int deliver(struct gw_lines *r, const char *line, size_t len) {
    if (len && line[len - 1] == '\r') len--;
    return len ? r->fn(r->ud, line, len) : 0;
}

static int too_long(struct gw_lines *r) { return r->fn(r->ud, NULL, 0); }

/* Add a part of a line split across feeds. The line may hold max + 1
 * bytes when the last is a "\r": that may be the start of its "\r\n",
 * which arrives with the next feed (a line of exactly max bytes is
 * accepted however the client's bytes were split). */
static int collect(struct gw_lines *r, const char *p, size_t n) {
    if (r->discarding) return 0;
    size_t total = r->len + n;
    if (total > r->max + 1 || (total == r->max + 1 && n > 0 && p[n - 1] != '\r')) {
        r->len = 0;
        r->discarding = 1;
        return too_long(r);
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap * 2 + n + 256;
        if (cap > r->max + 1) cap = r->max + 1;
        char *b = realloc(r->buf, cap);
        if (!b) gw_panic("out of memory");
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    return 0;
}

int gw_lines_feed(struct gw_lines *r, const char *p, size_t n) {
    const char *end = p + n;
    int stop = 0;
    while (p < end && !stop) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            stop = collect(r, p, (size_t)(end - p));
            break;
        }
        size_t len = (size_t)(nl - p);
        r->ends++;
        if (r->discarding) {
            r->discarding = 0;
        } else if (r->len == 0) {
            if (len > r->max + (len && p[len - 1] == '\r')) stop = too_long(r);
            else stop = deliver(r, p, len);
        } else {
            stop = collect(r, p, len);
            if (!r->discarding && !stop) {
                size_t whole = r->len;
                r->len = 0;
                stop = deliver(r, r->buf, whole);
            }
            r->discarding = 0;
            r->len = 0;
        }
        p = nl + 1;
    }
    if (r->cap > KEEP_CAP && r->len == 0) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    return stop;
}

int gw_lines_pending(const struct gw_lines *r) { return r->len > 0 || r->discarding; }
