/* Entry point of build/lua/gateway/core.so: the same bindings the gateway
 * preloads, for busted specs run by the stock lua5.4 interpreter. */
#include "gw_lib.h"

int luaopen_gateway_core(lua_State *L);

int luaopen_gateway_core(lua_State *L) { return gw_open_core(L); }
