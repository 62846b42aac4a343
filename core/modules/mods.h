/* The gateway.h entry points of the gateway's own modules (mod_*.c), for
 * the list in builtins.c. On its own, so the modules need not include the
 * list that names them. */
#ifndef GW_MODS_H
#define GW_MODS_H

struct gateway_module;
struct redisReply;
struct lua_State;

int mod_redis_init(struct gateway_module *m); /* api.redis */
void mod_redis_free(struct gateway_module *m);
int mod_sleep_init(struct gateway_module *m); /* api.sleep */
void mod_sleep_free(struct gateway_module *m);

/* [-0, +1, m] A Redis reply as api.redis gives it (Redis's Lua scripting
 * mapping: integer, string, { ok = status }, { err = error }, nil; inside
 * arrays nil is false), for whoever else reads Redis for Lua (the spec
 * helper's host). */
void mod_redis_push_reply(struct lua_State *L, const struct redisReply *r);

#endif
