/* The "gateway.conn" table: server push from Lua to a persistent
 * connection (WebSocket, TCP), through the handle runtime.open received.
 *   send(handle, text) -> true | false (closed, or the client too far behind)
 *   close(handle)      -> true | false (already closed)
 * Close comes after what is queued has been sent. */
#include "base/gw.h"
#include "runtime/connlib.h"

#include <lauxlib.h>

static int l_send(lua_State *L) {
    struct gw_conn_handle *h = luaL_checkudata(L, 1, GW_CONN_HANDLE);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, h->ops && h->ops->send(h->transport, text, len) == GW_OK);
    return 1;
}

static int l_close(lua_State *L) {
    struct gw_conn_handle *h = luaL_checkudata(L, 1, GW_CONN_HANDLE);
    int open = h->ops != NULL;
    if (open) h->ops->close(h->transport);
    lua_pushboolean(L, open);
    return 1;
}

int gw_open_conn(lua_State *L) {
    static const luaL_Reg fns[] = {{"send", l_send}, {"close", l_close}, {NULL, NULL}};
    luaL_newmetatable(L, GW_CONN_HANDLE);
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
