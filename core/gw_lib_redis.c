/* The "gateway.redis" table, which api.redis is (SPEC §9):
 *   call(cmd, ...)  -> reply; raises on an error reply, and raises
 *                      { status = 503, message = "redis unavailable" |
 *                      "redis timeout" } when Redis cannot answer
 *   pcall(cmd, ...) -> reply | nil, err   (never raises for Redis trouble)
 *   connected()     -> boolean
 * Replies map to Lua as in Redis's own scripting. The calling task yields
 * until the reply; the connection itself is gw_redis.c's business. */
#include "gw.h"
#include "gw_lib.h"
#include "gw_lua.h"
#include "gw_redis.h"

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

/* A task waiting for one reply. */
struct redis_wait {
    struct gw_wait w;
    struct gw_redis_cmd *cmd;
};

static struct gw_lua *redis_owner(lua_State *L) {
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* The task was aborted (client gone, action timeout): gw_redis drops the
 * reply when it comes. */
static void wait_cancel(struct gw_wait *w) {
    struct redis_wait *rw = (struct redis_wait *)w;
    gw_redis_cancel(rw->cmd);
    free(rw);
}

/* The reply (or the reason there is none) goes to the task as two light
 * userdata, which allocates nothing outside a protected call; redis_k
 * turns them into Lua values while the reply is still valid, since the
 * task runs before this callback returns. */
static void on_reply(void *ud, const struct redisReply *reply, const char *err) {
    struct redis_wait *rw = ud;
    struct gw_task *t = rw->w.owner;
    gw_task_detach(&rw->w);
    free(rw);
    if (!t) return;
    lua_State *co = gw_task_thread(t);
    if (!lua_checkstack(co, 2)) { /* out of memory: redis_k sees no reply */
        gw_task_resume(t, 0);
        return;
    }
    lua_pushlightuserdata(co, (void *)reply);
    lua_pushlightuserdata(co, (void *)err);
    gw_task_resume(t, 2);
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

    const char *refused = gw_redis_refuses(argc, argv, lens);
    if (refused) return luaL_error(L, "%s: %s is not allowed: %s", what, argv[0], refused);
    struct gw_task *t = gw_task_of(L);
    if (!t)
        return luaL_error(L, "%s can only be called from an action, middleware or timer callback "
                             "(not while loading, nor from a coroutine of your own)", what);
    if (!lua_isyieldable(L))
        return luaL_error(L, "%s cannot wait here (a C function such as table.sort or string.gsub "
                             "is calling this code)", what);
    struct gw_redis *r = gw_lua_redis(redis_owner(L));
    if (!r) return fail(L, mode, "redis unavailable");

    struct redis_wait *rw = calloc(1, sizeof *rw);
    if (!rw) return luaL_error(L, "out of memory");
    rw->w.cancel = wait_cancel;
    rw->cmd = gw_redis_command(r, argc, argv, lens, on_reply, rw);
    if (!rw->cmd) {
        free(rw);
        return fail(L, mode, "redis unavailable");
    }
    gw_task_attach(t, &rw->w);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, (lua_KContext)mode, redis_k);
}

/* redis.call(cmd, ...) -> reply */
static int redis_call(lua_State *L) { return redis_command(L, MODE_CALL); }

/* redis.pcall(cmd, ...) -> reply | nil, err */
static int redis_pcall(lua_State *L) { return redis_command(L, MODE_PCALL); }

/* redis.connected() -> boolean */
static int redis_connected(lua_State *L) {
    struct gw_redis *r = gw_lua_redis(redis_owner(L));
    lua_pushboolean(L, r && gw_redis_connected(r));
    return 1;
}

static const luaL_Reg redis_funcs[] = {
    {"call", redis_call}, {"pcall", redis_pcall}, {"connected", redis_connected}, {NULL, NULL}};

int gw_open_redis(lua_State *L) {
    if (luaL_newmetatable(L, ERROR_META)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newlibtable(L, redis_funcs);
    lua_getfield(L, LUA_REGISTRYINDEX, "gateway.lua");
    if (!lua_islightuserdata(L, -1)) return luaL_error(L, "gateway.redis needs the gateway");
    luaL_setfuncs(L, redis_funcs, 1);
    return 1;
}
