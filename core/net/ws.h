/* The WebSocket transport: upgrades on the web listener at
 * servers.websocket.path become persistent connections (gw_conn). Text
 * messages are reassembled up to maxMessageSize (1009 beyond it); answers
 * queue per connection up to general.maxOutputBuffer, past which a client
 * that does not read is disconnected; each queued answer holds
 * GW_DRAIN_UNSENT (runtime/drain.h) until it is written. */
#ifndef GW_WS_H
#define GW_WS_H

#include <libwebsockets.h>

#include "runtime/runtime.h"

/* Set once before the lws context is created. */
void gw_ws_init(struct gw_runtime *g);

/* Is 'reason' one the WebSocket side handles? The web listener's single
 * lws protocol sends those here and the rest to gw_http_callback. */
int gw_ws_handles(enum lws_callback_reasons reason);

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

size_t gw_ws_session_size(void);

/* Shutdown: close every connection with 1001 once its queue is sent. */
void gw_ws_close_all(void);

#endif
