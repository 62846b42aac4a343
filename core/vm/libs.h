/* The Lua libraries the vm provides, one file each, named after its table
 * (as Lua's own l*lib.c are). Each opener pushes its table; the runtime
 * preloads them (runtime/runtime.c), and the .so files in build/lua/gateway give
 * the pure ones to plain Lua for the busted specs (vm/luamod.c).
 *   gw_open_core  -> "gateway.core"  (corelib.c): clocks, query parsing,
 *                    UTF-8 checks, readdir, logging, ids, JSON decoding of
 *                    requests, regex matching of client input
 *   gw_open_regex -> "gateway.regex" (regexlib.c), also api.regex
 *   gw_open_json  -> "gateway.json"  (jsonlib.c), also api.json; a cjson
 *                    instance of its own at each call
 *   gw_open_loop  -> "gateway.loop"  (looplib.c): after, wait/wake; needs
 *                    the event loop, so only inside the gateway
 *   gw_open_pubsub -> "gateway.pubsub" (pubsublib.c): the cluster's Redis
 *                    pub/sub connection and fire-and-forget commands
 * api.regex and api.json are registered by the built-in modules
 * (modules/builtins.c), from the same openers. */
#ifndef GW_LIBS_H
#define GW_LIBS_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

int gw_open_core(lua_State *L);
int gw_open_regex(lua_State *L);
int gw_open_json(lua_State *L);
int gw_open_loop(lua_State *L);
int gw_open_pubsub(lua_State *L);

struct gw_redis;

/* Start this worker's pub/sub connection to 'url' (a subscriber on the
 * loop of the state gateway.pubsub's start() was called in), subscribing
 * to the channels Lua asked for, and its tick every 'tick_ms'; 'cmd' is
 * the shared command connection publish() and send() use. Does nothing
 * when Lua never called start(). GW_ERR with a reason in 'err' for a bad
 * URL. */
int gw_pubsub_start(struct gw_redis *cmd, const char *url, long tick_ms, char *err, size_t errlen);

/* Stop the ticks and free the subscriber (the loop must run on to close
 * it); publish() and send() return false from now on. Before the command
 * connection is freed. */
void gw_pubsub_stop(void);

/* [-0, +1] match(subject, pattern [, flags]) and test(...) as gateway.regex
 * has them (regexlib.c); with 'limit_is_nomatch' a match over pcre2's
 * limits is no match instead of an error: core.regex_match and
 * core.regex_test (corelib.c), for client input (routes, validators). */
int gw_regex_lua_match(lua_State *L, int limit_is_nomatch);
int gw_regex_lua_test(lua_State *L, int limit_is_nomatch);

/* [-0, +0, m] Add one decoded key/value pair to the table on top of L's
 * stack, a repeated key becoming a list of its values (as Node's
 * querystring does). A gw_query_pair_fn: 'ud' is the lua_State. The web
 * transport's query table and core.parse_query share the rule. */
int gw_lib_add_pair(void *ud, const char *key, size_t klen, const char *val, size_t vlen);

/* A protected call with the luaMemoryLimit cap lifted, which vm.c puts in the
 * registry of every state it makes under GW_UNCAPPED_KEY (a light userdata to
 * this struct, the same for all); the libraries look it up there, as core.so
 * has no vm.c. Without a cap it is a plain lua_pcall. It is
 * for a C library that leaks when an allocation fails inside it: lua-cjson's
 * decode keeps a malloc'd buffer on its C stack. What the call made past the
 * cap is measured once it returns: its 'nres' results are then dropped and
 * LUA_ERRMEM is returned with the memory error message on the stack, as if
 * the cap had refused an allocation (the task's log line names the limit). */
struct gw_uncapped {
    int (*pcall)(lua_State *L, int nargs, int nres);
};
#define GW_UNCAPPED_KEY "gw.vm.uncapped"

/* Graceful shutdown has begun: from now on a timer cancelled is logged as
 * dropped, and one set by a timer callback is not counted by
 * gw_loop_timers_due. */
void gw_loop_shutdown_begin(void);

/* How many pending loop.after timers fire at or before 'deadline' (loop
 * time, uv_now): work the drain waits for. */
int gw_loop_timers_due(uint64_t deadline);

/* Cancel every pending loop.after timer (shutdown), logging each as
 * dropped and how many there were. */
void gw_loop_shutdown(void);

#endif
