/* See wsmsg.h. The size check counts what is still to come of the
 * current frame, so an oversized frame is refused at its first chunk; the
 * buffer never grows past max and is freed after a large message. */
#include "net/wsmsg.h"

#include <stdlib.h>
#include <string.h>

#define KEEP_CAP 65536 /* a buffer up to this size is kept between messages */

void gw_wsmsg_init(struct gw_wsmsg *m, size_t max, gw_wsmsg_fn fn, void *ud) {
    memset(m, 0, sizeof *m);
    m->max = max;
    m->fn = fn;
    m->ud = ud;
}

void gw_wsmsg_close(struct gw_wsmsg *m) {
    free(m->buf);
    m->buf = NULL;
    m->len = m->cap = 0;
    m->in_progress = 0;
}

int gw_wsmsg_feed(struct gw_wsmsg *m, const char *in, size_t len, int binary, int last,
                  size_t remaining) {
    if (!m->in_progress) {
        m->in_progress = 1;
        m->binary = binary;
        m->len = 0;
        if (last && len <= m->max) { /* the common case: no copy */
            m->in_progress = 0;
            m->fn(m->ud, in, len, m->binary);
            return GW_WSMSG_OK;
        }
    }
    if (m->len + len + remaining > m->max) {
        m->in_progress = 0;
        m->len = 0;
        return GW_WSMSG_TOO_BIG;
    }
    if (m->len + len > m->cap) {
        size_t cap = m->cap * 2 + len + 1024;
        if (cap > m->max) cap = m->max;
        char *b = realloc(m->buf, cap);
        if (!b) {
            m->in_progress = 0;
            m->len = 0;
            return GW_WSMSG_NOMEM;
        }
        m->buf = b;
        m->cap = cap;
    }
    if (len) memcpy(m->buf + m->len, in, len);
    m->len += len;
    if (last) {
        m->in_progress = 0;
        m->fn(m->ud, m->buf ? m->buf : "", m->len, m->binary);
        if (m->cap > KEEP_CAP) { /* do not keep a large buffer per idle connection */
            free(m->buf);
            m->buf = NULL;
            m->cap = 0;
        }
    }
    return GW_WSMSG_OK;
}
