/* libFuzzer target for the WebSocket message assembler (core/net/wsmsg.c):
 * the input is a sequence of chunks as lws reports them, each a header
 *   flags (bit 0 binary, bit 1 last, bit 2 repeat), length, remaining
 *   [, repeat count]
 * then its bytes (repeated to make large chunks from small inputs). A model
 * of the assembly beside it says what each feed must return and which
 * messages must come out, byte for byte.
 * Build and run: make fuzz-run FUZZ_TARGETS=wsmsg (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/wsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct model {
    char *buf; /* the message expected */
    size_t len;
    int binary, in_progress;
    int delivered; /* messages the assembler handed out */
    int expected;  /* messages the model says it should have */
};

static void on_message(void *ud, const char *msg, size_t len, int binary) {
    struct model *m = ud;
    m->delivered++;
    if (m->delivered != m->expected) abort();
    if (len != m->len || binary != m->binary) abort();
    if (len && memcmp(msg, m->buf, len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t max = 16 + (size_t)data[0] * 512; /* up to ~128 KiB: past the kept-buffer size */
    size_t i = 1;
    static char expected[16 + 255 * 512 + 1], chunk[256 * 1024]; /* the largest max; n * times */
    struct model m = {0};
    m.buf = expected;
    struct gw_wsmsg w;
    gw_wsmsg_init(&w, max, on_message, &m);
    while (i + 3 <= size) {
        int flags = data[i], binary = flags & 1, last = (flags >> 1) & 1;
        size_t n = data[i + 1], remaining = (size_t)data[i + 2] * 37;
        i += 3;
        size_t times = 1;
        if (flags & 4 && i < size) times = 1 + (size_t)data[i++] * 4;
        if (n > size - i) n = size - i;
        size_t len = n * times;
        for (size_t t = 0; t < times; t++) memcpy(chunk + t * n, data + i, n);
        i += n;

        /* the model: what the assembler must do with this chunk */
        int want = GW_WSMSG_OK, starting = !m.in_progress;
        if (starting) {
            m.binary = binary;
            m.len = 0;
        }
        if (starting && last && len <= max) { /* whole in one chunk */
            memcpy(m.buf, chunk, len);
            m.len = len;
            m.expected++;
        } else if (m.len + len + remaining > max) {
            m.in_progress = 0;
            want = GW_WSMSG_TOO_BIG;
        } else {
            memcpy(m.buf + m.len, chunk, len);
            m.len += len;
            m.in_progress = !last;
            if (last) m.expected++;
        }
        int rc = gw_wsmsg_feed(&w, chunk, len, binary, last, remaining);
        if (rc == GW_WSMSG_NOMEM) break;
        if (rc != want || m.delivered != m.expected || w.in_progress != m.in_progress) abort();
        if (w.len > max || w.cap > max) abort();
    }
    gw_wsmsg_close(&w);
    return 0;
}
