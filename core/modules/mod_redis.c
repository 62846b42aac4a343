/* api.redis, a module on the public C API (gateway.h) like any other:
 *   call(cmd, ...)  -> reply; raises on an error reply, and raises
 *                      { status = 503, message = "redis unavailable" |
 *                      "redis timeout" } when Redis cannot answer
 *   pcall(cmd, ...) -> reply | nil, err   (never raises for Redis trouble)
 *   connected()     -> boolean
 * Replies map to Lua as in Redis's own scripting. The calling action
 * suspends until the reply; the connection is the gateway's shared one.
 * A command it refuses (gw_redis_refuses: SUBSCRIBE, MULTI, ...; FLUSHDB,
 * CONFIG, ... unless redis.allowCommands names them) raises from call and
 * pcall alike, naming the command and the reason. */
#include "gateway.h"
#include "modules/mods.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERROR_META "gw.redis.Error"
#define STACK_ARGS 32 /* commands this long need no allocation for argv */

enum mode { MODE_PCALL, MODE_CALL };

static struct gateway_module *self; /* this process's instance */

/* An action waiting for one reply. */
struct redis_wait {
    struct gateway_async *async;
    struct gateway_redis_cmd *cmd;
};

/* The action was aborted (client gone, action timeout): the reply is
 * dropped when it comes. */
static void wait_cancel(void *ud) {
    struct redis_wait *rw = ud;
    gateway_redis_cancel(rw->cmd);
    free(rw);
}

/* The reply (or the reason there is none) goes to the action as two light
 * userdata, which allocates nothing outside a protected call; redis_k
 * turns them into Lua values while the reply is still valid, since the
 * action runs before resume returns. */
static void on_reply(void *ud, const struct redisReply *reply, const char *err) {
    struct redis_wait *rw = ud;
    struct gateway_async *a = rw->async;
    free(rw);
    lua_State *co = gateway_async_thread(a);
    if (!lua_checkstack(co, 2)) { /* out of memory: redis_k sees no reply */
        gateway_async_resume(a, 0);
        return;
    }
    lua_pushlightuserdata(co, (void *)reply);
    lua_pushlightuserdata(co, (void *)err);
    gateway_async_resume(a, 2);
}

static int error_tostring(lua_State *L) {
    if (lua_getfield(L, 1, "err") != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "message");
    }
    if (!lua_isstring(L, -1)) lua_pushliteral(L, "redis error");
    return 1;
}

/* [-0, +1, m] { [key] = s } with the error metatable (tostring gives s). */
static void push_error(lua_State *L, const char *key, const char *s, size_t len) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, key);
    luaL_setmetatable(L, ERROR_META);
}

/* Redis could not answer: raise { status = 503, message } or return nil, msg. */
static int fail(lua_State *L, enum mode mode, const char *msg) {
    if (mode == MODE_PCALL) {
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }
    push_error(L, "message", msg, strlen(msg));
    lua_pushinteger(L, 503);
    lua_setfield(L, -2, "status");
    return lua_error(L);
}

/* [-0, +1, m] A reply as Redis's Lua scripting gives it: integer, string,
 * { ok = status }, { err = error } (inside arrays), nil (false inside
 * arrays), arrays as sequences. */
static void push_reply(lua_State *L, const redisReply *r, int nested) {
    luaL_checkstack(L, 3, "Redis reply nested too deeply");
    switch (r->type) {
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_STRING: lua_pushlstring(L, r->str, r->len); break;
    case REDIS_REPLY_STATUS:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "ok");
        break;
    case REDIS_REPLY_ERROR: push_error(L, "err", r->str, r->len); break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, r->elements > INT_MAX ? INT_MAX : (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default: /* REDIS_REPLY_NIL */
        if (nested) lua_pushboolean(L, 0);
        else lua_pushnil(L);
        break;
    }
}

void mod_redis_push_reply(lua_State *L, const redisReply *r) { push_reply(L, r, 0); }

/* Where call/pcall continue when the reply (or a failure) resumes them. */
static int redis_k(lua_State *L, int status, lua_KContext ctx) {
    const redisReply *reply = lua_touserdata(L, 1);
    const char *err = lua_touserdata(L, 2);
    enum mode mode = (enum mode)ctx;
    (void)status;
    lua_settop(L, 0);
    if (!reply) return fail(L, mode, err ? err : "redis unavailable");
    if (reply->type == REDIS_REPLY_ERROR) {
        if (mode == MODE_PCALL) {
            lua_pushnil(L);
            lua_pushlstring(L, reply->str, reply->len);
            return 2;
        }
        push_error(L, "err", reply->str, reply->len);
        return lua_error(L);
    }
    push_reply(L, reply, 0);
    return 1;
}

/* Replace a number argument by its text: integers (and floats with an
 * integral value) without ".0", others in the shortest form that reads
 * back the same. Anything else is a bug in the caller. */
static void check_arg(lua_State *L, int i) {
    char buf[64];
    int t = lua_type(L, i);
    if (t == LUA_TSTRING) return;
    if (t != LUA_TNUMBER)
        luaL_argerror(L, i, lua_pushfstring(L, "string or number expected, got %s", luaL_typename(L, i)));
    if (lua_isinteger(L, i)) {
        snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, i));
    } else {
        double d = (double)lua_tonumber(L, i);
        if (isnan(d)) luaL_argerror(L, i, "NaN cannot be sent to Redis");
        if (isinf(d)) snprintf(buf, sizeof buf, "%s", d > 0 ? "inf" : "-inf");
        else if (d == floor(d) && fabs(d) < 9007199254740992.0) snprintf(buf, sizeof buf, "%.0f", d);
        else {
            snprintf(buf, sizeof buf, "%.15g", d);
            if (strtod(buf, NULL) != d) snprintf(buf, sizeof buf, "%.17g", d);
        }
    }
    lua_pushstring(L, buf);
    lua_replace(L, i);
}

static int redis_command(lua_State *L, enum mode mode) {
    const char *what = mode == MODE_CALL ? "api.redis.call" : "api.redis.pcall";
    int argc = lua_gettop(L);
    if (lua_type(L, 1) != LUA_TSTRING) luaL_typeerror(L, 1, "command name (string)");
    for (int i = 2; i <= argc; i++) check_arg(L, i);

    const char *small_argv[STACK_ARGS];
    size_t small_lens[STACK_ARGS];
    const char **argv = small_argv;
    size_t *lens = small_lens;
    if (argc > STACK_ARGS) { /* collected with the stack if anything raises */
        argv = lua_newuserdatauv(L, (size_t)argc * (sizeof *argv + sizeof *lens), 0);
        lens = (size_t *)(argv + argc);
    }
    for (int i = 0; i < argc; i++) argv[i] = lua_tolstring(L, i + 1, &lens[i]);

    const char *why = gateway_async_unavailable(L);
    if (why) return luaL_error(L, "%s %s", what, why);

    struct redis_wait *rw = calloc(1, sizeof *rw);
    if (!rw) return luaL_error(L, "out of memory");
    /* The command checks whether the shared connection takes it; only a
     * refusal asks why, so the check runs once per call. */
    int rc = gateway_redis_command(self, argc, argv, lens, on_reply, rw, &rw->cmd);
    if (rc != 0) {
        free(rw);
        if (rc == -2)
            return luaL_error(L, "%s: %s is not allowed: %s", what, argv[0],
                              gateway_redis_refused(argc, argv, lens));
        return fail(L, mode, "redis unavailable");
    }
    /* Sent: the reply comes from the loop, after the yield below. */
    rw->async = gateway_async_begin(L, wait_cancel, rw);
    if (!rw->async) {
        gateway_redis_cancel(rw->cmd);
        free(rw);
        return luaL_error(L, "out of memory");
    }
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)mode, redis_k);
}

/* redis.call(cmd, ...) -> reply */
static int redis_call(lua_State *L) { return redis_command(L, MODE_CALL); }

/* redis.pcall(cmd, ...) -> reply | nil, err */
static int redis_pcall(lua_State *L) { return redis_command(L, MODE_PCALL); }

/* redis.connected() -> boolean */
static int redis_connected(lua_State *L) {
    lua_pushboolean(L, self && gateway_redis_connected(self));
    return 1;
}

int mod_redis_init(struct gateway_module *m) {
    lua_State *L = gateway_lua(m);
    if (luaL_newmetatable(L, ERROR_META)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (gateway_register_function(m, "call", redis_call) != 0 ||
        gateway_register_function(m, "pcall", redis_pcall) != 0 ||
        gateway_register_function(m, "connected", redis_connected) != 0)
        return -1;
    self = m;
    return 0;
}

void mod_redis_free(struct gateway_module *m) {
    if (self == m) self = NULL;
}
