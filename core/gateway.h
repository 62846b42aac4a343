/* The gateway's public C module API: the only header a module includes.
 * See docs/c-api.md for a tutorial and the reference.
 *
 * A module is a shared object listed in gateway.lua:
 *
 *     modules = { { name = "hello", path = "modules/hello.so", config = { ... } } }
 *
 * It defines, with GATEWAY_MODULE_DECLARE() and two functions:
 *
 *     GATEWAY_MODULE_DECLARE();
 *     int gateway_module_init(struct gateway_module *m);   required: 0 ok, non-zero fails
 *     void gateway_module_free(struct gateway_module *m);  optional
 *
 * Rules:
 * - Threading: the gateway is single-threaded per process. Call these
 *   functions only from the loop thread: inside init/free, inside a Lua
 *   function the module registered, or in a libuv callback on gateway_loop.
 *   Each forked worker loads its own copy of every module (init runs once
 *   per worker).
 * - Ownership: every string passed in is copied; every string returned is
 *   owned by the gateway and stays valid until gateway_module_free returns.
 * - The handle 'm' is valid from init until gateway_module_free returns.
 *   Free runs before the Lua state closes; the .so is unloaded after it.
 * - Versions: GATEWAY_MODULE_API_VERSION changes when a function here
 *   changes or goes. Functions added later keep it: a module that uses one
 *   fails to load into an older gateway with an error naming the symbol.
 *
 * The gateway's own api.redis, api.json, api.regex and api.sleep are
 * modules on this API, linked in statically (core/mod_*.c). */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <lua.h>
#include <uv.h>

#define GATEWAY_MODULE_API_VERSION 1

/* Defines the version symbol the gateway checks before calling init. */
#define GATEWAY_MODULE_DECLARE() \
    const int gateway_module_api_version = GATEWAY_MODULE_API_VERSION

struct gateway_module; /* opaque: one per entry in the modules list */

enum gateway_log_level {
    GATEWAY_LOG_DEBUG, GATEWAY_LOG_INFO, GATEWAY_LOG_NOTICE,
    GATEWAY_LOG_WARNING, GATEWAY_LOG_ERROR, GATEWAY_LOG_CRIT
};

/* What a module defines (declared here so the compiler checks them). */
extern const int gateway_module_api_version;
int gateway_module_init(struct gateway_module *m);
void gateway_module_free(struct gateway_module *m);

/* The module's name from its config entry (also its api.<name> table). */
const char *gateway_module_name(struct gateway_module *m);

/* Log one line through the gateway's logger, with a "module" field. */
void gateway_log(struct gateway_module *m, enum gateway_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Values of the module's own `config` table (top-level keys). A missing
 * key gives 'def'; so does a value of another type (a fraction for _int),
 * with a warning naming the key. The returned string is owned by the
 * gateway (see Rules); 'def' is returned as it is. */
const char *gateway_config_string(struct gateway_module *m, const char *key, const char *def);
long long gateway_config_int(struct gateway_module *m, const char *key, long long def);
double gateway_config_number(struct gateway_module *m, const char *key, double def);
int gateway_config_bool(struct gateway_module *m, const char *key, int def);

/* The gateway's main Lua state, for building in init what a plain function
 * cannot be: tables, closures with upvalues, metatables (luaL_newmetatable).
 * Only during gateway_module_init; leave its stack as you found it, except
 * for the values gateway_register_value pops. */
lua_State *gateway_lua(struct gateway_module *m);

/* Pop the value on top of gateway_lua(m)'s stack and make it
 * api.<module name>.<name> (a table, a closure, a constant). From init only.
 * Returns 0, or -1 when 'name' is empty or taken (the value is popped all
 * the same). */
int gateway_register_value(struct gateway_module *m, const char *name);

/* Make api.<module name>.<name> call 'fn'. The lua_State 'fn' receives is
 * the calling action's coroutine: use it as any lua_CFunction would
 * (luaL_check* for arguments, luaL_error for misuse), and never keep it
 * after returning. Returns 0, or -1 when 'name' is empty or taken. */
int gateway_register_function(struct gateway_module *m, const char *name, lua_CFunction fn);

/* Add a middleware, as a middleware file returning { name = name, priority
 * = priority, global = global ~= 0, preProcessor = pre, postProcessor =
 * post } would (either function may be NULL, not both). 'pre' and 'post'
 * receive the request's data table at stack index 1 and complete when they
 * return: returning nil, "message" (or raising) fails the request like a
 * Lua preProcessor; they may suspend with gateway_async_*. Actions list
 * 'name' in their middleware; a global one runs for every action. It is
 * part of every (re)load. Call from init. Returns 0, or -1 when 'name' is
 * empty or already registered by this module, or both functions are NULL. */
int gateway_register_middleware(struct gateway_module *m, const char *name, int priority,
                                int global, lua_CFunction pre, lua_CFunction post);

/* Connection hooks, as a middleware file returning { name = name, priority
 * = priority, create = create, destroy = destroy } would (either may be
 * NULL, not both): they receive the connection table (id, type, remoteIP,
 * ...) at stack index 1 when a connection of any type opens and closes
 * (each web request is one). They cannot suspend; what they raise is
 * logged and the connection goes on. Call from init. Returns 0, or -1 when
 * 'name' is empty or already registered by this module, or both are NULL. */
int gateway_register_connection_hooks(struct gateway_module *m, const char *name, int priority,
                                      lua_CFunction create, lua_CFunction destroy);

/* The gateway's event loop, for starting libuv work (timers, sockets,
 * uv_queue_work). Valid from init until gateway_module_free returns. */
uv_loop_t *gateway_loop(struct gateway_module *m);

/* Async calls: a registered function that starts work on the loop and
 * suspends the calling action until it completes (as api.redis does).
 *
 *     static int my_fn(lua_State *L) {
 *         struct job *j = ...;                  check arguments, allocate
 *         j->a = gateway_async_begin(L, job_cancel, j);
 *         if (!j->a) { free(j); return luaL_error(L, "..."); }
 *         ... start the libuv work ...
 *         return gateway_async_yield(L);
 *     }
 *     loop callback:  lua_pushinteger(gateway_async_thread(j->a), 42);
 *                     gateway_async_resume(j->a, 1);  my_fn returns 42
 *
 * If the action is aborted first (client gone, actionTimeout, shutdown),
 * cancel(ud) runs exactly once instead: it stops the work and frees the
 * module's state; the handle is freed by the gateway and resume must never
 * be called for it. A handle ends with exactly one of resume or cancel. */
struct gateway_async; /* opaque */

/* Why the code running in 'L' cannot suspend, or NULL when it can: it is
 * not an action's (or middleware's, or timer callback's) coroutine, or a C
 * function such as table.sort is calling it. The text reads after the
 * function's name: luaL_error(L, "api.x.f %s", why). */
const char *gateway_async_unavailable(lua_State *L);

/* Register a wait owned by the action running in 'L'. Returns NULL when
 * gateway_async_unavailable(L) says why, or out of memory: raise with
 * luaL_error then. Call it last before gateway_async_yield, and return
 * that at once. */
struct gateway_async *gateway_async_begin(lua_State *L, void (*cancel)(void *ud), void *ud);

/* Suspend the coroutine: `return gateway_async_yield(L);` from the function.
 * To turn the results into Lua values inside the action (where raising is
 * safe) instead, end the function with `lua_settop(L, 0); return
 * lua_yieldk(L, 0, ctx, k);`: k then runs with the stack as left at the
 * yield (here empty) plus the values resume pushed. */
int gateway_async_yield(lua_State *L);

/* The suspended coroutine, to push the results on before resuming. Only
 * between the yield and resume; never keep it. */
lua_State *gateway_async_thread(struct gateway_async *a);

/* Resume the action with the 'nresults' values pushed on the thread as the
 * function's return values; frees 'a'. Call from a loop callback (not
 * before the function has yielded), and not after cancel ran. The action
 * runs until it next suspends or ends before this returns, so data valid
 * in the callback (a Redis reply) is still valid in a lua_yieldk
 * continuation: push it as light userdata, which allocates nothing.
 * Called from inside a running action instead (one action handing another
 * a value), it resumes on the loop's next turn, never nested: push Lua
 * values then, not pointers to data that dies with the call. */
void gateway_async_resume(struct gateway_async *a, int nresults);

/* Redis: commands over the gateway's shared connection (the one api.redis
 * uses; redis.url in the config). Include <hiredis/hiredis.h> to read the
 * reply (build with `pkg-config --cflags hiredis`; the gateway binary
 * provides hiredis, do not link it). */
struct redisReply;        /* hiredis */
struct gateway_redis_cmd; /* opaque: one pending command */

/* Send a command (arguments are copied; 'argvlen' may not be NULL). Returns
 * 0 with the pending command in '*out' (may be NULL if not wanted); then
 * done(ud, reply, NULL) or done(ud, NULL, "redis unavailable" | "redis
 * timeout") runs exactly once, later, from the loop, unless cancelled. The
 * reply (possibly an error reply, REDIS_REPLY_ERROR) is valid only during
 * the call. Returns -1 when Redis is down or not configured ("redis
 * unavailable": 'done' never runs; also when redis.maxPending commands
 * are waiting), -2 for a command the shared connection refuses
 * (SUBSCRIBE, MULTI, SELECT, ...; FLUSHDB, CONFIG, ... unless
 * redis.allowCommands names them) or bad arguments. */
int gateway_redis_command(struct gateway_module *m, int argc, const char **argv,
                          const size_t *argvlen,
                          void (*done)(void *ud, const struct redisReply *reply, const char *err),
                          void *ud, struct gateway_redis_cmd **out);

/* Why the shared connection refuses this command (SUBSCRIBE, MULTI,
 * SELECT, ...), or NULL when it accepts it: the -2 of gateway_redis_command. */
const char *gateway_redis_refused(int argc, const char **argv, const size_t *argvlen);

/* 1 while the shared connection is up (commands are answered), else 0. */
int gateway_redis_connected(struct gateway_module *m);

/* The answer is no longer wanted (e.g. from a gateway_async cancel
 * callback): 'done' will not run; the reply is dropped when it arrives.
 * Only before 'done' ran; 'c' is invalid afterwards. */
void gateway_redis_cancel(struct gateway_redis_cmd *c);

#endif
