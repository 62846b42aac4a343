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
 *   functions only from the loop thread: inside init/free or inside a Lua
 *   function the module registered. Each forked worker loads its own copy
 *   of every module (init runs once per worker).
 * - Ownership: every string passed in is copied; every string returned is
 *   owned by the gateway and stays valid until gateway_module_free returns.
 * - The handle 'm' is valid from init until gateway_module_free returns.
 *   Free runs before the Lua state closes; the .so is unloaded after it. */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <lua.h>

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
 * key, or a value of another type, gives 'def'. The returned string is
 * owned by the gateway (see Rules); 'def' is returned as it is. */
const char *gateway_config_string(struct gateway_module *m, const char *key, const char *def);
long long gateway_config_int(struct gateway_module *m, const char *key, long long def);
int gateway_config_bool(struct gateway_module *m, const char *key, int def);

/* Make api.<module name>.<name> call 'fn'. The lua_State 'fn' receives is
 * the calling action's coroutine: use it as any lua_CFunction would
 * (luaL_check* for arguments, luaL_error for misuse), and never keep it
 * after returning. Returns 0, or -1 when 'name' is empty or taken. */
int gateway_register_function(struct gateway_module *m, const char *name, lua_CFunction fn);

#endif
