/* api.sleep(ms), a module on the public C API (gateway.h): a libuv timer
 * and the async helper. The action suspends for ms milliseconds while the
 * loop serves others; an aborted action (client gone, actionTimeout,
 * shutdown) stops its timer. */
#include "gateway.h"
#include "modules/mods.h"

#include <lauxlib.h>
#include <stdlib.h>

static struct gateway_module *self; /* this process's instance */

struct sleeper {
    uv_timer_t timer;
    struct gateway_async *async;
};

static void sleeper_closed(uv_handle_t *h) { free(h->data); }

static void sleeper_release(struct sleeper *s) {
    uv_close((uv_handle_t *)&s->timer, sleeper_closed);
}

static void woke(uv_timer_t *h) {
    struct sleeper *s = h->data;
    struct gateway_async *a = s->async;
    sleeper_release(s);
    gateway_async_resume(a, 0);
}

static void sleep_cancel(void *ud) {
    struct sleeper *s = ud;
    uv_timer_stop(&s->timer);
    sleeper_release(s);
}

/* api.sleep(ms) */
static int sleep_ms(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    const char *why = gateway_async_unavailable(L);
    if (why) return luaL_error(L, "api.sleep %s", why);
    struct sleeper *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "out of memory");
    s->async = gateway_async_begin(L, sleep_cancel, s);
    if (!s->async) {
        free(s);
        return luaL_error(L, "out of memory");
    }
    uv_loop_t *loop = gateway_loop(self);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_update_time(loop); /* Lua may have run for a while since the loop read the clock */
    uv_timer_start(&s->timer, woke, (uint64_t)(ms < 0 ? 0 : ms), 0);
    return gateway_async_yield(L);
}

int mod_sleep_init(struct gateway_module *m) {
    self = m;
    return gateway_register_function(m, "sleep", sleep_ms);
}

void mod_sleep_free(struct gateway_module *m) {
    if (self == m) self = NULL;
}
