/* See conn.h. Each message becomes a gw_call running
 * runtime.handle(type, ctx) with ctx = { connection, text, binary } or
 * { connection, reject = { status, message, close } }; its answer is (text,
 * closeAfter). The calls in flight are kept in a list so a disconnect can
 * cancel them all. Lua reaches the connection for pushes through a small
 * userdata handle that is emptied when the connection closes. */
#include "runtime/conn.h"
#include "base/gw.h"
#include "runtime/call.h"
#include "base/log.h"
#include "runtime/drain.h"
#include "base/metrics.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct message {
    struct message *prev, *next;
    struct gw_conn *conn;
    struct gw_call *call;
};

struct gw_conn {
    struct gw_runtime *rt;
    const char *type;
    const struct gw_conn_ops *ops;
    void *transport;
    int conn_ref;   /* the Lua connection object */
    int handle_ref; /* keeps the handle alive until it is emptied */
    struct gw_conn_handle *handle;
    struct message *inflight;
    int finishing; /* close once nothing is in flight (gw_conn_finish) */
    int counted;   /* its gw_metrics.conns slot */
};

static void unlink_message(struct message *m) {
    if (m->prev) m->prev->next = m->next;
    else m->conn->inflight = m->next;
    if (m->next) m->next->prev = m->prev;
}

/* The answer of one message: (text or nil, closeAfter). */
static void on_reply(void *ud, lua_State *L, int base, int n) {
    struct message *m = ud;
    struct gw_conn *c = m->conn;
    unlink_message(m);
    free(m);
    size_t len = 0;
    const char *text = n >= 1 && lua_type(L, base) == LUA_TSTRING ? lua_tolstring(L, base, &len) : NULL;
    if (text) c->ops->send(c->transport, text, len);
    if ((n >= 2 && lua_toboolean(L, base + 1)) || (c->finishing && !c->inflight))
        c->ops->close(c->transport);
}

/* [-1, +0] Pop a ctx table, add the connection, and run it as a call. */
static void dispatch(struct gw_conn *c) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->conn_ref);
    lua_setfield(L, -2, "connection");
    struct message *m = calloc(1, sizeof *m);
    if (!m) gw_panic("out of memory");
    m->conn = c;
    m->next = c->inflight;
    if (m->next) m->next->prev = m;
    c->inflight = m;
    m->call = gw_call_new(c->rt, c->type, on_reply, m);
    gw_call_run(m->call); /* may reply, and free m, before returning */
}

/* Room for what the runtime adds to a message's ctx (the envelope's reply,
 * params, data...), so it is not resized on the way. */
#define CTX_FIELDS 12

void gw_conn_message(struct gw_conn *c, const char *text, size_t len, int binary) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    lua_createtable(L, 0, CTX_FIELDS);
    lua_pushlstring(L, text, len);
    lua_setfield(L, -2, "text");
    lua_pushboolean(L, binary);
    lua_setfield(L, -2, "binary");
    dispatch(c);
}

void gw_conn_reject(struct gw_conn *c, int status, const char *message, int close_after) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, close_after);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "reject");
    dispatch(c);
}

int gw_conn_busy(const struct gw_conn *c) { return c->inflight != NULL; }

void gw_conn_finish(struct gw_conn *c) {
    c->finishing = 1;
    if (!c->inflight) c->ops->close(c->transport);
}

struct gw_conn *gw_conn_open(struct gw_runtime *rt, const char *type, const struct gw_conn_ops *ops,
                             void *transport) {
    lua_State *L = gw_vm_state(gw_runtime_vm(rt));
    struct gw_conn *c = calloc(1, sizeof *c);
    if (!c) gw_panic("out of memory");
    c->rt = rt;
    c->type = type;
    c->ops = ops;
    c->transport = transport;
    c->conn_ref = LUA_NOREF;

    int fields = lua_gettop(L);
    c->handle = lua_newuserdatauv(L, sizeof *c->handle, 0);
    c->handle->ops = ops;
    c->handle->transport = transport;
    luaL_setmetatable(L, GW_CONN_HANDLE);
    lua_pushvalue(L, -1);
    c->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    gw_runtime_push(rt, "open");
    lua_pushstring(L, type);
    lua_pushvalue(L, fields);
    lua_pushvalue(L, fields + 1);
    if (gw_vm_pcall(gw_runtime_vm(rt), 3, 1) != LUA_OK || !lua_istable(L, -1)) {
        /* Only a bug in the runtime gets here; keep a bare object so the
         * connection still has one. */
        gw_log(GW_LOG_ERROR, "runtime.open: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_newtable(L);
    }
    c->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, fields - 1);
    gw_drain_hold(GW_DRAIN_CONNS);
    c->counted = strcmp(type, "websocket") == 0 ? GW_METRICS_WEBSOCKET : GW_METRICS_SOCKET;
    gw_metrics.conns[c->counted]++;
    return c;
}

#define CLOSE_GC_KB 16 /* what a closed connection counts as for the collector's pace */

void gw_conn_closed(struct gw_conn *c) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    c->handle->ops = NULL;
    while (c->inflight) {
        struct message *m = c->inflight;
        unlink_message(m);
        gw_call_cancel(m->call);
        free(m);
    }
    gw_runtime_push(c->rt, "close");
    lua_pushstring(L, c->type);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->conn_ref);
    if (gw_vm_pcall(gw_runtime_vm(c->rt), 2, 0) != LUA_OK) {
        gw_log(GW_LOG_ERROR, "runtime.close: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, c->conn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c->handle_ref);
    /* The collector is paced by allocation, but a closing connection frees
     * rather than allocates (its object, its handle, the coroutines of the
     * messages it left in flight). Counting each close as CLOSE_GC_KB of
     * allocation keeps it in step with that garbage: after a burst of
     * dropped clients, memory goes back to what it was instead of waiting
     * for the next cycle. (A forced basic step per close, LUA_GCSTEP 0, cost
     * milliseconds each with thousands of connections open: a burst of 3000
     * closes took 10 s, with timers and Redis replies waiting behind it.) */
    lua_gc(L, LUA_GCSTEP, CLOSE_GC_KB);
    gw_drain_release(GW_DRAIN_CONNS);
    gw_metrics.conns[c->counted]--;
    free(c);
}

void gw_conn_push_peer(lua_State *L, int fd) {
    char ip[64] = "";
    int port = 0;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        }
    }
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "remoteIP");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "remotePort");
}
