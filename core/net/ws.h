/* The WebSocket transport: upgrades on the web listener at
 * a path a consumer takes (the runtime decides; net/http.c asks) become
 * persistent connections (gw_conn). Text
 * messages are reassembled up to maxMessageSize (1009 beyond it), and
 * within fragmentTimeout of their first part (1008 past it); pings and
 * the pong deadline are lws's idle policy (net/server.c). Answers
 * queue per connection up to general.maxOutputBuffer, past which a client
 * that does not read is disconnected; each queued answer holds
 * GW_DRAIN_UNSENT (runtime/drain.h) until it is written. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

#include "runtime/runtime.h"

struct gw_ws;

/* The WebSocket server of runtime 'rt'. The lws protocol whose callback
 * calls gw_ws_callback carries it in its 'user' field (set before the lws
 * context is created), where gw_ws_callback finds it. */
struct gw_ws *gw_ws_new(struct gw_runtime *rt);

/* Hand lws the socket 'fd' of an upgrade the runtime accepted, with the
 * request's bytes (and any read behind them) in 'buf'; 'ref' is the
 * registry reference of the connection object the runtime prepared, which
 * the connection takes when the handshake completes (or which is released
 * when it does not). GW_ERR when lws refused it at once (it closes 'fd'). */
int gw_ws_adopt(struct gw_ws *ws, struct lws_vhost *vhost, int fd, const char *buf, size_t len, int ref);

/* Is 'reason' one the WebSocket side handles? The web listener's single
 * lws protocol sends those here and the rest to lws_callback_http_dummy. */
int gw_ws_handles(enum lws_callback_reasons reason);

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

size_t gw_ws_session_size(void);

/* Shutdown: close every connection with 1001 once its queue is sent. */
void gw_ws_close_all(struct gw_ws *ws);

/* Free 'ws' once the lws context is destroyed (no connection is left). */
void gw_ws_free(struct gw_ws *ws);

#endif
