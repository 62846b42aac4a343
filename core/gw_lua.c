/* The Lua state and its tasks. Each task is a coroutine anchored in the
 * registry; the thread's extra space points back at its task so bindings
 * can find who is calling. Resuming goes through task_run, which handles
 * yields, returns, errors and the cpuTimeout hook in one place. */
#include "gw_lua.h"
#include "gw_conn.h"
#include "gw.h"
#include "gw_lib.h"
#include "gw_log.h"
#include "gw_module.h"
#include "gw_regex.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef GW_LUA_DIR
#define GW_LUA_DIR "lua"
#endif

#define HOOK_EVERY 10000 /* instructions between cpuTimeout checks */
#define POOL_MAX 64       /* finished tasks kept, with their coroutine, for reuse */

struct gw_task {
    struct gw_lua *g;
    lua_State *co;
    int ref;                /* anchors 'co' */
    gw_task_done_fn done;
    void *ud;
    struct gw_wait waits;   /* list head of what it waits on */
    int running;            /* inside lua_resume right now */
    int aborted;            /* abort requested while running */
    int waiting;            /* suspended in loop.wait() */
    int cpu_exceeded;
    struct gw_task *unowned_prev, *unowned_next; /* 'done' is NULL: in g->unowned */
    struct gw_task *pool_next; /* in g->pool */
};

struct gw_lua {
    lua_State *L;
    uv_loop_t *loop;
    struct gw_config cfg;
    int runtime_ref;
    struct gw_task *current;
    double slice_start;
    struct gw_redis *redis;
    struct gateway_module *modules; /* C modules, loaded before the runtime */
    struct gw_task *unowned;        /* tasks nobody waits for (timer callbacks) */
    struct gw_task *pool;           /* finished tasks whose coroutine can run again */
    int npool;
};

/* The hook has only a lua_State; there is one state per process. */
static struct gw_lua *hook_owner;

static struct gw_task **task_slot(lua_State *L) {
    return (struct gw_task **)lua_getextraspace(L);
}

struct gw_task *gw_task_of(lua_State *L) { return *task_slot(L); }
lua_State *gw_lua_state(struct gw_lua *g) { return g->L; }
uv_loop_t *gw_lua_loop(struct gw_lua *g) { return g->loop; }
const struct gw_config *gw_lua_config(struct gw_lua *g) { return &g->cfg; }
void gw_lua_set_redis(struct gw_lua *g, struct gw_redis *r) { g->redis = r; }
struct gw_redis *gw_lua_redis(struct gw_lua *g) { return g->redis; }
lua_State *gw_task_thread(struct gw_task *t) { return t->co; }
struct gw_task *gw_task_current(struct gw_lua *g) { return g->current; }
void gw_task_set_waiting(struct gw_task *t, int waiting) { t->waiting = waiting; }
int gw_task_is_waiting(struct gw_task *t) { return t->waiting; }
void gw_lua_reset_slice(struct gw_lua *g) { g->slice_start = gw_now_ms(); }

int gw_lua_pcall(struct gw_lua *g, int nargs, int nres) {
    double prev_start = g->slice_start;
    g->slice_start = gw_now_ms();
    int rc = lua_pcall(g->L, nargs, nres, 0);
    g->slice_start = prev_start;
    return rc;
}

/* Stop code that runs too long without yielding: inside a task, yield out
 * of it (a pcall in the action cannot catch that); elsewhere, raise. The
 * check repeats every HOOK_EVERY instructions, so even code that catches
 * the error is stopped again at once. */
static void cpu_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    struct gw_lua *g = hook_owner;
    if (!g || g->cfg.cpu_timeout <= 0) return;
    if (gw_now_ms() - g->slice_start <= (double)g->cfg.cpu_timeout) return;
    struct gw_task *t = gw_task_of(L);
    if (t && t == g->current && lua_isyieldable(L)) {
        t->cpu_exceeded = 1;
        lua_yield(L, 0);
        return;
    }
    if (t) t->cpu_exceeded = 1;
    luaL_error(L, "code ran for more than general.cpuTimeout (%d ms) without yielding",
               (int)g->cfg.cpu_timeout);
}

void gw_task_attach(struct gw_task *t, struct gw_wait *w) {
    w->owner = t;
    w->next = t->waits.next;
    w->prev = &t->waits;
    t->waits.next->prev = w;
    t->waits.next = w;
}

void gw_task_detach(struct gw_wait *w) {
    if (!w->owner) return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->owner = NULL;
    w->prev = w->next = NULL;
}

/* Release a task that has ended. A coroutine that returned normally is at
 * rest (its status LUA_OK, no call in progress, nothing left open), so it
 * goes to the pool with its task and serves the next spawn: no new thread,
 * stack and CallInfo list per request. One that raised, was stopped or was
 * aborted is dropped and collected. */
static void task_free(struct gw_task *t, int reusable) {
    struct gw_lua *g = t->g;
    if (!t->done) {
        if (t->unowned_prev) t->unowned_prev->unowned_next = t->unowned_next;
        else g->unowned = t->unowned_next;
        if (t->unowned_next) t->unowned_next->unowned_prev = t->unowned_prev;
    }
    /* Whatever it still owns (timer.after callbacks) outlives it. */
    while (t->waits.next != &t->waits) gw_task_detach(t->waits.next);
    *task_slot(t->co) = NULL;
    if (reusable && g->npool < POOL_MAX && lua_status(t->co) == LUA_OK) {
        lua_settop(t->co, 0);
        t->pool_next = g->pool;
        g->pool = t;
        g->npool++;
        return;
    }
    luaL_unref(g->L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

/* A task for gw_task_spawn: a pooled one, or a new one with a new coroutine. */
static struct gw_task *task_new(struct gw_lua *g) {
    struct gw_task *t = g->pool;
    if (t) {
        g->pool = t->pool_next;
        g->npool--;
        lua_State *co = t->co;
        int ref = t->ref;
        memset(t, 0, sizeof *t);
        t->co = co;
        t->ref = ref;
        /* The action may have set a hook of its own on its coroutine: a new
         * request gets the main thread's, as a new coroutine would. */
        lua_State *L = g->L;
        if (lua_gethook(co) != lua_gethook(L) || lua_gethookmask(co) != lua_gethookmask(L) ||
            lua_gethookcount(co) != lua_gethookcount(L))
            lua_sethook(co, lua_gethook(L), lua_gethookmask(L), lua_gethookcount(L));
        return t;
    }
    t = calloc(1, sizeof *t);
    if (!t) gw_panic("out of memory");
    t->co = lua_newthread(g->L);
    t->ref = luaL_ref(g->L, LUA_REGISTRYINDEX);
    return t;
}

static void task_cancel_waits(struct gw_task *t) {
    while (t->waits.next != &t->waits) {
        struct gw_wait *w = t->waits.next;
        gw_task_detach(w);
        w->cancel(w);
    }
}

void gw_task_abort(struct gw_task *t) {
    if (t->running) {
        t->aborted = 1; /* task_run finishes the job when the resume returns */
        return;
    }
    task_cancel_waits(t);
    lua_resetthread(t->co); /* close pending to-be-closed variables */
    task_free(t, 0);
}

/* Resume 't' with 'nargs' values on its stack. Returns 1 if the task
 * ended (and was freed), 0 if it is suspended. */
static int task_run(struct gw_task *t, int nargs) {
    struct gw_lua *g = t->g;
    struct gw_task *prev = g->current;
    double prev_start = g->slice_start;
    int nres = 0;

    g->current = t;
    g->slice_start = gw_now_ms();
    t->running = 1;
    t->waiting = 0;
    int rc = lua_resume(t->co, prev ? prev->co : g->L, nargs, &nres);
    t->running = 0;
    g->current = prev;
    g->slice_start = prev_start;
    if (!prev) gw_regex_collect(); /* no binding can be holding a pattern now */

    if (t->aborted) {
        lua_settop(t->co, 0);
        t->aborted = 0;
        gw_task_abort(t);
        return 1;
    }
    if (rc == LUA_YIELD && !t->cpu_exceeded) {
        lua_pop(t->co, nres); /* whoever suspended it resumes it */
        return 0;
    }
    enum gw_task_status status = GW_TASK_OK;
    if (t->cpu_exceeded) {
        status = GW_TASK_CPU;
        lua_settop(t->co, 0);
        gw_log(GW_LOG_ERROR, "stopped Lua code that ran for more than general.cpuTimeout (%ld ms)",
               g->cfg.cpu_timeout);
        task_cancel_waits(t);
    } else if (rc != LUA_OK) {
        status = GW_TASK_ERROR;
        const char *msg = lua_tostring(t->co, -1);
        luaL_traceback(t->co, t->co, msg ? msg : "(error object is not a string)", 0);
        lua_remove(t->co, -2);
        nres = 1;
        task_cancel_waits(t);
    }
    if (t->done) t->done(t->ud, status, t->co, status == GW_TASK_CPU ? 0 : nres);
    task_free(t, status == GW_TASK_OK);
    return 1;
}

struct gw_task *gw_task_spawn(struct gw_lua *g, int nargs, gw_task_done_fn done, void *ud) {
    lua_State *L = g->L;
    struct gw_task *t = task_new(g);
    t->g = g;
    t->done = done;
    t->ud = ud;
    t->waits.next = t->waits.prev = &t->waits;
    if (!done) {
        t->unowned_next = g->unowned;
        if (g->unowned) g->unowned->unowned_prev = t;
        g->unowned = t;
    }
    *task_slot(t->co) = t;
    lua_xmove(L, t->co, nargs + 1);
    return task_run(t, nargs) ? NULL : t;
}

void gw_task_resume(struct gw_task *t, int nargs) { task_run(t, nargs); }

void gw_task_abort_unowned(struct gw_lua *g) {
    for (struct gw_task *t = g->unowned, *next; t; t = next) {
        next = t->unowned_next;
        if (!t->running) gw_task_abort(t);
    }
}

/* --- state setup ------------------------------------------------------- */

static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Protected call on the main thread; on error the message is in 'err'. */
static int pcall_main(struct gw_lua *g, int nargs, int nres, char *err, size_t errlen) {
    lua_State *L = g->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    g->slice_start = gw_now_ms();
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc != LUA_OK) {
        /* Only the first line: the file, line and reason. The traceback
         * goes to the log at debug level. */
        const char *msg = lua_tostring(L, -1);
        const char *nl = msg ? strchr(msg, '\n') : NULL;
        gw_log(GW_LOG_DEBUG, "%s", msg ? msg : "?");
        gw_fmt(err, errlen, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg ? msg : "?"), msg ? msg : "?");
        lua_pop(L, 1);
        return GW_ERR;
    }
    return GW_OK;
}

static void preload(lua_State *L, const char *name, lua_CFunction f) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

struct gw_lua *gw_lua_new(uv_loop_t *loop, const char *config_path,
                          const struct gw_config_overrides *ov, struct gw_config *cfg,
                          char *err, size_t errlen) {
    return gw_lua_new_alloc(NULL, NULL, loop, config_path, ov, cfg, err, errlen);
}

/* What gw_lua_new asks of setup_state, and its answer. */
struct setup {
    struct gw_lua *g;
    const char *config_path;
    const struct gw_config_overrides *ov;
    char *err;
    size_t errlen;
    int rc;
};

/* Fill the new state: libraries, package.path, preloads, config, C modules,
 * and the runtime with its actions. It runs under lua_pcall, so running out
 * of memory anywhere in here fails gw_lua_new like any other error instead
 * of aborting in an unprotected call. Sets s->rc; failures other than
 * errors raised leave their message in s->err. */
static int setup_state(lua_State *L) {
    struct setup *s = lua_touserdata(L, 1);
    struct gw_lua *g = s->g;
    lua_settop(L, 0);
    s->rc = GW_ERR;
    luaL_openlibs(L);

    const char *dir = getenv("GATEWAY_LUA_DIR");
    if (!dir || !*dir) dir = GW_LUA_DIR;
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    preload(L, "gateway.core", gw_open_core);
    preload(L, "gateway.loop", gw_open_loop);
    preload(L, "gateway.conn", gw_open_conn);
    preload(L, "cjson", luaopen_cjson);
    lua_pushlightuserdata(L, g);
    lua_setfield(L, LUA_REGISTRYINDEX, "gateway.lua");

    if (gw_config_load(L, s->config_path, s->ov, &g->cfg, s->err, s->errlen) != GW_OK) return 0;
    gw_log_set_level(g->cfg.log_level);
    gw_log_set_json(g->cfg.log_json);
    /* Threads copy the main thread's hook, so every task is covered. */
    lua_sethook(L, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);

    /* C modules load before actions, so api.<module> exists when they run.
     * Each process (every forked worker) loads its own. */
    if (gw_module_load_all(L, -1, g->cfg.config_dir, &g->modules, s->err, s->errlen) != GW_OK)
        return 0;

    lua_getglobal(L, "require");
    lua_pushliteral(L, "gateway.runtime");
    if (pcall_main(g, 1, 1, s->err, s->errlen) != GW_OK) return 0;
    g->runtime_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* runtime.init(config, modules) loads actions, middleware and routes. */
    gw_lua_push_runtime(g, "init");
    lua_insert(L, -3);
    if (pcall_main(g, 2, 0, s->err, s->errlen) != GW_OK) return 0;
    s->rc = GW_OK;
    return 0;
}

struct gw_lua *gw_lua_new_alloc(lua_Alloc alloc, void *ud, uv_loop_t *loop,
                                const char *config_path, const struct gw_config_overrides *ov,
                                struct gw_config *cfg, char *err, size_t errlen) {
    struct gw_lua *g = calloc(1, sizeof *g);
    if (!g) gw_panic("out of memory");
    g->loop = loop;
    g->runtime_ref = LUA_NOREF;
    g->L = alloc ? lua_newstate(alloc, ud) : luaL_newstate();
    if (!g->L) {
        gw_fmt(err, errlen, "cannot create the Lua state: not enough memory");
        goto fail;
    }
    lua_State *L = g->L;
    *task_slot(L) = NULL;
    hook_owner = g;

    struct setup s = {g, config_path, ov, err, errlen, GW_ERR};
    lua_pushcfunction(L, setup_state);
    lua_pushlightuserdata(L, &s);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        gw_fmt(err, errlen, "%s", msg ? msg : "cannot set up the Lua state");
        goto fail;
    }
    if (s.rc != GW_OK) goto fail;
    *cfg = g->cfg;
    return g;
fail:
    gw_lua_free(g);
    return NULL;
}

void gw_lua_free(struct gw_lua *g) {
    if (!g) return;
    if (hook_owner == g) hook_owner = NULL;
    while (g->pool) {
        struct gw_task *t = g->pool;
        g->pool = t->pool_next;
        free(t); /* its coroutine goes with the state */
    }
    gw_module_close_all(g->modules);
    if (g->L) lua_close(g->L);
    gw_module_unload_all(g->modules);
    gw_regex_cache_clear();
    free(g);
}

void gw_lua_push_runtime(struct gw_lua *g, const char *name) {
    lua_rawgeti(g->L, LUA_REGISTRYINDEX, g->runtime_ref);
    lua_getfield(g->L, -1, name);
    lua_remove(g->L, -2);
}

int gw_lua_reload(struct gw_lua *g) {
    char err[1024];
    gw_lua_push_runtime(g, "reload");
    if (pcall_main(g, 0, 0, err, sizeof err) != GW_OK) {
        gw_log(GW_LOG_ERROR, "reload failed, keeping the loaded actions: %s", err);
        return GW_ERR;
    }
    return GW_OK;
}

void gw_lua_print_summary(struct gw_lua *g) {
    char err[1024];
    gw_lua_push_runtime(g, "summary");
    if (pcall_main(g, 0, 1, err, sizeof err) != GW_OK) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    fputs(lua_tostring(g->L, -1) ? lua_tostring(g->L, -1) : "", stdout);
    lua_pop(g->L, 1);
}
