/* api.sleep, one of the gateway's own modules: its gateway.h entry points,
 * which modules/builtins.c lists (see mod_sleep.c). */
#ifndef GW_MOD_SLEEP_H
#define GW_MOD_SLEEP_H

struct gateway_module;

int mod_sleep_init(struct gateway_module *m);
void mod_sleep_free(struct gateway_module *m);

#endif
