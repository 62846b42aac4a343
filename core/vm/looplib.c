/* The "gateway.loop" table: what makes Lua code wait without blocking.
 *   after(ms, fn)     run fn in a task of its own after ms milliseconds
 *   wait()            suspend the calling task until wake(thread, ...)
 *   wake(thread, ...) resume a task suspended in wait(); its results
 *   reset_slice()     restart the cpuTimeout clock
 * (api.sleep is a module on gateway.h: core/mod_sleep.c.) An after() timer
 * set by a task is a gw_wait it owns, so an aborted task cancels it. */
#include "base/gw.h"
#include "vm/libs.h"
#include "vm/vm.h"

#include <lauxlib.h>
#include <stdlib.h>

struct timer_wait {
    struct gw_wait w;
    uv_timer_t timer;
    struct gw_lua *g;
    int fn_ref; /* the callback */
    struct timer_wait *all_prev, *all_next; /* every live timer, for shutdown */
};

static struct timer_wait *all_timers;

static struct gw_lua *loop_owner(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void timer_closed(uv_handle_t *h) {
    free(h->data);
}

static void timer_release(struct timer_wait *tw) {
    if (tw->all_prev) tw->all_prev->all_next = tw->all_next;
    else all_timers = tw->all_next;
    if (tw->all_next) tw->all_next->all_prev = tw->all_prev;
    if (tw->fn_ref != LUA_NOREF) luaL_unref(gw_lua_state(tw->g), LUA_REGISTRYINDEX, tw->fn_ref);
    tw->fn_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&tw->timer, timer_closed);
}

static void timer_cancel(struct gw_wait *w) {
    struct timer_wait *tw = (struct timer_wait *)w;
    uv_timer_stop(&tw->timer);
    timer_release(tw);
}

static void timer_fired(uv_timer_t *h) {
    struct timer_wait *tw = h->data;
    gw_task_detach(&tw->w);
    lua_State *L = gw_lua_state(tw->g);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tw->fn_ref);
    timer_release(tw);
    gw_lua_push_runtime(tw->g, "run_callback"); /* logs errors the callback raises */
    lua_insert(L, -2);
    /* Nothing waits for the result: run_callback logs what the callback
     * raises, the task a CPU stop; shutdown aborts it if it is waiting. */
    gw_task_spawn(tw->g, 1, NULL, NULL);
}

static struct timer_wait *timer_new(lua_State *L, struct gw_lua *g, lua_Integer ms) {
    struct timer_wait *tw = calloc(1, sizeof *tw);
    if (!tw) luaL_error(L, "out of memory");
    tw->g = g;
    tw->fn_ref = LUA_NOREF;
    tw->w.cancel = timer_cancel;
    uv_timer_init(gw_lua_loop(g), &tw->timer);
    /* Lua may have run for a while since the loop last read the clock. */
    uv_update_time(gw_lua_loop(g));
    tw->timer.data = tw;
    uv_timer_start(&tw->timer, timer_fired, (uint64_t)(ms < 0 ? 0 : ms), 0);
    tw->all_next = all_timers;
    if (all_timers) all_timers->all_prev = tw;
    all_timers = tw;
    return tw;
}

static struct gw_task *check_task(lua_State *L, const char *what) {
    struct gw_task *t = gw_task_of(L);
    if (!t || !lua_isyieldable(L))
        luaL_error(L, "%s can only be called from an action, middleware or timer callback "
                      "(not from a coroutine of your own or while loading)", what);
    return t;
}

/* loop.after(ms, fn) */
static int loop_after(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct timer_wait *tw = timer_new(L, loop_owner(L), ms);
    lua_pushvalue(L, 2);
    tw->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    struct gw_task *t = gw_task_of(L);
    if (t) gw_task_attach(t, &tw->w); /* else only shutdown cancels it */
    return 0;
}

/* loop.wait() -> values passed to wake() */
static int loop_wait(lua_State *L) {
    struct gw_task *t = check_task(L, "waiting for next()");
    gw_task_set_waiting(t, 1);
    return lua_yield(L, 0);
}

/* loop.wake(thread, ...) -> true if it was waiting */
static int loop_wake(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTHREAD);
    lua_State *co = lua_tothread(L, 1);
    struct gw_task *t = gw_task_of(co);
    if (!t || !gw_task_is_waiting(t) || co == L) {
        lua_pushboolean(L, 0);
        return 1;
    }
    int nargs = lua_gettop(L) - 1;
    lua_xmove(L, co, nargs);
    gw_task_resume(t, nargs);
    lua_pushboolean(L, 1);
    return 1;
}

/* loop.reset_slice() */
static int loop_reset_slice(lua_State *L) {
    gw_lua_reset_slice(loop_owner(L));
    return 0;
}

static const luaL_Reg loop_funcs[] = {
    {"after", loop_after}, {"wait", loop_wait},
    {"wake", loop_wake},   {"reset_slice", loop_reset_slice}, {NULL, NULL}};

int gw_open_loop(lua_State *L) {
    luaL_newlibtable(L, loop_funcs);
    lua_getfield(L, LUA_REGISTRYINDEX, "gateway.lua");
    if (!lua_islightuserdata(L, -1)) return luaL_error(L, "gateway.loop needs the gateway");
    luaL_setfuncs(L, loop_funcs, 1);
    return 1;
}

void gw_loop_shutdown(void) {
    while (all_timers) {
        struct timer_wait *tw = all_timers;
        gw_task_detach(&tw->w);
        timer_cancel(&tw->w);
    }
}
