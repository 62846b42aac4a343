/* The gateway's own modules, in load order. api.regex and api.json are
 * the tables of gateway.regex and gateway.json (vm/regexlib.c,
 * vm/jsonlib.c), registered field by field; api.redis and api.sleep suspend actions through the
 * async helper (mod_redis.c, mod_sleep.c). */
#include "modules/builtins.h"
#include "gateway.h"
#include "modules/mods.h"
#include "vm/libs.h"

#include <lauxlib.h>

/* Register every field of the table 'open' pushes as api.<module>.<key>. */
static int register_fields(struct gateway_module *m, lua_CFunction open) {
    lua_State *L = gateway_lua(m);
    lua_pushcfunction(L, open);
    lua_call(L, 0, 1);
    int rc = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        if (gateway_register_value(m, lua_tostring(L, -2)) != 0) rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

static int regex_init(struct gateway_module *m) { return register_fields(m, gw_open_regex); }
static int json_init(struct gateway_module *m) { return register_fields(m, gw_open_json); }

/* The version field is what GATEWAY_MODULE_DECLARE() gives a module. */
static const int version = GATEWAY_MODULE_API_VERSION;

const struct gw_static_module gw_builtin_modules[] = {
    {"json", json_init, NULL, &version},
    {"regex", regex_init, NULL, &version},
    {"redis", mod_redis_init, mod_redis_free, &version},
    {"sleep", mod_sleep_init, mod_sleep_free, &version},
    {NULL, NULL, NULL, NULL},
};
