/* Server push: what a persistent connection's Lua handle reaches. The
 * transport gives its ops (runtime/conn.c keeps them on the handle), and
 * "gateway.conn" (connlib.c) calls them. On its own, below conn.c, so the
 * preload list can name the opener without a circle. */
#ifndef GW_CONNLIB_H
#define GW_CONNLIB_H

#include <lua.h>
#include <stddef.h>

/* What a transport provides. Both may be called from inside a message's
 * reply and from Lua (server push); neither may close synchronously:
 * closing is reported later through gw_conn_closed(). */
struct gw_conn_ops {
    /* Queue one message for the client. GW_ERR means it was not queued
     * (the client is too far behind or already closing). */
    int (*send)(void *transport, const char *msg, size_t len);
    /* Close after what is already queued has been sent. */
    void (*close)(void *transport);
};

/* The Lua side's handle on a connection (what runtime.open receives): a
 * userdata of metatable GW_CONN_HANDLE, emptied (ops NULL) when the
 * connection closes. */
#define GW_CONN_HANDLE "gateway.conn.handle"
struct gw_conn_handle {
    const struct gw_conn_ops *ops; /* NULL once the connection has closed */
    void *transport;
};

/* require "gateway.conn": send(handle, text) and close(handle). */
int gw_open_conn(lua_State *L);

#endif
