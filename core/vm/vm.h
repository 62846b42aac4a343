/* The process's one Lua state, and tasks: coroutines the event loop
 * resumes. A task suspends on waits (timers, Redis commands) that it owns, so
 * aborting a task cancels everything it was waiting for. */
#ifndef GW_LUA_H
#define GW_LUA_H

#include <lua.h>
#include <uv.h>

#include "vm/config.h"

struct gw_lua;
struct gw_task;
struct gw_redis;

/* Something a task waits on. 'cancel' stops it and releases it; it is
 * called when the owning task is aborted. Completion must detach it first. */
struct gw_wait {
    struct gw_wait *prev, *next;
    struct gw_task *owner;
    void (*cancel)(struct gw_wait *w);
};

enum gw_task_status {
    GW_TASK_OK,    /* returned: its results are on the task's thread */
    GW_TASK_ERROR, /* raised: the message (with traceback) is on the thread */
    GW_TASK_CPU    /* stopped by the cpuTimeout hook */
};

/* Called once when a task ends by itself (not when aborted). The thread
 * and its stack are valid only during the call; the task is freed after. */
typedef void (*gw_task_done_fn)(void *ud, enum gw_task_status status, lua_State *co, int nres);

/* Create the state, load 'config_path' (NULL for defaults) with the
 * overrides, and load actions and middleware. On error returns NULL and a
 * one-line message in 'err'. */
struct gw_lua *gw_lua_new(uv_loop_t *loop, const char *config_path,
                          const struct gw_config_overrides *ov, struct gw_config *cfg,
                          char *err, size_t errlen);

/* gw_lua_new with the state's memory from 'alloc' and 'ud' (as
 * lua_newstate takes them; NULL: the standard allocator), so tests can
 * make allocations fail on demand. */
struct gw_lua *gw_lua_new_alloc(lua_Alloc alloc, void *ud, uv_loop_t *loop,
                                const char *config_path, const struct gw_config_overrides *ov,
                                struct gw_config *cfg, char *err, size_t errlen);
void gw_lua_free(struct gw_lua *g);

lua_State *gw_lua_state(struct gw_lua *g);
uv_loop_t *gw_lua_loop(struct gw_lua *g);
const struct gw_config *gw_lua_config(struct gw_lua *g);

/* The Redis client api.redis uses (NULL: none, calls fail with "redis
 * unavailable"). The server owns it and sets it while it runs. */
void gw_lua_set_redis(struct gw_lua *g, struct gw_redis *r);
struct gw_redis *gw_lua_redis(struct gw_lua *g);

/* [-0, +1, m] Push field 'name' of the runtime module (gateway.runtime). */
void gw_lua_push_runtime(struct gw_lua *g, const char *name);

/* lua_pcall on the main state with a CPU slice of its own: for calls
 * from C into the runtime (they start with a fresh general.cpuTimeout,
 * however long the loop was idle before). */
int gw_lua_pcall(struct gw_lua *g, int nargs, int nres);

/* Re-read actions, middleware and routes; on failure the old set stays
 * and the reason is logged. Returns GW_OK or GW_ERR. */
int gw_lua_reload(struct gw_lua *g);

/* --check: print what was loaded. */
void gw_lua_print_summary(struct gw_lua *g);

/* [-(nargs+1), +0] Pop a function and its 'nargs' arguments from the main
 * stack and run them in a new coroutine, right away. Returns the task, or
 * NULL when it already ended during this first run ('done' was called).
 * With 'done' NULL nobody waits for the task: gw_task_abort_unowned stops
 * it if it is still suspended at shutdown. */
struct gw_task *gw_task_spawn(struct gw_lua *g, int nargs, gw_task_done_fn done, void *ud);

/* The suspended task's thread, for pushing resume arguments. */
lua_State *gw_task_thread(struct gw_task *t);

/* Resume a suspended task with 'nargs' values pushed on its thread. */
void gw_task_resume(struct gw_task *t, int nargs);

/* Stop a task for good: cancel its waits, drop its coroutine, free it.
 * 'done' is not called. Safe from inside the task's own callbacks. */
void gw_task_abort(struct gw_task *t);

/* Abort every task spawned without a 'done' (timer callbacks) that is
 * still suspended: at shutdown, so their waits (module timers too) are
 * cancelled instead of keeping the loop alive. */
void gw_task_abort_unowned(struct gw_lua *g);

/* The task whose coroutine is 'L', or NULL (main thread, user coroutine). */
struct gw_task *gw_task_of(lua_State *L);

/* The task now running, if any. */
struct gw_task *gw_task_current(struct gw_lua *g);

void gw_task_attach(struct gw_task *t, struct gw_wait *w);
void gw_task_detach(struct gw_wait *w);

/* Suspend-until-woken, used by gateway.loop's wait()/wake(). */
void gw_task_set_waiting(struct gw_task *t, int waiting);
int gw_task_is_waiting(struct gw_task *t);

/* Restart the cpuTimeout clock (between files while loading). */
void gw_lua_reset_slice(struct gw_lua *g);

#endif
