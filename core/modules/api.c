/* The public C API (gateway.h) modules call: their name and config, the
 * log, registering functions and middleware, async calls, and Redis. The
 * binary is linked with -rdynamic, so these functions (and Lua's API)
 * resolve in the modules it dlopens. */
#include "gateway.h"
#include "base/gw.h"
#include "base/log.h"
#include "base/redis.h"
#include "modules/module.h"
#include "vm/vm.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *gateway_module_name(struct gateway_module *m) { return m->name; }

void gateway_log(struct gateway_module *m, enum gateway_log_level level, const char *fmt, ...) {
    int lv = (int)level;
    if (lv < GW_LOG_DEBUG) lv = GW_LOG_DEBUG;
    if (lv > GW_LOG_CRIT) lv = GW_LOG_CRIT;
    if (!gw_log_enabled(lv)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct gw_log_field f = {"module", m->name, strlen(m->name), 0};
    gw_log_fields(lv, msg, &f, 1);
}

/* [-0, +1] Push config[key] (nil when there is no config table). */
static void push_config(struct gateway_module *m, const char *key) {
    if (m->config_ref == LUA_NOREF || !key) {
        lua_pushnil(m->L);
        return;
    }
    lua_rawgeti(m->L, LUA_REGISTRYINDEX, m->config_ref);
    lua_getfield(m->L, -1, key);
    lua_remove(m->L, -2);
}

/* [-1, +0] The value on top was not what the module asked for: say so
 * (a typo'd type would otherwise fall back to the default unseen). */
static void config_mismatch(struct gateway_module *m, const char *key, const char *wanted) {
    if (!lua_isnil(m->L, -1))
        gateway_log(m, GATEWAY_LOG_WARNING, "config.%s must be %s, not %s; using the default", key,
                    wanted, luaL_typename(m->L, -1));
    lua_pop(m->L, 1);
}

const char *gateway_config_string(struct gateway_module *m, const char *key, const char *def) {
    push_config(m, key);
    if (lua_type(m->L, -1) != LUA_TSTRING) {
        config_mismatch(m, key, "a string");
        return def;
    }
    size_t len;
    const char *s = lua_tolstring(m->L, -1, &len);
    struct str_copy *c = malloc(sizeof *c + len + 1);
    if (!c) gw_panic("out of memory");
    memcpy(c->s, s, len + 1);
    c->next = m->strings;
    m->strings = c;
    lua_pop(m->L, 1);
    return c->s;
}

long long gateway_config_int(struct gateway_module *m, const char *key, long long def) {
    push_config(m, key);
    int ok = 0;
    lua_Integer v = lua_type(m->L, -1) == LUA_TNUMBER ? lua_tointegerx(m->L, -1, &ok) : 0;
    if (!ok) {
        config_mismatch(m, key, "an integer");
        return def;
    }
    lua_pop(m->L, 1);
    return (long long)v;
}

double gateway_config_number(struct gateway_module *m, const char *key, double def) {
    push_config(m, key);
    if (lua_type(m->L, -1) != LUA_TNUMBER) {
        config_mismatch(m, key, "a number");
        return def;
    }
    double v = (double)lua_tonumber(m->L, -1);
    lua_pop(m->L, 1);
    return v;
}

int gateway_config_bool(struct gateway_module *m, const char *key, int def) {
    push_config(m, key);
    if (lua_type(m->L, -1) != LUA_TBOOLEAN) {
        config_mismatch(m, key, "a boolean");
        return def;
    }
    int v = lua_toboolean(m->L, -1);
    lua_pop(m->L, 1);
    return v;
}

lua_State *gateway_lua(struct gateway_module *m) { return m->L; }

int gateway_register_value(struct gateway_module *m, const char *name) {
    lua_State *L = m->L;
    if (!name || !*name || m->functions_ref == LUA_NOREF) {
        lua_pop(L, 1);
        return GW_ERR;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->functions_ref);
    if (lua_getfield(L, -1, name) != LUA_TNIL) {
        lua_pop(L, 3);
        return GW_ERR;
    }
    lua_pop(L, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, name); /* copies 'name' */
    lua_pop(L, 1);
    return GW_OK;
}

int gateway_register_function(struct gateway_module *m, const char *name, lua_CFunction fn) {
    if (!fn) return GW_ERR;
    lua_pushcfunction(m->L, fn);
    return gateway_register_value(m, name);
}

/* Append a middleware spec { name, priority, [global,] f1name = f1, f2name
 * = f2 } for the loader, which sorts it in with the Lua ones each load
 * (create/destroy make it connection middleware). */
static int add_middleware(struct gateway_module *m, const char *name, int priority, int global,
                          const char *f1name, lua_CFunction f1, const char *f2name,
                          lua_CFunction f2) {
    if (!name || !*name || (!f1 && !f2) || m->middleware_ref == LUA_NOREF) return GW_ERR;
    lua_State *L = m->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->middleware_ref);
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "name");
        int taken = strcmp(lua_tostring(L, -1), name) == 0;
        lua_pop(L, 2);
        if (taken) {
            lua_pop(L, 1);
            return GW_ERR;
        }
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, priority);
    lua_setfield(L, -2, "priority");
    if (global >= 0) {
        lua_pushboolean(L, global);
        lua_setfield(L, -2, "global");
    }
    if (f1) {
        lua_pushcfunction(L, f1);
        lua_setfield(L, -2, f1name);
    }
    if (f2) {
        lua_pushcfunction(L, f2);
        lua_setfield(L, -2, f2name);
    }
    lua_rawseti(L, -2, n + 1);
    lua_pop(L, 1);
    return GW_OK;
}

int gateway_register_middleware(struct gateway_module *m, const char *name, int priority,
                                int global, lua_CFunction pre, lua_CFunction post) {
    return add_middleware(m, name, priority, global != 0, "preProcessor", pre, "postProcessor", post);
}

int gateway_register_connection_hooks(struct gateway_module *m, const char *name, int priority,
                                      lua_CFunction create, lua_CFunction destroy) {
    return add_middleware(m, name, priority, -1, "create", create, "destroy", destroy);
}

uv_loop_t *gateway_loop(struct gateway_module *m) { return m->loop; }

/* --- async calls -------------------------------------------------------- */

struct gateway_async {
    struct gw_wait w;       /* owned by the suspended task */
    void (*cancel)(void *ud);
    void *ud;
    lua_State *main;        /* where results go if the task is gone */
};

/* The task was aborted: the module stops its work; the handle goes. */
static void async_cancel(struct gw_wait *w) {
    struct gateway_async *a = (struct gateway_async *)w;
    if (a->cancel) a->cancel(a->ud);
    free(a);
}

const char *gateway_async_unavailable(lua_State *L) { return gw_task_cannot_wait(L); }

struct gateway_async *gateway_async_begin(lua_State *L, void (*cancel)(void *ud), void *ud) {
    struct gw_task *t = gw_task_of(L);
    if (!t || !lua_isyieldable(L)) return NULL;
    struct gateway_async *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->w.cancel = async_cancel;
    a->cancel = cancel;
    a->ud = ud;
    struct gw_vm *vm = gw_vm_of(L);
    a->main = vm ? gw_vm_state(vm) : NULL;
    gw_task_attach(t, &a->w);
    return a;
}

int gateway_async_yield(lua_State *L) { return lua_yield(L, 0); }

lua_State *gateway_async_thread(struct gateway_async *a) {
    /* The owner is only gone if the task ended without yielding here (the
     * module broke the rules): the results then go to the main state. */
    return a->w.owner ? gw_task_thread(a->w.owner) : a->main;
}

void gateway_async_resume(struct gateway_async *a, int nresults) {
    struct gw_task *owner = a->w.owner;
    lua_State *main = a->main;
    gw_task_detach(&a->w);
    free(a);
    if (owner) gw_task_resume(owner, nresults);
    else if (main) lua_pop(main, nresults);
}

/* --- Redis ---------------------------------------------------------------- */

int gateway_redis_command(struct gateway_module *m, int argc, const char **argv,
                          const size_t *argvlen,
                          void (*done)(void *ud, const struct redisReply *reply, const char *err),
                          void *ud, struct gateway_redis_cmd **out) {
    if (out) *out = NULL;
    if (!m || argc < 1 || !argv || !argvlen || !done) return -2;
    if (gw_redis_refuses(argc, argv, argvlen)) return -2;
    struct gw_redis *r = m->redis;
    if (!r) return -1;
    struct gw_redis_cmd *c = gw_redis_command(r, argc, argv, argvlen, done, ud);
    if (!c) return -1;
    if (out) *out = (struct gateway_redis_cmd *)c;
    return 0;
}

const char *gateway_redis_refused(int argc, const char **argv, const size_t *argvlen) {
    if (argc < 1 || !argv || !argvlen) return "a command needs a name";
    return gw_redis_refuses(argc, argv, argvlen);
}

int gateway_redis_connected(struct gateway_module *m) {
    struct gw_redis *r = m ? m->redis : NULL;
    return r && gw_redis_connected(r);
}

void gateway_redis_cancel(struct gateway_redis_cmd *c) {
    if (c) gw_redis_cancel((struct gw_redis_cmd *)c);
}
