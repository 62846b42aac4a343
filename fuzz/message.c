/* libFuzzer target for the WebSocket message path: each input is up to 16
 * messages (split at 0xFF bytes, which UTF-8 text never holds; a message
 * starting with 0x02 is sent as a binary frame), fed to one WebSocket
 * connection of the runtime as net/ws.c feeds them. Each message must get
 * exactly one answer, a JSON envelope (fuzz/runtime.h says what is
 * checked), and nothing may crash or leak. The runtime is fuzz/project.
 * Build and run: make fuzz-run FUZZ_TARGETS=message (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_has_token(data, size)) return 0;
    fuzz_runtime();
    struct fuzz_conn c;
    struct gw_conn *conn = fuzz_open("websocket", &c);
    const char *p = (const char *)data, *end = p + size;
    int sent = 0;
    while (p <= end && sent < 16 && !c.closed) {
        const char *sep = memchr(p, 0xFF, (size_t)(end - p));
        size_t len = sep ? (size_t)(sep - p) : (size_t)(end - p);
        int binary = len > 0 && p[0] == 0x02;
        gw_conn_message(conn, p + binary, len - (size_t)binary, binary);
        sent++;
        if (!sep) break;
        p = sep + 1;
    }
    for (int i = 0; i < 4 && c.answers < sent; i++) uv_run(&fuzz_loop, UV_RUN_NOWAIT);
    if (c.answers != sent) {
        fprintf(stderr, "fuzz: %d messages, %d answers\n", sent, c.answers);
        abort();
    }
    fuzz_finish(conn);
    return 0;
}
