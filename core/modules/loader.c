/* C modules: load the built-ins and each entry of config.modules (dlopen,
 * or linked in), check its API version, call its init. The gateway.h
 * functions they call are in api.c. */
#include "modules/loader.h"
#include "base/gw.h"
#include "gateway.h"
#include "modules/builtins.h"
#include "modules/module.h"
#include "vm/vm.h"

#include <ctype.h>
#include <dlfcn.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

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
static struct gateway_module *module_new(lua_State *L, struct gw_vm *vm, const char *name,
                                         struct gateway_module **list) {
    struct gateway_module *m = calloc(1, sizeof *m);
    if (!m) gw_panic("out of memory");
    m->next = *list;
    *list = m;
    m->L = L;
    m->loop = vm ? gw_vm_loop(vm) : NULL;
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
    struct gw_vm *vm = gw_vm_of(L);
    int base = lua_gettop(L);
    lua_newtable(L); /* the result */
    for (const struct gw_static_module *sm = gw_builtin_modules; sm->name; sm++) {
        struct gateway_module *m = module_new(L, vm, sm->name, list);
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
        struct gateway_module *m = module_new(L, vm, name, list);
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

void gw_module_set_redis(struct gateway_module *list, struct gw_redis *r) {
    for (struct gateway_module *m = list; m; m = m->next) m->redis = r;
}
