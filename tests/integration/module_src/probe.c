/* A test module for the parts of gateway.h the examples do not use:
 * gateway_register_value, connection hooks, a C postProcessor, any Redis
 * command with its failures (timeout, refused, unavailable),
 * gateway_redis_connected and gateway_async_unavailable.
 *
 *   api.probe.info                { name = <module name>, answer = 42 }
 *   api.probe.counts()            -> created, destroyed (connection hooks)
 *   api.probe.redis(cmd, ...)     -> reply | nil, err
 *   api.probe.connected()         -> boolean
 *   api.probe.why()               -> nil | why this code cannot suspend
 *
 * Middleware "probePost" (postProcessor): data.response.postedBy = "probe",
 * or the error "probe post failed" when params.probeFail is set. Config
 * hookRaises = true makes the create hook raise. */
#include <gateway.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdlib.h>

GATEWAY_MODULE_DECLARE();

static struct gateway_module *self;
static lua_Integer created, destroyed;
static int hook_raises;

static int probe_create(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    created++;
    lua_pushboolean(L, 1);
    lua_setfield(L, 1, "probeSeen");
    if (hook_raises) return luaL_error(L, "probe create failed on purpose");
    return 0;
}

static int probe_destroy(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    destroyed++;
    lua_getfield(L, 1, "type");
    gateway_log(self, GATEWAY_LOG_INFO, "probe destroy %s", lua_tostring(L, -1));
    return 0;
}

static int probe_counts(lua_State *L) {
    lua_pushinteger(L, created);
    lua_pushinteger(L, destroyed);
    return 2;
}

/* postProcessor: data at index 1. */
static int probe_post(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "params");
    lua_getfield(L, -1, "probeFail");
    if (!lua_isnil(L, -1)) {
        lua_pushnil(L);
        lua_pushliteral(L, "probe post failed");
        return 2;
    }
    lua_getfield(L, 1, "response");
    lua_pushliteral(L, "probe");
    lua_setfield(L, -2, "postedBy");
    lua_pushboolean(L, 1);
    return 1;
}

struct call {
    struct gateway_async *async;
    struct gateway_redis_cmd *cmd;
};

static void call_done(void *ud, const struct redisReply *reply, const char *err) {
    struct call *c = ud;
    struct gateway_async *a = c->async;
    free(c);
    lua_State *co = gateway_async_thread(a);
    if (!lua_checkstack(co, 2)) {
        gateway_async_resume(a, 0);
        return;
    }
    lua_pushlightuserdata(co, (void *)reply);
    lua_pushlightuserdata(co, (void *)err);
    gateway_async_resume(a, 2);
}

static void call_cancel(void *ud) {
    struct call *c = ud;
    gateway_redis_cancel(c->cmd);
    free(c);
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status, (void)ctx;
    const redisReply *r = lua_touserdata(L, 1);
    const char *err = lua_touserdata(L, 2);
    lua_settop(L, 0);
    if (!r) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "no reply");
        return 2;
    }
    switch (r->type) {
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); return 1;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(L, r->str, r->len); return 1;
    case REDIS_REPLY_ERROR:
        lua_pushnil(L);
        lua_pushlstring(L, r->str, r->len);
        return 2;
    default: lua_pushnil(L); return 1;
    }
}

static int probe_redis(lua_State *L) {
    int argc = lua_gettop(L);
    const char *argv[16];
    size_t lens[16];
    luaL_argcheck(L, argc >= 1 && argc <= 16, 1, "1 to 16 arguments");
    for (int i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, i + 1, &lens[i]);
    const char *why = gateway_async_unavailable(L);
    if (why) return luaL_error(L, "api.probe.redis %s", why);
    struct call *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    int rc = gateway_redis_command(self, argc, argv, lens, call_done, c, &c->cmd);
    if (rc != 0) {
        free(c);
        lua_pushnil(L);
        if (rc == -2) lua_pushfstring(L, "refused: %s", gateway_redis_refused(argc, argv, lens));
        else lua_pushliteral(L, "redis unavailable");
        return 2;
    }
    c->async = gateway_async_begin(L, call_cancel, c);
    if (!c->async) {
        gateway_redis_cancel(c->cmd);
        free(c);
        return luaL_error(L, "out of memory");
    }
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, call_k);
}

static int probe_connected(lua_State *L) {
    lua_pushboolean(L, gateway_redis_connected(self));
    return 1;
}

static int probe_why(lua_State *L) {
    const char *why = gateway_async_unavailable(L);
    if (why) lua_pushstring(L, why);
    else lua_pushnil(L);
    return 1;
}

int gateway_module_init(struct gateway_module *m) {
    self = m;
    hook_raises = gateway_config_bool(m, "hookRaises", 0);
    lua_State *L = gateway_lua(m);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, gateway_module_name(m));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, 42);
    lua_setfield(L, -2, "answer");
    if (gateway_register_value(m, "info") != 0) return -1;
    lua_pushinteger(L, 1);
    if (gateway_register_value(m, "info") != -1) return -2; /* taken: refused, popped */
    if (gateway_register_connection_hooks(m, "probeHooks", 50, probe_create, probe_destroy) != 0)
        return -3;
    if (gateway_register_connection_hooks(m, "probeHooks", 50, probe_create, NULL) != -1) return -4;
    if (gateway_register_middleware(m, "probePost", 100, 0, NULL, probe_post) != 0) return -5;
    if (gateway_register_function(m, "counts", probe_counts) != 0 ||
        gateway_register_function(m, "redis", probe_redis) != 0 ||
        gateway_register_function(m, "connected", probe_connected) != 0 ||
        gateway_register_function(m, "why", probe_why) != 0)
        return -6;
    return 0;
}
