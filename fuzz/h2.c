/* libFuzzer target for gw_h2: the input is what a client sends after the
 * connection preface (which is prepended), fed in pieces whose size the
 * first byte picks. Every request is answered at once with a small
 * HTTP/1.1 answer, every other one in two writes, as gw_http writes them;
 * the server's output is drained after each piece.
 * Build and run: make fuzz-run (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/gw.h"
#include "net/h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct conn {
    struct gw_h2 *h2;
    int requests;
    struct stream *streams;
};

struct stream {
    struct conn *conn;
    struct stream *prev, *next;
    int32_t id;
};

static void *on_open(void *conn, int32_t id) {
    struct stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    struct conn *c = conn;
    s->conn = c;
    s->id = id;
    s->next = c->streams;
    if (c->streams) c->streams->prev = s;
    c->streams = s;
    return s;
}

static void on_request(void *stream, const char *text, size_t len, int status, const char *message) {
    struct stream *s = stream;
    if (status ? (text || !message || status < 400) : (!text || len < 16)) abort();
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                               "Content-Length: 11\r\n\r\nhello";
    if (s->conn->requests++ % 2) {
        gw_h2_write(s->conn->h2, s->id, head, sizeof head - 1);
        gw_h2_write(s->conn->h2, s->id, " world", 6);
    } else {
        gw_h2_write(s->conn->h2, s->id, "HTTP/1.1 204 No Content\r\n\r\n", 27);
    }
}

static void on_received(void *stream, size_t len) {
    (void)stream;
    (void)len;
}

static void on_sent(void *stream) { (void)stream; }

static void unlink_free(struct stream *s) {
    if (s->prev) s->prev->next = s->next;
    else s->conn->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

static void on_closed(void *stream, uint32_t error) {
    (void)error;
    unlink_free(stream);
}

static const struct gw_h2_ops ops = {on_open, on_request, on_received, on_sent, on_closed};

static void drain(struct gw_h2 *h2) {
    const char *out;
    for (int i = 0; i < 1000 && gw_h2_pull(h2, &out) > 0; i++) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = data[0] % 65; /* 0: all at once */
    struct gw_h2_limits lim = {4096, 32, 8192, 8, 65535};
    struct conn c = {0};
    if (!(c.h2 = gw_h2_new(&lim, &ops, &c))) return 0;
    int ok = gw_h2_feed(c.h2, GW_H2_PREFACE, GW_H2_PREFACE_LEN) == GW_OK;
    drain(c.h2);
    const char *in = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    while (ok && off < len) {
        size_t n = step && len - off > step ? step : len - off;
        ok = gw_h2_feed(c.h2, in + off, n) == GW_OK;
        drain(c.h2);
        off += n;
    }
    (void)gw_h2_streams(c.h2);
    (void)gw_h2_done(c.h2);
    gw_h2_shutdown(c.h2);
    drain(c.h2);
    /* Streams still open: gw_h2_free does not call ops, so their owners go here. */
    gw_h2_free(c.h2);
    while (c.streams) unlink_free(c.streams);
    return 0;
}
