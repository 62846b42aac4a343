/* What a loaded module is, shared by the loader (loader.c) and the
 * gateway.h functions it calls (api.c). Internal to modules/. */
#ifndef GW_MODULE_H
#define GW_MODULE_H

#include <lua.h>
#include <uv.h>

struct gw_redis;

/* A copy handed out by gateway_config_string, kept until the module goes. */
struct str_copy {
    struct str_copy *next;
    char s[];
};

struct gateway_module {
    struct gateway_module *next;
    char name[64];
    char path[4096];        /* or "(built in)", "(linked in)" */
    int builtin;            /* one of the gateway's own (gw_builtin_modules) */
    void *dl;
    void (*free_fn)(struct gateway_module *m);
    int initialized;        /* init returned 0: free_fn is due */
    lua_State *L;           /* the main state */
    uv_loop_t *loop;        /* the gateway's event loop */
    struct gw_redis *redis; /* the runtime's client, or NULL (gw_module_set_redis) */
    int config_ref;         /* its `config` table, or LUA_NOREF */
    int functions_ref;      /* the table that becomes api.<name> */
    int middleware_ref;     /* its middleware specs, a sequence */
    struct str_copy *strings;
};

#endif
