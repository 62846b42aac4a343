/* The web transport: HTTP requests on the web listener become ctx tables
 * for runtime.handle("web", ctx), and its (status, headers, body) answer
 * goes back on the wire. Bodies are capped at servers.web.maxBodySize. */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <libwebsockets.h>
#include <lua.h>

#include "gw_lua.h"

/* Per-connection state lws allocates for the "http" protocol. */
struct gw_http_session;

/* Set once before the lws context is created. */
void gw_http_init(struct gw_lua *g);

int gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

size_t gw_http_session_size(void);

/* Answers ready but not yet handed to the socket (graceful shutdown waits
 * for them). */
int gw_http_unsent(void);

/* [-0, +1, m] Push a table of the request headers, names lower-case
 * (also valid for a WebSocket upgrade until it is established). */
void gw_http_push_headers(lua_State *L, struct lws *wsi);


#endif
