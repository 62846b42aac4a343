/* The "gateway.loop" table: what makes Lua code wait without blocking.
 *   after(ms, fn, ...) run fn(...) in a task of its own after ms milliseconds
 *   wait()             suspend the calling task until wake(thread, ...)
 *   wake(thread, ...)  resume a task suspended in wait(), on the loop's next
 *                      turn; its values are what wait() returns
 *   reset_slice()      restart the cpuTimeout clock
 * (api.sleep is a module on gateway.h: modules/mod_sleep.c.) An after()
 * timer set by a task is a gw_wait it owns, so an aborted task cancels it.
 * At shutdown the server waits for timers due before its deadline
 * (gw_loop_timers_due); every timer cancelled after gw_loop_shutdown_begin
 * is logged as dropped. */
#include "base/gw.h"
#include "base/log.h"
#include "vm/libs.h"
#include "vm/vm.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct timer_wait {
    struct gw_wait w;
    uv_timer_t timer;
    struct gw_vm *vm;
    int fn_ref; /* { fn, args... } */
    int nargs;
    uint64_t due;  /* loop time (uv_now) it fires at */
    int late;      /* set during shutdown by a timer callback: not waited for */
    struct timer_wait *all_prev, *all_next; /* every live timer, for shutdown */
};

static struct timer_wait *all_timers;
static int shutting_down;
static int dropped_logged; /* one line per dropped timer, up to DROPPED_LINES */
#define DROPPED_LINES 10

static struct gw_vm *loop_owner(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void timer_closed(uv_handle_t *h) {
    free(h->data);
}

static void timer_release(struct timer_wait *tw) {
    if (tw->all_prev) tw->all_prev->all_next = tw->all_next;
    else all_timers = tw->all_next;
    if (tw->all_next) tw->all_next->all_prev = tw->all_prev;
    if (tw->fn_ref != LUA_NOREF) luaL_unref(gw_vm_state(tw->vm), LUA_REGISTRYINDEX, tw->fn_ref);
    tw->fn_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&tw->timer, timer_closed);
}

/* Work that will never run, said in the log (never lost silently). */
static void log_dropped(struct timer_wait *tw) {
    if (dropped_logged++ >= DROPPED_LINES) return;
    uint64_t now = uv_now(tw->timer.loop);
    long long due_in = tw->due > now ? (long long)(tw->due - now) : 0;
    char due_in_text[24], due_at[40];
    snprintf(due_in_text, sizeof due_in_text, "%lld", due_in);
    double at = gw_wall_ms() + (double)due_in;
    time_t secs = (time_t)(at / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(due_at, sizeof due_at, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(due_at + n, sizeof due_at - n, ".%03dZ", (int)((long long)at % 1000));
    struct gw_log_field fields[] = {
        {"due_in_ms", due_in_text, strlen(due_in_text), 1},
        {"due_at", due_at, strlen(due_at), 0},
    };
    gw_log_fields(GW_LOG_WARNING, "api.timer.after callback dropped at shutdown", fields, 2);
}

static void timer_cancel(struct gw_wait *w) {
    struct timer_wait *tw = (struct timer_wait *)w;
    if (shutting_down) log_dropped(tw);
    uv_timer_stop(&tw->timer);
    timer_release(tw);
}

static void timer_fired(uv_timer_t *h) {
    struct timer_wait *tw = h->data;
    gw_task_detach(&tw->w);
    struct gw_vm *vm = tw->vm;
    lua_State *L = gw_vm_state(vm);
    int nargs = tw->nargs;
    lua_rawgeti(L, LUA_REGISTRYINDEX, tw->fn_ref);
    timer_release(tw);
    int packed = lua_gettop(L);
    for (int i = 1; i <= nargs + 1; i++) lua_rawgeti(L, packed, i);
    lua_remove(L, packed);
    /* Nothing waits for the result: what the function raises ends its task
     * (api.timer.after gives one that logs it); shutdown aborts it if it is
     * still waiting. */
    gw_task_spawn(vm, nargs, NULL, NULL);
}

static struct timer_wait *timer_new(lua_State *L, struct gw_vm *vm, lua_Integer ms) {
    struct timer_wait *tw = calloc(1, sizeof *tw);
    if (!tw) luaL_error(L, "out of memory");
    tw->vm = vm;
    tw->fn_ref = LUA_NOREF;
    tw->w.cancel = timer_cancel;
    uv_timer_init(gw_vm_loop(vm), &tw->timer);
    /* Lua may have run for a while since the loop last read the clock. */
    uv_update_time(gw_vm_loop(vm));
    tw->timer.data = tw;
    uv_timer_start(&tw->timer, timer_fired, (uint64_t)(ms < 0 ? 0 : ms), 0);
    tw->due = uv_now(gw_vm_loop(vm)) + (uint64_t)(ms < 0 ? 0 : ms);
    tw->all_next = all_timers;
    if (all_timers) all_timers->all_prev = tw;
    all_timers = tw;
    return tw;
}

/* loop.after(ms, fn, ...) */
static int loop_after(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 2;
    lua_createtable(L, nargs + 1, 0); /* before the timer: this may raise */
    for (int i = 1; i <= nargs + 1; i++) {
        lua_pushvalue(L, i + 1);
        lua_rawseti(L, -2, i);
    }
    int packed = luaL_ref(L, LUA_REGISTRYINDEX);
    struct timer_wait *tw = timer_new(L, loop_owner(L), ms);
    tw->fn_ref = packed;
    tw->nargs = nargs;
    struct gw_task *t = gw_task_of(L);
    if (t) gw_task_attach(t, &tw->w); /* else only shutdown cancels it */
    /* A timer callback that sets another while the server drains (a job that
     * reschedules itself) would otherwise hold the drain to its deadline. */
    tw->late = shutting_down && t && gw_task_is_unowned(t);
    return 0;
}

/* loop.wait() -> values passed to wake() */
static int loop_wait(lua_State *L) {
    const char *why = gw_task_cannot_wait(L);
    if (why) return luaL_error(L, "waiting for next(): %s", why);
    gw_task_set_waiting(gw_task_of(L), 1);
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
    gw_task_wake(t, nargs);
    lua_pushboolean(L, 1);
    return 1;
}

/* loop.reset_slice() */
static int loop_reset_slice(lua_State *L) {
    gw_vm_reset_slice(loop_owner(L));
    return 0;
}

static const luaL_Reg loop_funcs[] = {
    {"after", loop_after}, {"wait", loop_wait},
    {"wake", loop_wake},   {"reset_slice", loop_reset_slice}, {NULL, NULL}};

int gw_open_loop(lua_State *L) {
    luaL_newlibtable(L, loop_funcs);
    struct gw_vm *vm = gw_vm_of(L);
    if (!vm) return luaL_error(L, "gateway.loop needs the gateway");
    lua_pushlightuserdata(L, vm);
    luaL_setfuncs(L, loop_funcs, 1);
    return 1;
}

void gw_loop_shutdown_begin(void) {
    shutting_down = 1;
    dropped_logged = 0;
}

int gw_loop_timers_due(uint64_t deadline) {
    int n = 0;
    for (struct timer_wait *tw = all_timers; tw; tw = tw->all_next)
        if (!tw->late && tw->due <= deadline) n++;
    return n;
}

void gw_loop_shutdown(void) {
    int n = 0;
    uint64_t first = UINT64_MAX, last = 0, now = 0;
    shutting_down = 1;
    for (struct timer_wait *tw = all_timers; tw; tw = tw->all_next) {
        now = uv_now(tw->timer.loop);
        if (tw->due < first) first = tw->due;
        if (tw->due > last) last = tw->due;
        n++;
    }
    while (all_timers) {
        struct timer_wait *tw = all_timers;
        gw_task_detach(&tw->w);
        timer_cancel(&tw->w);
    }
    if (n > 0)
        gw_log(GW_LOG_WARNING, "shutdown: dropped %d api.timer.after callback%s not yet run (due in %llu to %llu ms)",
               n, n == 1 ? "" : "s", (unsigned long long)(first > now ? first - now : 0),
               (unsigned long long)(last > now ? last - now : 0));
}
