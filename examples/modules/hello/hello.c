/* The smallest gateway module:
 *   api.hello.greet(name) -> "Hello, <name>!" (the greeting comes from its
 *                            config: config = { greeting = "Hello" })
 *   api.hello.wait(ms)    -> ms, after ms milliseconds, without blocking
 *                            the loop (an async call on a libuv timer)
 * Build: make modules (build/modules/hello.so). See docs/c-api.md. */
#include <gateway.h>

#include <lauxlib.h>
#include <stdlib.h>

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

int gateway_module_init(struct gateway_module *m) {
    module = m;
    greeting = gateway_config_string(m, "greeting", "Hello");
    if (gateway_register_function(m, "greet", hello_greet) != 0) return -1;
    if (gateway_register_function(m, "wait", hello_wait) != 0) return -1;
    gateway_log(m, GATEWAY_LOG_INFO, "loaded, greeting \"%s\"", greeting);
    return 0;
}

void gateway_module_free(struct gateway_module *m) {
    gateway_log(m, GATEWAY_LOG_DEBUG, "unloading");
    greeting = "Hello";
    module = NULL;
}
