/* The TCP socket transport (servers.socket): a line protocol on plain
 * libuv streams. Each line ("\n" or "\r\n") is one message of a persistent
 * connection (gw_conn); lines over maxLineLength are answered 413 and
 * dropped; a line not completed within lineTimeout is answered 408 and the
 * connection closed; a client silent for idleTimeout is closed; a client
 * that half-closes gets its answers, then the close. Answers are written
 * as lines, up to general.maxOutputBuffer queued per client; each line
 * being written holds GW_DRAIN_UNSENT. */
#ifndef GW_SOCKET_H
#define GW_SOCKET_H

#include <uv.h>

#include "runtime/runtime.h"

struct gw_socket;

/* Serve connections accepted on the listening 'fd' (owned by the caller)
 * with the runtime 'rt'. NULL when 'fd' cannot be polled. */
struct gw_socket *gw_socket_new(struct gw_runtime *rt, uv_loop_t *loop, int fd);

/* Stop accepting (graceful shutdown starts). */
void gw_socket_stop_accepting(struct gw_socket *s);

/* Close every connection: 'graceful' after what is queued for it has
 * been sent, else now (their handles finish closing on the loop). */
void gw_socket_close(struct gw_socket *s, int graceful);

/* Free 's' once the loop has stopped (no handle of it is left). */
void gw_socket_free(struct gw_socket *s);

#endif
