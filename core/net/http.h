/* The web transport: HTTP/1.1 on the web listener's sockets, driven by
 * libuv and parsed by gw_http1, and HTTP/2 on the same sockets (gw_h2:
 * prior knowledge, Upgrade: h2c), each stream answered as an HTTP/1.1
 * request with a connection of its own. Each request becomes a ctx table for
 * runtime.handle("web", ctx); its (status, headers, body) answer goes back
 * in one write. Keep-alive and pipelining (answers in order, one request
 * in flight per connection), Expect: 100-continue, chunked bodies. Static
 * files stream from gw_static. A WebSocket upgrade is put to the runtime
 * (runtime.handle("upgrade", ctx): which consumer takes the path, its
 * connect check); once accepted, the socket, the bytes read and the
 * prepared connection object go to libwebsockets (gw_ws_adopt). Answers and
 * files not yet written hold GW_DRAIN_UNSENT (runtime/drain.h). */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <libwebsockets.h>
#include <uv.h>

#include "net/tls.h"
#include "net/ws.h"
#include "runtime/runtime.h"

struct gw_http;

/* The web server of runtime 'rt' on 'loop'; 'ws' on 'vhost' takes the
 * WebSocket upgrades. */
struct gw_http *gw_http_new(struct gw_runtime *rt, uv_loop_t *loop, struct lws_vhost *vhost,
                            struct gw_ws *ws);

/* Serve only /metrics, /health and /ready (net/ops.h), 404 otherwise:
 * the metrics listener of its own (servers.web.metrics.port). */
void gw_http_serve_ops_only(struct gw_http *h);

/* Speak TLS from 'tls' on the connections accepted from now on (the web
 * listener with servers.web.tls); 'tls' outlives them. A WebSocket upgrade
 * runs through a socket pair to lws (wss://). */
void gw_http_use_tls(struct gw_http *h, struct gw_tls *tls);

/* Answer every request with 308 to https://<Host>:<https_port> and the
 * same path and query (servers.web.tls.redirectPort's listener). */
void gw_http_serve_redirect(struct gw_http *h, int https_port);

/* Serve a newly accepted socket; takes ownership of 'fd'. */
void gw_http_accept(struct gw_http *h, int fd);

/* Shutdown has begun: close idle connections now, the others once their
 * answer is written. */
void gw_http_stop(struct gw_http *h);

/* The end: close every connection still open, cancelling its request,
 * and the server's own handles. */
void gw_http_close_all(struct gw_http *h);

/* Free 'h' once the loop has stopped (after gw_http_close_all, its
 * handles have finished closing). */
void gw_http_free(struct gw_http *h);

#endif
