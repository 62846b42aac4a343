/* See runtime.h. Setting up runs under lua_pcall, so running out of memory
 * anywhere in it fails gw_runtime_new like any other error instead of
 * aborting in an unprotected call. */
#include "runtime/runtime.h"
#include "base/gw.h"
#include "base/log.h"
#include "modules/loader.h"
#include "runtime/connlib.h"
#include "vm/libs.h"

#include <lauxlib.h>
#include <limits.h>
#include <lua-cjson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The source tree's lua/ folder, baked in by the Makefile. */
#ifndef GW_LUA_DIR
#define GW_LUA_DIR "lua"
#endif

struct gw_runtime {
    struct gw_vm *vm;
    struct gw_config cfg;
    char *config_path;              /* NULL: defaults; re-read on reload */
    struct gw_config_overrides ov;  /* the command line's, applied again on reload */
    int config_ref;                 /* the config table in force (api.config) */
    int runtime_ref;                /* the gateway.runtime table */
    struct gateway_module *modules; /* C modules, loaded before the runtime */
};

/* The libraries the C core gives the Lua side, as Lua's linit.c lists its
 * own: each is loaded on its first require. */
static const luaL_Reg preloaded[] = {
    {"gateway.core", gw_open_core},   /* vm/corelib.c */
    {"gateway.regex", gw_open_regex}, /* vm/regexlib.c */
    {"gateway.json", gw_open_json},   /* vm/jsonlib.c */
    {"gateway.loop", gw_open_loop},   /* vm/looplib.c */
    {"gateway.pubsub", gw_open_pubsub}, /* vm/pubsublib.c */
    {"gateway.conn", gw_open_conn},   /* runtime/connlib.c */
    {"cjson", luaopen_cjson},
    {NULL, NULL},
};

struct gw_vm *gw_runtime_vm(struct gw_runtime *rt) { return rt->vm; }
const struct gw_config *gw_runtime_config(struct gw_runtime *rt) { return &rt->cfg; }

void gw_runtime_set_redis(struct gw_runtime *rt, struct gw_redis *r) {
    gw_module_set_redis(rt->modules, r);
}

/* Where the Lua runtime (gateway/runtime.lua) is, first found of:
 * GATEWAY_LUA_DIR; <the binary's folder>/../share/gateway/lua, so an
 * installed copy (make install) finds its own wherever it was put; the
 * source tree's lua/ the binary was built from. */
const char *gw_runtime_lua_dir(void) {
    static char dir[PATH_MAX];
    const char *env = getenv("GATEWAY_LUA_DIR");
    if (env && *env) return env;
    char exe[PATH_MAX], probe[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            gw_fmt(probe, sizeof probe, "%s/../share/gateway/lua", exe);
            char runtime[PATH_MAX + 96];
            gw_fmt(runtime, sizeof runtime, "%s/gateway/runtime.lua", probe);
            if (access(runtime, R_OK) == 0 && realpath(probe, dir)) return dir;
        }
    }
    return GW_LUA_DIR;
}

#define RELOAD_ERR 1024

/* What gw_runtime_new asks of setup, and its answer. */
struct setup {
    struct gw_runtime *rt;
    const char *config_path;
    const struct gw_config_overrides *ov;
    char *err;
    size_t errlen;
    int rc;
};

/* [-0, +1] load_modules(setup, config) -> the list of modules loaded, or
 * nil with s->rc GW_ERR and the message in s->err. */
static int load_modules(lua_State *L) {
    struct setup *s = lua_touserdata(L, 1);
    s->rc = gw_module_load_all(L, 2, s->rt->cfg.config_dir, &s->rt->modules, s->err, s->errlen);
    if (s->rc != GW_OK) lua_pushnil(L);
    return 1;
}

/* Fill the new state: package.path, preloads, config, the CPU limit, C
 * modules, and the runtime with its actions. Sets s->rc; failures other
 * than errors raised leave their message in s->err. */
static int setup(lua_State *L) {
    struct setup *s = lua_touserdata(L, 1);
    struct gw_runtime *rt = s->rt;
    lua_settop(L, 0);
    s->rc = GW_ERR;

    const char *dir = gw_runtime_lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const luaL_Reg *lib = preloaded; lib->name; lib++) {
        lua_pushcfunction(L, lib->func);
        lua_setfield(L, -2, lib->name);
    }
    lua_pop(L, 1);

    if (gw_config_load(L, s->config_path, s->ov, &rt->cfg, s->err, s->errlen) != GW_OK) return 0;
    lua_pushvalue(L, -1);
    rt->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    gw_log_set_level(rt->cfg.log_level);
    gw_log_set_json(rt->cfg.log_json);
    gw_vm_limit_cpu(rt->vm, rt->cfg.cpu_timeout);
    gw_vm_limit_memory(rt->vm, (size_t)rt->cfg.lua_memory_limit);

    /* C modules load before actions, so api.<module> exists when they run.
     * Each process (every forked worker) loads its own. Their init runs in
     * a CPU slice, as Lua code does. */
    lua_pushcfunction(L, load_modules);
    lua_pushlightuserdata(L, s);
    lua_pushvalue(L, -3); /* the config table */
    if (gw_vm_pcall(rt->vm, 2, 1) != LUA_OK) return lua_error(L);
    if (s->rc != GW_OK) return 0;
    s->rc = GW_ERR;

    lua_getglobal(L, "require");
    lua_pushliteral(L, "gateway.runtime");
    if (gw_vm_pcall_msg(rt->vm, 1, 1, s->err, s->errlen) != GW_OK) return 0;
    rt->runtime_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* runtime.init(config, modules) loads actions, middleware and routes. */
    gw_runtime_push(rt, "init");
    lua_insert(L, -3);
    if (gw_vm_pcall_msg(rt->vm, 2, 0, s->err, s->errlen) != GW_OK) return 0;
    s->rc = GW_OK;
    return 0;
}

struct gw_runtime *gw_runtime_new(uv_loop_t *loop, const char *config_path,
                                  const struct gw_config_overrides *ov, struct gw_config *cfg,
                                  char *err, size_t errlen) {
    return gw_runtime_new_alloc(NULL, NULL, loop, config_path, ov, cfg, err, errlen);
}

struct gw_runtime *gw_runtime_new_alloc(lua_Alloc alloc, void *ud, uv_loop_t *loop,
                                        const char *config_path,
                                        const struct gw_config_overrides *ov,
                                        struct gw_config *cfg, char *err, size_t errlen) {
    struct gw_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) gw_panic("out of memory");
    rt->runtime_ref = rt->config_ref = LUA_NOREF;
    if (ov) rt->ov = *ov;
    else rt->ov = (struct gw_config_overrides){NULL, -1, -1, NULL, NULL};
    if (config_path && !(rt->config_path = strdup(config_path))) gw_panic("out of memory");
    if (!(rt->vm = gw_vm_new(alloc, ud, loop))) {
        gw_fmt(err, errlen, "cannot create the Lua state: not enough memory");
        goto fail;
    }
    lua_State *L = gw_vm_state(rt->vm);
    struct setup s = {rt, config_path, ov, err, errlen, GW_ERR};
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, &s);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        gw_fmt(err, errlen, "%s", msg ? msg : "cannot set up the Lua state");
        goto fail;
    }
    if (s.rc != GW_OK) goto fail;
    *cfg = rt->cfg;
    return rt;
fail:
    gw_runtime_free(rt);
    return NULL;
}

void gw_runtime_free(struct gw_runtime *rt) {
    if (!rt) return;
    /* Modules' free functions may still use the state; their code goes
     * only once the state, which may hold their functions, is closed. */
    gw_module_close_all(rt->modules);
    gw_vm_free(rt->vm);
    gw_module_unload_all(rt->modules);
    free(rt->config_path);
    free(rt);
}

void gw_runtime_push(struct gw_runtime *rt, const char *name) {
    lua_State *L = gw_vm_state(rt->vm);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->runtime_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* [-0, +1] reload_config(rt, err) -> true | false: gw_config_reload on the
 * config in force, under a pcall (the file runs Lua). */
static int reload_config(lua_State *L) {
    struct gw_runtime *rt = lua_touserdata(L, 1);
    char *err = lua_touserdata(L, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->config_ref);
    struct gw_config cfg = rt->cfg;
    int ok = gw_config_reload(L, -1, rt->config_path, &rt->ov, &cfg, err, RELOAD_ERR) == GW_OK;
    if (ok) rt->cfg = cfg;
    lua_pushboolean(L, ok);
    return 1;
}

int gw_runtime_reload(struct gw_runtime *rt) {
    char err[RELOAD_ERR];
    lua_State *L = gw_vm_state(rt->vm);
    /* The config first: its live keys apply to the actions loaded next
     * (paths, defaultMiddlewarePriority). One that fails keeps the old. */
    lua_pushcfunction(L, reload_config);
    lua_pushlightuserdata(L, rt);
    lua_pushlightuserdata(L, err);
    err[0] = '\0';
    int ok = gw_vm_pcall_msg(rt->vm, 2, 1, err, sizeof err) == GW_OK;
    if (ok) {
        ok = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (!ok) {
        gw_log(GW_LOG_ERROR, "reload: keeping the config in force: %s", err);
    } else {
        gw_log_set_level(rt->cfg.log_level);
        gw_log_set_json(rt->cfg.log_json);
        gw_vm_limit_memory(rt->vm, (size_t)rt->cfg.lua_memory_limit);
        gw_runtime_push(rt, "reconfigure");
        if (gw_vm_pcall_msg(rt->vm, 0, 0, err, sizeof err) != GW_OK)
            gw_log(GW_LOG_ERROR, "reload: runtime.reconfigure: %s", err);
    }
    gw_runtime_push(rt, "reload");
    if (gw_vm_pcall_msg(rt->vm, 0, 0, err, sizeof err) != GW_OK) {
        gw_log(GW_LOG_ERROR, "reload failed, keeping the loaded actions: %s", err);
        return GW_ERR;
    }
    return GW_OK;
}

void gw_runtime_print_summary(struct gw_runtime *rt) {
    char err[1024];
    lua_State *L = gw_vm_state(rt->vm);
    gw_runtime_push(rt, "summary");
    if (gw_vm_pcall_msg(rt->vm, 0, 1, err, sizeof err) != GW_OK) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    fputs(lua_tostring(L, -1) ? lua_tostring(L, -1) : "", stdout);
    lua_pop(L, 1);
}

int gw_runtime_print_openapi(struct gw_runtime *rt) {
    char err[1024];
    size_t len;
    lua_State *L = gw_vm_state(rt->vm);
    gw_runtime_push(rt, "openapi");
    if (gw_vm_pcall_msg(rt->vm, 0, 1, err, sizeof err) != GW_OK) {
        fprintf(stderr, "gateway: openapi: %s\n", err);
        return GW_ERR;
    }
    const char *text = lua_tolstring(L, -1, &len);
    int ok = text && fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0;
    lua_pop(L, 1);
    if (!ok) {
        fprintf(stderr, "gateway: openapi: cannot write the document: %s\n", strerror(errno));
        return GW_ERR;
    }
    return GW_OK;
}
