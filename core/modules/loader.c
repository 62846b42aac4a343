/* C modules: load each entry of config.modules with dlopen, check its API
 * version, call its init; and the gateway.h functions modules call. The
 * binary is linked with -rdynamic, so the gateway_* functions here (and
 * Lua's API) resolve in the modules it dlopens. */
#include "modules/loader.h"
#include "gateway.h"
#include "base/gw.h"
#include "base/log.h"
#include "vm/vm.h"
#include "modules/builtins.h"
#include "base/redis.h"

#include <ctype.h>
#include <dlfcn.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    struct gw_lua *g;
    uv_loop_t *loop;        /* the gateway's event loop */
    int config_ref;         /* its `config` table, or LUA_NOREF */
    int functions_ref;      /* the table that becomes api.<name> */
    int middleware_ref;     /* its middleware specs, a sequence */
    struct str_copy *strings;
};

static int valid_name(const char *s) {
    if (!*s || strlen(s) >= sizeof ((struct gateway_module *)0)->name) return 0;
    if (!isalpha((unsigned char)*s) && *s != '_') return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

/* Check the version a module was built for and call its init. */
static int module_init(struct gateway_module *m, const int *version,
                       int (*init)(struct gateway_module *), char *err, size_t errlen) {
    if (!version) {
        gw_fmt(err, errlen,
               "module \"%s\": %s has no gateway_module_api_version (add GATEWAY_MODULE_DECLARE();)",
               m->name, m->path);
        return GW_ERR;
    }
    if (*version != GATEWAY_MODULE_API_VERSION) {
        gw_fmt(err, errlen, "module \"%s\": built for module API %d, this gateway has %d", m->name,
               *version, GATEWAY_MODULE_API_VERSION);
        return GW_ERR;
    }
    if (!init) {
        gw_fmt(err, errlen, "module \"%s\": %s has no gateway_module_init function", m->name, m->path);
        return GW_ERR;
    }
    int top = lua_gettop(m->L);
    int rc = init(m);
    lua_settop(m->L, top); /* whatever init left on gateway_lua's stack */
    if (rc != 0) {
        gw_fmt(err, errlen, "module \"%s\": gateway_module_init failed (returned %d)", m->name, rc);
        return GW_ERR;
    }
    m->initialized = 1;
    return GW_OK;
}

/* Open the .so and init it. */
static int module_open(struct gateway_module *m, char *err, size_t errlen) {
    if ((m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        gw_fmt(err, errlen, "module \"%s\": cannot load: %s", m->name, dlerror());
        return GW_ERR;
    }
    const int *version = (const int *)dlsym(m->dl, "gateway_module_api_version");
    int (*init)(struct gateway_module *);
    *(void **)&init = dlsym(m->dl, "gateway_module_init");
    *(void **)&m->free_fn = dlsym(m->dl, "gateway_module_free");
    return module_init(m, version, init, err, errlen);
}

/* A module linked into the binary: the gateway's own, or a STATIC_MODULES one. */
static int module_link(struct gateway_module *m, const struct gw_static_module *sm, char *err,
                       size_t errlen) {
    m->free_fn = sm->free;
    return module_init(m, sm->api_version, sm->init, err, errlen);
}

static const struct gw_static_module *find_linked(const char *name) {
    for (const struct gw_static_module *sm = gw_static_modules; sm->name; sm++)
        if (strcmp(sm->name, name) == 0) return sm;
    return NULL;
}

/* A handle with empty function and middleware tables, prepended to '*list'. */
static struct gateway_module *module_new(lua_State *L, struct gw_lua *g, const char *name,
                                         struct gateway_module **list) {
    struct gateway_module *m = calloc(1, sizeof *m);
    if (!m) gw_panic("out of memory");
    m->next = *list;
    *list = m;
    m->L = L;
    m->g = g;
    m->loop = g ? gw_lua_loop(g) : NULL;
    gw_fmt(m->name, sizeof m->name, "%s", name);
    /* No ref yet: if making the tables runs out of memory, the module is
     * already on the list and gw_module_close_all must not unref slot 0. */
    m->config_ref = m->functions_ref = m->middleware_ref = LUA_NOREF;
    lua_newtable(L);
    m->functions_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    m->middleware_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return m;
}

/* [-0, +0] Append { name, path, builtin, functions, middleware } to the list at 'idx'. */
static void push_entry(lua_State *L, int idx, struct gateway_module *m) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, m->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, m->path);
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, m->builtin);
    lua_setfield(L, -2, "builtin");
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->functions_ref);
    lua_setfield(L, -2, "functions");
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->middleware_ref);
    lua_setfield(L, -2, "middleware");
    lua_rawseti(L, idx, luaL_len(L, idx) + 1);
}

int gw_module_load_all(lua_State *L, int config_idx, const char *config_dir,
                       struct gateway_module **list, char *err, size_t errlen) {
    config_idx = lua_absindex(L, config_idx);
    lua_getfield(L, LUA_REGISTRYINDEX, "gateway.lua");
    struct gw_lua *g = lua_touserdata(L, -1);
    lua_pop(L, 1);
    int base = lua_gettop(L);
    lua_newtable(L); /* the result */
    for (const struct gw_static_module *sm = gw_builtin_modules; sm->name; sm++) {
        struct gateway_module *m = module_new(L, g, sm->name, list);
        m->builtin = 1;
        gw_fmt(m->path, sizeof m->path, "(built in)");
        if (module_link(m, sm, err, errlen) != GW_OK) goto fail;
        push_entry(L, base + 1, m);
    }
    lua_getfield(L, config_idx, "modules");
    int n = lua_istable(L, -1) ? (int)luaL_len(L, -1) : 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i); /* entry */
        if (!lua_istable(L, -1)) {
            gw_fmt(err, errlen, "modules[%d]: must be a table { name = ..., path = ... }", i);
            goto fail;
        }
        lua_getfield(L, -1, "name");
        lua_getfield(L, -2, "path");
        lua_getfield(L, -3, "config");
        const char *name = lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : NULL;
        const char *path = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!name || !valid_name(name)) {
            gw_fmt(err, errlen, "modules[%d].name: must be a name of letters, digits and _", i);
            goto fail;
        }
        for (struct gateway_module *o = *list; o; o = o->next)
            if (!o->builtin && strcmp(o->name, name) == 0) {
                gw_fmt(err, errlen, "module \"%s\": listed twice in modules", name);
                goto fail;
            }
        const struct gw_static_module *linked = NULL;
        if (!lua_isnil(L, -2) && (!path || !*path)) {
            gw_fmt(err, errlen, "module \"%s\": modules[%d].path must be a string", name, i);
            goto fail;
        }
        if (!path && (linked = find_linked(name)) == NULL) {
            gw_fmt(err, errlen,
                   "module \"%s\": modules[%d] has no path, and no module of that name is linked in",
                   name, i);
            goto fail;
        }
        if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
            gw_fmt(err, errlen, "module \"%s\": modules[%d].config must be a table", name, i);
            goto fail;
        }
        struct gateway_module *m = module_new(L, g, name, list);
        if (linked) gw_fmt(m->path, sizeof m->path, "(linked in)");
        else if (path[0] == '/') gw_fmt(m->path, sizeof m->path, "%s", path);
        else gw_fmt(m->path, sizeof m->path, "%s/%s", config_dir, path);
        m->config_ref = lua_istable(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
        lua_pop(L, 2); /* name, path */
        if ((linked ? module_link(m, linked, err, errlen) : module_open(m, err, errlen)) != GW_OK)
            goto fail;
        push_entry(L, base + 1, m);
        lua_pop(L, 1); /* entry */
    }
    lua_pop(L, 1); /* modules */
    return GW_OK;
fail:
    lua_settop(L, base);
    return GW_ERR;
}

void gw_module_close_all(struct gateway_module *list) {
    for (struct gateway_module *m = list; m; m = m->next) {
        if (m->initialized && m->free_fn) m->free_fn(m);
        m->initialized = 0;
        luaL_unref(m->L, LUA_REGISTRYINDEX, m->config_ref);
        luaL_unref(m->L, LUA_REGISTRYINDEX, m->functions_ref);
        luaL_unref(m->L, LUA_REGISTRYINDEX, m->middleware_ref);
        m->config_ref = m->functions_ref = m->middleware_ref = LUA_NOREF;
    }
}

void gw_module_unload_all(struct gateway_module *list) {
    while (list) {
        struct gateway_module *m = list;
        list = m->next;
        if (m->dl) dlclose(m->dl);
        while (m->strings) {
            struct str_copy *c = m->strings;
            m->strings = c->next;
            free(c);
        }
        free(m);
    }
}

/* --- gateway.h ---------------------------------------------------------- */

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
    struct gw_log_field f = {"module", m->name, strlen(m->name)};
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

const char *gateway_async_unavailable(lua_State *L) {
    if (!gw_task_of(L))
        return "can only be called from an action, middleware or timer callback (not while "
               "loading, nor from a coroutine of your own)";
    if (!lua_isyieldable(L))
        return "cannot wait here (a C function such as table.sort or string.gsub is calling this code)";
    return NULL;
}

struct gateway_async *gateway_async_begin(lua_State *L, void (*cancel)(void *ud), void *ud) {
    struct gw_task *t = gw_task_of(L);
    if (!t || !lua_isyieldable(L)) return NULL;
    struct gateway_async *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->w.cancel = async_cancel;
    a->cancel = cancel;
    a->ud = ud;
    lua_getfield(L, LUA_REGISTRYINDEX, "gateway.lua");
    struct gw_lua *g = lua_touserdata(L, -1);
    lua_pop(L, 1);
    a->main = g ? gw_lua_state(g) : NULL;
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
    struct gw_redis *r = m->g ? gw_lua_redis(m->g) : NULL;
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
    struct gw_redis *r = m && m->g ? gw_lua_redis(m->g) : NULL;
    return r && gw_redis_connected(r);
}

void gateway_redis_cancel(struct gateway_redis_cmd *c) {
    if (c) gw_redis_cancel((struct gw_redis_cmd *)c);
}
