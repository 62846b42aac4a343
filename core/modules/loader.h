/* Loading C modules (the `modules` config key): what the runtime asks of
 * modules/. Modules themselves include gateway.h only. */
#ifndef GW_LOADER_H
#define GW_LOADER_H

#include <lua.h>
#include <stddef.h>

struct gateway_module;
struct gw_redis;

/* [-0, +1, m] Load the built-in modules (modules/builtins.c), then every entry
 * of config.modules (the config table at 'config_idx'): dlopen, or the
 * linked-in module of that name when it has no path; check the API
 * version; call init. Paths are relative to 'config_dir'. Pushes a list
 * { {name=, path=, builtin=, functions=, middleware=} }, built-ins first,
 * for the runtime, which places each functions table in `api`. Loaded
 * modules are prepended to '*list' as they load, so on error (GW_ERR, a
 * one-line message naming the module in 'err', nothing pushed) the caller
 * still frees them with the two functions below. */
int gw_module_load_all(lua_State *L, int config_idx, const char *config_dir,
                       struct gateway_module **list, char *err, size_t errlen);

/* Call each module's gateway_module_free and drop its Lua refs: before
 * lua_close, so it can still use the state. */
void gw_module_close_all(struct gateway_module *list);

/* dlclose and free the handles: after lua_close, since the state may hold
 * functions (and __gc metamethods) that live in the modules' code. */
void gw_module_unload_all(struct gateway_module *list);

/* The Redis client gateway_redis_* use, for every module on the list
 * (NULL: none, they fail as "redis unavailable"). */
void gw_module_set_redis(struct gateway_module *list, struct gw_redis *r);

#endif
