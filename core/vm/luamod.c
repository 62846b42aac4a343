/* Entry points of build/lua/gateway/core.so (and of regex.so and json.so,
 * links to it): the pure libraries the gateway preloads, for busted specs
 * run by the stock lua5.4 interpreter. As in the gateway,
 * GATEWAY_LOG_LEVEL sets the level core.log writes from. */
#include "base/log.h"
#include "vm/libs.h"

#include <stdlib.h>

int luaopen_gateway_core(lua_State *L);
int luaopen_gateway_regex(lua_State *L);
int luaopen_gateway_json(lua_State *L);

int luaopen_gateway_core(lua_State *L) {
    const char *level = getenv("GATEWAY_LOG_LEVEL");
    int lv = level && *level ? gw_log_level_parse(level) : -1;
    if (lv >= 0) gw_log_set_level(lv);
    return gw_open_core(L);
}

int luaopen_gateway_regex(lua_State *L) { return gw_open_regex(L); }
int luaopen_gateway_json(lua_State *L) { return gw_open_json(L); }
