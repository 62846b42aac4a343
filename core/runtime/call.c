/* See call.h. A call owns a task and a timeout timer; it ends exactly
 * once, through finish(), and is freed when its timer handle has closed.
 * From new to finish it holds GW_DRAIN_CALLS, which shutdown waits on. */
#include "runtime/call.h"
#include "base/gw.h"
#include "base/log.h"
#include "runtime/drain.h"

#include <lauxlib.h>
#include <stdlib.h>

struct gw_call {
    struct gw_runtime *rt;
    const char *transport;
    gw_call_reply_fn reply;
    void *ud;
    struct gw_task *task;
    int ctx_ref;
    uv_timer_t timer;
    int finished;
};

static void call_closed(uv_handle_t *h) { free(h->data); }

static void finish(struct gw_call *c) {
    if (c->finished) return;
    c->finished = 1;
    gw_drain_release(GW_DRAIN_CALLS);
    luaL_unref(gw_vm_state(gw_runtime_vm(c->rt)), LUA_REGISTRYINDEX, c->ctx_ref);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, call_closed);
}

/* runtime.fail(transport, ctx, status, message) on the main thread; a
 * status of 0 means bookkeeping only (nobody to answer). */
static void fail(struct gw_call *c, int status, const char *message) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    int base = lua_gettop(L);
    gw_runtime_push(c->rt, "fail");
    lua_pushstring(L, c->transport);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ctx_ref);
    if (status) lua_pushinteger(L, status);
    else lua_pushnil(L);
    lua_pushstring(L, message);
    if (gw_vm_pcall(gw_runtime_vm(c->rt), 4, LUA_MULTRET) != LUA_OK) {
        gw_log(GW_LOG_ERROR, "runtime.fail raised: %s", lua_tostring(L, -1));
        lua_settop(L, base);
        /* Last resort: a bare answer the transport can still send. */
        lua_pushinteger(L, status ? status : 500);
        lua_newtable(L);
        lua_pushliteral(L, "{\"error\":\"The server experienced an internal error\"}");
    }
    gw_call_reply_fn reply = c->reply;
    void *ud = c->ud;
    finish(c);
    if (status && reply) reply(ud, L, base + 1, lua_gettop(L) - base);
    lua_settop(L, base);
}

static void task_done(void *ud, enum gw_task_status status, lua_State *co, int nres) {
    struct gw_call *c = ud;
    c->task = NULL;
    if (status == GW_TASK_OK) {
        gw_call_reply_fn reply = c->reply;
        void *rud = c->ud;
        finish(c);
        reply(rud, co, lua_gettop(co) - nres + 1, nres);
        return;
    }
    if (status == GW_TASK_ERROR) gw_log(GW_LOG_ERROR, "%s", lua_tostring(co, -1));
    fail(c, 500, "The server experienced an internal error");
}

static void timed_out(uv_timer_t *h) {
    struct gw_call *c = h->data;
    if (c->task) {
        gw_task_abort(c->task);
        c->task = NULL;
    }
    fail(c, 504, "action timed out");
}

struct gw_call *gw_call_new(struct gw_runtime *rt, const char *transport, gw_call_reply_fn reply,
                            void *ud) {
    struct gw_call *c = calloc(1, sizeof *c);
    if (!c) gw_panic("out of memory");
    c->rt = rt;
    c->transport = transport;
    c->reply = reply;
    c->ud = ud;
    c->ctx_ref = LUA_NOREF;
    uv_timer_init(gw_vm_loop(gw_runtime_vm(rt)), &c->timer);
    c->timer.data = c;
    gw_drain_hold(GW_DRAIN_CALLS);
    return c;
}

void gw_call_run(struct gw_call *c) {
    lua_State *L = gw_vm_state(gw_runtime_vm(c->rt));
    lua_pushvalue(L, -1);
    c->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    long timeout = gw_runtime_config(c->rt)->action_timeout;
    if (timeout > 0) {
        uv_update_time(gw_vm_loop(gw_runtime_vm(c->rt)));
        uv_timer_start(&c->timer, timed_out, (uint64_t)timeout, 0);
    }
    gw_runtime_push(c->rt, "handle");
    lua_pushstring(L, c->transport);
    lua_rotate(L, -3, 2); /* handle, transport, ctx */
    c->task = gw_task_spawn(gw_runtime_vm(c->rt), 2, task_done, c);
}

void gw_call_cancel(struct gw_call *c) {
    if (c->finished) return;
    if (c->task) {
        gw_task_abort(c->task);
        c->task = NULL;
    }
    c->reply = NULL;
    fail(c, 0, "the client went away");
}
