/* api.redis, one of the gateway's own modules: its gateway.h entry points,
 * which modules/builtins.c lists (see mod_redis.c). */
#ifndef GW_MOD_REDIS_H
#define GW_MOD_REDIS_H

struct gateway_module;

int mod_redis_init(struct gateway_module *m);
void mod_redis_free(struct gateway_module *m);

#endif
