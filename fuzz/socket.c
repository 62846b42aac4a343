/* libFuzzer target for the TCP transport's input: the line splitter
 * (core/net/lines.c) fed in pieces as net/socket.c feeds it, each line then
 * going to a TCP connection of the runtime, where the verb parser
 * (lua/gateway/transport/socket.lua) or the message protocol takes it.
 * Every line with something other than spaces, and every over-long line,
 * must get exactly one JSON answer (fuzz/runtime.h says what is checked);
 * after quit/exit nothing more is read. The input's first byte picks the
 * piece size. The runtime is fuzz/project (maxLineLength 1024).
 * Build and run: make fuzz-run FUZZ_TARGETS=socket (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>

#include "net/lines.h"
#include "runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
    struct gw_conn *conn;
    struct fuzz_conn *c;
    int expected;
};

static int on_line(void *ud, const char *line, size_t len) {
    struct feed *f = ud;
    if (f->c->closed) return 1;
    if (!line) {
        gw_conn_reject(f->conn, 413, "line too long", 0);
        f->expected++;
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (!strchr(" \t\n\v\f\r", line[i]) || line[i] == '\0') {
            f->expected++;
            break;
        }
    }
    gw_conn_message(f->conn, line, len, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (fuzz_has_token(data, size)) return 0;
    fuzz_runtime();
    size_t step = data[0] % 65; /* 0: all at once */
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct fuzz_conn c;
    struct feed f = {fuzz_open("socket", &c), &c, 0};
    struct gw_lines lines;
    gw_lines_init(&lines, (size_t)fuzz_cfg.max_line_length, on_line, &f);
    for (size_t off = 0; off < len && !c.closed;) {
        size_t n = step && len - off > step ? step : len - off;
        gw_lines_feed(&lines, in + off, n);
        off += n;
    }
    gw_lines_close(&lines);
    for (int i = 0; i < 4 && c.answers < f.expected; i++) uv_run(&fuzz_loop, UV_RUN_NOWAIT);
    if (c.answers != f.expected) {
        fprintf(stderr, "fuzz: %d answers, %d expected\n", c.answers, f.expected);
        abort();
    }
    fuzz_finish(f.conn);
    return 0;
}
