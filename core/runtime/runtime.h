/* The composition root: one Lua runtime made of the vm, the config, the C
 * modules and the Lua side (gateway.runtime) with its actions. Transports
 * hold it, and reach the Lua side through gw_runtime_push. */
#ifndef GW_RUNTIME_H
#define GW_RUNTIME_H

#include <lua.h>
#include <stddef.h>
#include <uv.h>

#include "vm/config.h"
#include "vm/vm.h"

struct gw_runtime;
struct gw_redis;

/* Create the vm, load 'config_path' (NULL for defaults) with the
 * overrides, the C modules, then the Lua runtime with its actions and
 * middleware; '*cfg' gets the config. On error returns NULL and a one-line
 * message in 'err'. Keeps a copy of the path and of 'ov' for reloads ('ov''s
 * strings must outlive the runtime, as argv's do). */
struct gw_runtime *gw_runtime_new(uv_loop_t *loop, const char *config_path,
                                  const struct gw_config_overrides *ov, struct gw_config *cfg,
                                  char *err, size_t errlen);

/* gw_runtime_new with the state's memory from 'alloc' and 'ud' (as
 * lua_newstate takes them; NULL: the standard allocator), so tests can
 * make allocations fail on demand. */
struct gw_runtime *gw_runtime_new_alloc(lua_Alloc alloc, void *ud, uv_loop_t *loop,
                                        const char *config_path,
                                        const struct gw_config_overrides *ov,
                                        struct gw_config *cfg, char *err, size_t errlen);
void gw_runtime_free(struct gw_runtime *rt);

struct gw_vm *gw_runtime_vm(struct gw_runtime *rt);
const struct gw_config *gw_runtime_config(struct gw_runtime *rt);

/* The Redis client api.redis and the modules use (NULL: none, calls fail
 * with "redis unavailable"). The server owns it and sets it while it runs. */
void gw_runtime_set_redis(struct gw_runtime *rt, struct gw_redis *r);

/* [-0, +1, m] Push field 'name' of the Lua runtime (gateway.runtime). */
void gw_runtime_push(struct gw_runtime *rt, const char *name);

/* SIGHUP: re-read the config file with the same overrides (gw_config_reload:
 * live keys applied, the others logged as needing a restart; a file that
 * fails keeps the config in force), then actions, middleware and routes; on
 * failure the old set stays and the reason is logged. Returns GW_OK, or
 * GW_ERR when the actions could not be reloaded. */
int gw_runtime_reload(struct gw_runtime *rt);

/* The folder the Lua runtime is loaded from: GATEWAY_LUA_DIR, else
 * <bindir>/../share/gateway/lua when it holds gateway/runtime.lua (an
 * installed copy), else the source tree's lua/ baked in at build time.
 * Static storage; the same answer on every call. */
const char *gw_runtime_lua_dir(void);

/* --check: print what was loaded. */
void gw_runtime_print_summary(struct gw_runtime *rt);

/* `gateway openapi`: print the OpenAPI document of what was loaded to stdout.
 * GW_ERR (the reason on stderr) when it cannot be built or written. */
int gw_runtime_print_openapi(struct gw_runtime *rt);

#endif
