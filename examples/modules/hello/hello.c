/* The smallest gateway module:
 *   api.hello.greet(name) -> "Hello, <name>!" (the greeting comes from its
 *                            config: config = { greeting = "Hello" })
 *   api.hello.wait(ms)    -> ms, after ms milliseconds, without blocking
 *                            the loop (an async call on a libuv timer)
 *   api.hello.incr(key)   -> the new value of the Redis counter 'key' (INCR
 *                            over the gateway's Redis connection); raises
 *                            { status = 503, message = "redis unavailable" |
 *                            "redis timeout" } when Redis cannot answer
 *   middleware "hello"    -> global: sets the response header X-Hello to the
 *                            greeting; a request with the parameter
 *                            helloBlock fails with "blocked by hello"
 * Build: make modules (build/modules/hello.so). See docs/c-api.md. */
#include <gateway.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

GATEWAY_MODULE_DECLARE();

static struct gateway_module *module;
static const char *greeting = "Hello"; /* owned by the gateway once read */

/* api.hello.greet(name) -> string */
static int hello_greet(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_pushfstring(L, "%s, %s!", greeting, name);
    return 1;
}

/* One pending api.hello.wait(). */
struct wait {
    uv_timer_t timer;
    struct gateway_async *async;
    lua_Integer ms;
};

static void wait_closed(uv_handle_t *h) { free(h->data); }

static void wait_fired(uv_timer_t *h) {
    struct wait *w = h->data;
    struct gateway_async *a = w->async;
    lua_pushinteger(gateway_async_thread(a), w->ms);
    uv_close((uv_handle_t *)&w->timer, wait_closed);
    gateway_async_resume(a, 1); /* wait(ms) returns ms */
}

/* The action was aborted (client gone, actionTimeout): stop and free. */
static void wait_cancel(void *ud) {
    struct wait *w = ud;
    gateway_log(module, GATEWAY_LOG_INFO, "wait(%lld) cancelled", (long long)w->ms);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, wait_closed);
}

/* api.hello.wait(ms) -> ms */
static int hello_wait(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    if (ms < 0) ms = 0;
    struct wait *w = malloc(sizeof *w);
    if (!w) return luaL_error(L, "out of memory");
    w->ms = ms;
    w->async = gateway_async_begin(L, wait_cancel, w);
    if (!w->async) {
        free(w);
        return luaL_error(L, "api.hello.wait can only be called from an action");
    }
    uv_loop_t *loop = gateway_loop(module);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_update_time(loop); /* Lua may have run a while since the loop read the clock */
    uv_timer_start(&w->timer, wait_fired, (uint64_t)ms, 0);
    return gateway_async_yield(L);
}

/* One pending api.hello.incr(). */
struct incr {
    struct gateway_async *async;
    struct gateway_redis_cmd *cmd;
};

/* [-0, +1] The error incr raises: { status = status, message = msg }. */
static int incr_fail(lua_State *L, int status, const char *msg) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    return lua_error(L);
}

/* The reply: resume with the integer, or with nil, status, message (the
 * continuation raises those: a callback cannot raise into the action). */
static void incr_done(void *ud, const struct redisReply *reply, const char *err) {
    struct incr *c = ud;
    struct gateway_async *a = c->async;
    free(c);
    lua_State *co = gateway_async_thread(a);
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        lua_pushinteger(co, (lua_Integer)reply->integer);
        gateway_async_resume(a, 1);
        return;
    }
    lua_pushnil(co);
    if (reply) { /* an error reply, e.g. the value is not an integer */
        lua_pushinteger(co, 500);
        if (reply->type == REDIS_REPLY_ERROR) lua_pushlstring(co, reply->str, reply->len);
        else lua_pushliteral(co, "unexpected reply to INCR");
    } else {
        lua_pushinteger(co, 503);
        lua_pushstring(co, err);
    }
    gateway_async_resume(a, 3);
}

/* The action was aborted: drop the reply when it comes. */
static void incr_cancel(void *ud) {
    struct incr *c = ud;
    gateway_redis_cancel(c->cmd);
    free(c);
}

/* Runs when the action resumes: the stack holds what incr_done pushed. */
static int incr_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    (void)ctx;
    if (lua_gettop(L) == 3 && lua_isnil(L, 1))
        return incr_fail(L, (int)lua_tointeger(L, 2), lua_tostring(L, 3));
    return 1;
}

/* api.hello.incr(key) -> integer */
static int hello_incr(lua_State *L) {
    size_t len;
    const char *key = luaL_checklstring(L, 1, &len);
    const char *argv[2] = {"INCR", key};
    size_t argvlen[2] = {4, len};
    struct incr *c = malloc(sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    int rc = gateway_redis_command(module, 2, argv, argvlen, incr_done, c, &c->cmd);
    if (rc != 0) {
        free(c);
        return incr_fail(L, 503, "redis unavailable");
    }
    /* Sent: the reply cannot come before we yield (it comes from the loop). */
    c->async = gateway_async_begin(L, incr_cancel, c);
    if (!c->async) {
        gateway_redis_cancel(c->cmd);
        free(c);
        return luaL_error(L, "api.hello.incr can only be called from an action");
    }
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, incr_k); /* gateway_async_yield, with a continuation */
}

/* The "hello" middleware's preProcessor: data is at index 1. */
static int hello_pre(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "params") == LUA_TTABLE &&
        lua_getfield(L, -1, "helloBlock") != LUA_TNIL) {
        lua_pushnil(L);
        lua_pushliteral(L, "blocked by hello");
        return 2; /* fails the request like a Lua preProcessor's nil, "message" */
    }
    lua_settop(L, 1);
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        lua_pushstring(L, greeting);
        lua_setfield(L, -2, "X-Hello");
    }
    return 0;
}

int gateway_module_init(struct gateway_module *m) {
    module = m;
    greeting = gateway_config_string(m, "greeting", "Hello");
    if (gateway_register_function(m, "greet", hello_greet) != 0) return -1;
    if (gateway_register_function(m, "wait", hello_wait) != 0) return -1;
    if (gateway_register_function(m, "incr", hello_incr) != 0) return -1;
    if (gateway_register_middleware(m, "hello", 50, 1, hello_pre, NULL) != 0) return -1;
    gateway_log(m, GATEWAY_LOG_INFO, "loaded, greeting \"%s\"", greeting);
    return 0;
}

void gateway_module_free(struct gateway_module *m) {
    gateway_log(m, GATEWAY_LOG_DEBUG, "unloading");
    greeting = "Hello";
    module = NULL;
}
