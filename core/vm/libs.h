/* The Lua libraries the C core provides. Each opener pushes one table.
 *   gw_open_core  -> require "gateway.core": clocks, query parsing,
 *                    readdir, logging, .regex and .json (works in plain
 *                    Lua too)
 *   gw_open_regex -> the api.regex table
 *   gw_open_json  -> the api.json table (a cjson instance of its own)
 *   gw_open_loop  -> require "gateway.loop": timer.after, wait/wake;
 *                    needs the event loop, so only inside the gateway
 * The gateway's modules (gw_builtins.c) register regex and json as
 * api.regex and api.json; gateway.core has them too, as .regex and .json. */
#ifndef GW_LIB_H
#define GW_LIB_H

#include <lua.h>
#include <stddef.h>

int gw_open_core(lua_State *L);
int gw_open_regex(lua_State *L);
int gw_open_loop(lua_State *L);
int gw_open_json(lua_State *L);

/* 32 random hex characters (not NUL-terminated): GW_OK, or GW_ERR when
 * /dev/urandom cannot be read. core.random_id and api.json share it. */
int gw_random_hex(char out[32]);

/* [-0, +0, m] Add one decoded key/value pair to the table on top of L's
 * stack, a repeated key becoming a list of its values (as Node's
 * querystring does). A gw_query_pair_fn: 'ud' is the lua_State. The web
 * transport's query table and core.parse_query share the rule. */
int gw_lib_add_pair(void *ud, const char *key, size_t klen, const char *val, size_t vlen);

/* Cancel every pending timer.after (shutdown). */
void gw_loop_shutdown(void);

#endif
