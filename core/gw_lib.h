/* The Lua libraries the C core provides. Each opener pushes one table.
 *   gw_open_core  -> require "gateway.core": clocks, query parsing,
 *                    readdir, logging, and .regex (works in plain Lua too)
 *   gw_open_regex -> the api.regex table
 *   gw_open_loop  -> require "gateway.loop": sleep, timers, wait/wake;
 *                    needs the event loop, so only inside the gateway
 *   gw_open_redis -> require "gateway.redis": the api.redis table (call,
 *                    pcall, connected); only inside the gateway */
#ifndef GW_LIB_H
#define GW_LIB_H

#include <lua.h>

int gw_open_core(lua_State *L);
int gw_open_regex(lua_State *L);
int gw_open_loop(lua_State *L);
int gw_open_redis(lua_State *L);

/* Cancel every pending sleep and timer (shutdown). */
void gw_loop_shutdown(void);

#endif
