/* The "gateway.pubsub" table: the wire under api.cluster
 * (lua/gateway/services/cluster.lua), one per worker process.
 *   start(fn)                   fn(kind, ...) hears this worker's cluster events
 *   subscribe(channel)          add a channel to the pub/sub connection
 *   publish(channel, text)      -> true | false, reason
 *   send(cmd, ...)              -> true | false, reason
 *                               (a command api.redis refuses raises)
 *   active()                    -> true once the server started the connection
 *   stop()                      no more ticks (graceful shutdown)
 * publish and send go over the shared command connection and never wait:
 * the reply is dropped (an error reply is logged). The server starts the
 * subscriber (gw_pubsub_start) once it has its Redis client; until then,
 * and in a gateway without a server (the spec helper), active() is false.
 * fn is called outside any task (it must not wait) as fn("message",
 * channel, text), fn("subscribed") once every channel is subscribed after
 * a (re)connect, and fn("tick") every heartbeat; it returns nothing, or a
 * function and its arguments, which then run in a task of their own. */
#include "base/gw.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/redis.h"
#include "vm/libs.h"
#include "vm/vm.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define STACK_ARGS 16

/* One per process, as there is one runtime per worker. */
static struct {
    struct gw_vm *vm;       /* the state start() was called in */
    int fn_ref;             /* start()'s fn, LUA_NOREF before */
    struct gw_redis *cmd;   /* the shared command connection, NULL when not started */
    struct gw_redis *sub;   /* the subscriber */
    uv_timer_t *tick;       /* NULL when stopped */
    char **channels;        /* asked for before the subscriber exists */
    size_t nchannels;
} ps = {NULL, LUA_NOREF, NULL, NULL, NULL, NULL, 0};

/* Run fn(kind, a, b) (a and b may be NULL) and, when it returns a
 * function, spawn a task running it with the values after it. */
static void report(const char *kind, const char *a, size_t alen, const char *b, size_t blen) {
    if (!ps.vm || ps.fn_ref == LUA_NOREF) return;
    lua_State *L = gw_vm_state(ps.vm);
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps.fn_ref);
    lua_pushstring(L, kind);
    int nargs = 1;
    if (a) {
        lua_pushlstring(L, a, alen);
        nargs++;
    }
    if (b) {
        lua_pushlstring(L, b, blen);
        nargs++;
    }
    char err[512];
    if (gw_vm_pcall_msg(ps.vm, nargs, LUA_MULTRET, err, sizeof err) != GW_OK) {
        gw_log(GW_LOG_ERROR, "cluster: %s", err);
        lua_settop(L, base);
        return;
    }
    int nres = lua_gettop(L) - base;
    if (nres < 1 || lua_type(L, base + 1) != LUA_TFUNCTION) {
        lua_settop(L, base);
        return;
    }
    gw_task_spawn(ps.vm, nres - 1, NULL, NULL);
    lua_settop(L, base);
}

static void on_message(void *ud, const char *channel, size_t channel_len, const char *msg, size_t len) {
    (void)ud;
    if (!channel) {
        report("subscribed", NULL, 0, NULL, 0);
        return;
    }
    gw_metrics.cluster_received++;
    report("message", channel, channel_len, msg, len);
}

static void on_tick(uv_timer_t *h) {
    (void)h;
    report("tick", NULL, 0, NULL, 0);
}

static void tick_closed(uv_handle_t *h) { free(h); }

static void forget_channels(void) {
    for (size_t i = 0; i < ps.nchannels; i++) free(ps.channels[i]);
    free(ps.channels);
    ps.channels = NULL;
    ps.nchannels = 0;
}

int gw_pubsub_start(struct gw_redis *cmd, const char *url, long tick_ms, char *err, size_t errlen) {
    if (!ps.vm || ps.fn_ref == LUA_NOREF || ps.sub) return GW_OK; /* nobody listens */
    if (!(ps.sub = gw_redis_new_subscriber(gw_vm_loop(ps.vm), url, on_message, NULL, err, errlen)))
        return GW_ERR;
    ps.cmd = cmd;
    for (size_t i = 0; i < ps.nchannels; i++)
        if (gw_redis_subscribe(ps.sub, ps.channels[i]) != GW_OK) gw_panic("out of memory");
    forget_channels();
    if (!(ps.tick = calloc(1, sizeof *ps.tick))) gw_panic("out of memory");
    uv_timer_init(gw_vm_loop(ps.vm), ps.tick);
    uv_timer_start(ps.tick, on_tick, 0, (uint64_t)tick_ms);
    return GW_OK;
}

static void stop_ticks(void) {
    if (!ps.tick) return;
    uv_timer_stop(ps.tick);
    uv_close((uv_handle_t *)ps.tick, tick_closed);
    ps.tick = NULL;
}

void gw_pubsub_stop(void) {
    stop_ticks();
    gw_redis_free(ps.sub);
    ps.sub = NULL;
    ps.cmd = NULL;
    forget_channels();
}

/* --- Lua ------------------------------------------------------------------- */

/* pubsub.start(fn) */
static int l_start(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    struct gw_vm *vm = gw_vm_of(L);
    if (!vm) return luaL_error(L, "gateway.pubsub needs the gateway");
    /* Once per runtime; an earlier runtime of this process (the master's
     * load before forking) is gone, so its reference is not released. */
    lua_pushvalue(L, 1);
    ps.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ps.vm = vm;
    return 0;
}

/* pubsub.subscribe(channel) */
static int l_subscribe(lua_State *L) {
    const char *channel = luaL_checkstring(L, 1);
    if (ps.sub) {
        if (gw_redis_subscribe(ps.sub, channel) != GW_OK) return luaL_error(L, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < ps.nchannels; i++)
        if (strcmp(ps.channels[i], channel) == 0) return 0;
    char **grown = realloc(ps.channels, (ps.nchannels + 1) * sizeof *grown);
    if (!grown) return luaL_error(L, "out of memory");
    ps.channels = grown;
    if (!(ps.channels[ps.nchannels] = strdup(channel))) return luaL_error(L, "out of memory");
    ps.nchannels++;
    return 0;
}

/* The reply of a fire-and-forget command: only an error is worth a line. */
static void on_sent(void *ud, const struct redisReply *reply, const char *err) {
    (void)ud;
    (void)err;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        gw_log(GW_LOG_WARNING, "cluster: Redis refused a command: %.*s", (int)reply->len, reply->str);
}

/* Send the command of the arguments from 'first' on; true | false, reason. */
static int send_args(lua_State *L, int first) {
    int argc = lua_gettop(L) - first + 1;
    if (argc < 1) return luaL_error(L, "no command");
    if (argc > STACK_ARGS) return luaL_error(L, "at most %d arguments", STACK_ARGS);
    const char *argv[STACK_ARGS];
    size_t lens[STACK_ARGS];
    for (int i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, first + i, &lens[i]);
    if (!ps.cmd) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "the cluster is not connected");
        return 2;
    }
    if (!gw_redis_command(ps.cmd, argc, argv, lens, on_sent, NULL)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "redis unavailable");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* pubsub.publish(channel, text) -> true | false, reason */
static int l_publish(lua_State *L) {
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushliteral(L, "PUBLISH");
    lua_insert(L, 1);
    int n = send_args(L, 1);
    if (lua_toboolean(L, -n)) gw_metrics.cluster_published++;
    return n;
}

/* pubsub.send(cmd, ...) -> true | false, reason; raises for a command the
 * shared connection refuses (gw_redis_refuses), as api.redis does. */
static int l_send(lua_State *L) {
    int argc = lua_gettop(L);
    if (argc >= 1 && argc <= STACK_ARGS) {
        const char *argv[STACK_ARGS];
        size_t lens[STACK_ARGS];
        for (int i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, i + 1, &lens[i]);
        const char *why = gw_redis_refuses(argc, argv, lens);
        if (why) return luaL_error(L, "%s is not allowed: %s", argv[0], why);
    }
    return send_args(L, 1);
}

/* pubsub.active() -> boolean */
static int l_active(lua_State *L) {
    lua_pushboolean(L, ps.sub != NULL && ps.vm == gw_vm_of(L));
    return 1;
}

/* pubsub.stop() */
static int l_stop(lua_State *L) {
    (void)L;
    stop_ticks();
    return 0;
}

int gw_open_pubsub(lua_State *L) {
    static const luaL_Reg fns[] = {{"start", l_start},   {"subscribe", l_subscribe}, {"publish", l_publish},
                                   {"send", l_send},     {"active", l_active},       {"stop", l_stop},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
