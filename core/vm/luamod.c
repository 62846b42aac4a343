/* Entry point of build/lua/gateway/core.so: the same bindings the gateway
 * preloads, for busted specs run by the stock lua5.4 interpreter. As in the
 * gateway, GATEWAY_LOG_LEVEL sets the level core.log writes from. */
#include "vm/libs.h"
#include "base/log.h"

#include <stdlib.h>

int luaopen_gateway_core(lua_State *L);

int luaopen_gateway_core(lua_State *L) {
    const char *level = getenv("GATEWAY_LOG_LEVEL");
    int lv = level && *level ? gw_log_level_parse(level) : -1;
    if (lv >= 0) gw_log_set_level(lv);
    return gw_open_core(L);
}
