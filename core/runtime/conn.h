/* A persistent client connection (WebSocket or TCP) as the runtime sees
 * it: one Lua connection object for its whole life, the messages it has in
 * flight, and a way for answers and server pushes to reach the client.
 * Transports own the socket; this module owns everything in between. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <lua.h>
#include <stddef.h>

#include "runtime/connlib.h"
#include "runtime/runtime.h"

struct gw_conn;

/* [-1, +0] Pop a table of connection fields (remoteIP, remotePort,
 * rawConnection...) and open a connection of 'type' ("websocket",
 * "socket"): runtime.open creates the Lua object and runs the create
 * middleware. */
struct gw_conn *gw_conn_open(struct gw_runtime *rt, const char *type, const struct gw_conn_ops *ops,
                             void *transport);

/* One message from the client (a text frame, a line). 'binary' marks a
 * binary WebSocket frame. */
void gw_conn_message(struct gw_conn *c, const char *text, size_t len, int binary);

/* Input the transport refused before it became a message (a line over
 * maxLineLength): answered with an error envelope of 'status', and the
 * connection closed after it when 'close_after' is set (a line past
 * lineTimeout). */
void gw_conn_reject(struct gw_conn *c, int status, const char *message, int close_after);

/* 1 while a message of 'c' is in flight (its answer not given yet). */
int gw_conn_busy(const struct gw_conn *c);

/* The client has sent all it will (it shut down its side): close the
 * connection, through ops->close, once no message is in flight, so the
 * answers to what it sent still reach it. */
void gw_conn_finish(struct gw_conn *c);

/* The client is gone: cancel the messages in flight, run the destroy
 * middleware, release the Lua object, free 'c'. The transport must not
 * use 'c' afterwards; ops are not called any more. */
void gw_conn_closed(struct gw_conn *c);

/* [-0, +0, m] Set remoteIP and remotePort of the peer of socket 'fd' in
 * the table on top ("" and 0 when unknown). Every transport's connection
 * fields start with these. */
void gw_conn_push_peer(lua_State *L, int fd);

#endif
