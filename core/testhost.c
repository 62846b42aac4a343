/* gateway.testhost: the runtime inside a test process, for the spec helper
 * (lua/gateway/test.lua, docs/testing.md). What main.c makes for a worker, minus
 * the listeners: a loop, the runtime, its Redis client; each request goes
 * through runtime/call.c to the Lua transport "test" and the loop turns until
 * its answer, JSON text, is there. Only text crosses between the two states. */
#include "base/gw.h"
#include "base/log.h"
#include "base/redis.h"
#include "base/regex.h"
#include "modules/mods.h"
#include "runtime/call.h"
#include "runtime/runtime.h"
#include "vm/config.h"
#include "vm/libs.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOST_META "gateway.testhost"
#define CONNECT_MS 10000 /* for Redis to accept the host's two clients */

struct host {
    uv_loop_t loop;
    struct gw_runtime *rt;
    struct gw_config cfg;
    struct gw_redis *redis; /* api.redis's */
    struct gw_redis *peek;  /* the test's own (h.redis): nothing is refused on it */
    int closed;
};

static void on_tick(uv_timer_t *t) { (void)t; }

/* Run the loop until '*flag' is set or 'ms' have passed; 1 when it is set. */
static int run_until(struct host *h, const int *flag, long ms) {
    uv_update_time(&h->loop);
    uint64_t deadline = uv_now(&h->loop) + (uint64_t)ms;
    uv_timer_t tick;
    uv_timer_init(&h->loop, &tick);
    /* A timer so that UV_RUN_ONCE returns even when nothing else is due. */
    uint64_t period = ms < 1 ? 1 : ms < 50 ? (uint64_t)ms : 50;
    uv_timer_start(&tick, on_tick, period, period);
    while (!*flag && uv_now(&h->loop) < deadline) uv_run(&h->loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&h->loop, UV_RUN_NOWAIT); /* let the close complete: 'tick' is on our stack */
    return *flag;
}

static struct host *check_host(lua_State *L) {
    struct host *h = luaL_checkudata(L, 1, HOST_META);
    if (h->closed) luaL_error(L, "the gateway test host is closed");
    return h;
}

static void close_walk(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

static void host_close(struct host *h) {
    if (h->closed) return;
    h->closed = 1;
    if (h->rt) gw_runtime_set_redis(h->rt, NULL);
    gw_redis_free(h->redis);
    gw_redis_free(h->peek);
    h->redis = h->peek = NULL;
    gw_runtime_free(h->rt);
    h->rt = NULL;
    /* What the runtime left (timers of api.timer.after not yet due) is
     * closed, so that the loop can be. */
    for (int i = 0; i < 10 && uv_run(&h->loop, UV_RUN_NOWAIT); i++) continue;
    uv_walk(&h->loop, close_walk, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_loop_close(&h->loop);
}

/* testhost.new(config_path | nil, redis_url, log_level | nil) -> host */
static int testhost_new(lua_State *L) {
    const char *config = luaL_optstring(L, 1, NULL);
    const char *url = luaL_checkstring(L, 2);
    const char *level = luaL_optstring(L, 3, NULL);
    if (level && gw_log_level_parse(level) < 0) return luaL_argerror(L, 3, "not a log level");
    struct host *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    h->closed = 1; /* until the loop exists */
    uv_loop_init(&h->loop);
    h->closed = 0;
    luaL_setmetatable(L, HOST_META);

    char err[1024];
    struct gw_config_overrides ov = {NULL, -1, -1, url, level};
    if (!(h->rt = gw_runtime_new(&h->loop, config, &ov, &h->cfg, err, sizeof err))) {
        host_close(h);
        return luaL_error(L, "%s", err);
    }
    gw_redis_allow(h->cfg.redis_allow);
    if (!(h->redis = gw_redis_new(&h->loop, h->cfg.redis_url, h->cfg.redis_command_timeout,
                                  h->cfg.redis_max_pending, err, sizeof err)) ||
        !(h->peek = gw_redis_new(&h->loop, h->cfg.redis_url, h->cfg.redis_command_timeout, 0, err,
                                 sizeof err))) {
        host_close(h);
        return luaL_error(L, "redis.url: %s", err);
    }
    gw_runtime_set_redis(h->rt, h->redis);
    return 1;
}

/* host:wait_redis(ms) -> true | false: both clients connected within 'ms'. */
static int testhost_m_wait_redis(lua_State *L) {
    struct host *h = check_host(L);
    long ms = (long)luaL_optinteger(L, 2, CONNECT_MS);
    uv_update_time(&h->loop);
    uint64_t deadline = uv_now(&h->loop) + (uint64_t)ms;
    int never = 0;
    while (!(gw_redis_connected(h->redis) && gw_redis_connected(h->peek)) &&
           uv_now(&h->loop) < deadline)
        run_until(h, &never, 50);
    lua_pushboolean(L, gw_redis_connected(h->redis) && gw_redis_connected(h->peek));
    return 1;
}

/* One request's answer, copied out of the runtime's state. */
struct answer {
    int done;
    char *text;
    size_t len;
};

static void on_reply(void *ud, lua_State *L, int base, int n) {
    struct answer *a = ud;
    a->done = 1;
    size_t len = 0;
    const char *s = n > 0 ? lua_tolstring(L, base, &len) : NULL;
    if (!s) return;
    if (!(a->text = malloc(len + 1))) gw_panic("out of memory");
    memcpy(a->text, s, len);
    a->text[len] = '\0';
    a->len = len;
}

/* host:call(request_json [, guard_ms]) -> answer_json | nil, reason
 * Runs runtime.handle("test", { json = request_json }) as the transports run a
 * request, and the loop until it answers. 'guard_ms' bounds the wait when
 * general.actionTimeout does not (0 disables it): past it the request is
 * cancelled and nil, "no answer within N ms" returned. */
static int testhost_m_call(lua_State *L) {
    struct host *h = check_host(L);
    size_t len;
    const char *req = luaL_checklstring(L, 2, &len);
    long guard = (long)luaL_optinteger(L, 3, 0);
    if (guard <= 0) guard = h->cfg.action_timeout > 0 ? h->cfg.action_timeout + 5000 : 60000;

    /* This library is loaded RTLD_GLOBAL, so gateway.core in the spec's own
     * state binds to the same pattern cache. Patterns its gateway.regex
     * calls dropped from a full cache (4096 of them, JIT code) wait for the
     * runtime's next task to free them; free them here, before the call and
     * its actionTimeout start, not inside the action (no binding of this
     * state runs while the spec calls the host). */
    gw_regex_collect();
    struct answer a = {0, NULL, 0};
    lua_State *R = gw_vm_state(gw_runtime_vm(h->rt));
    struct gw_call *c = gw_call_new(h->rt, "test", on_reply, &a);
    lua_createtable(R, 0, 1);
    lua_pushlstring(R, req, len);
    lua_setfield(R, -2, "json");
    gw_call_run(c);
    if (!a.done && !run_until(h, &a.done, guard)) {
        gw_call_cancel(c);
        uv_run(&h->loop, UV_RUN_NOWAIT);
        lua_pushnil(L);
        lua_pushfstring(L, "no answer within %d ms", (int)guard);
        return 2;
    }
    if (!a.text) {
        lua_pushnil(L);
        lua_pushliteral(L, "the runtime answered nothing");
        return 2;
    }
    lua_pushlstring(L, a.text, a.len);
    free(a.text);
    return 1;
}

struct peek {
    int done;
    lua_State *L;
    int pushed; /* 1: the reply; 2: nil, err */
};

static void on_peek(void *ud, const struct redisReply *reply, const char *err) {
    struct peek *p = ud;
    p->done = 1;
    if (!reply) {
        lua_pushnil(p->L);
        lua_pushstring(p->L, err ? err : "redis unavailable");
        p->pushed = 2;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        lua_pushnil(p->L);
        lua_pushlstring(p->L, reply->str, reply->len);
        p->pushed = 2;
    } else {
        mod_redis_push_reply(p->L, reply);
        p->pushed = 1;
    }
}

/* host:redis(cmd, ...) -> reply | nil, err: on the test's own connection to
 * the gateway's Redis; nothing is refused there (FLUSHDB included). */
static int testhost_m_redis(lua_State *L) {
    struct host *h = check_host(L);
    int argc = lua_gettop(L) - 1;
    if (argc < 1) return luaL_error(L, "redis: a command is needed");
    if (argc > 1024) return luaL_error(L, "redis: too many arguments");
    const char *argv[1024];
    size_t argvlen[1024];
    for (int i = 0; i < argc; i++) argv[i] = luaL_checklstring(L, i + 2, &argvlen[i]);
    luaL_checkstack(L, 4, "redis");
    struct peek p = {0, L, 0};
    if (!gw_redis_command(h->peek, argc, argv, argvlen, on_peek, &p)) {
        lua_pushnil(L);
        lua_pushliteral(L, "redis unavailable");
        return 2;
    }
    long ms = h->cfg.redis_command_timeout > 0 ? h->cfg.redis_command_timeout + 1000 : 30000;
    if (!run_until(h, &p.done, ms)) return luaL_error(L, "redis: no reply within %d ms", (int)ms);
    return p.pushed;
}

/* host:run(ms): turn the loop for 'ms' (timers an action left, pushes). */
static int testhost_m_run(lua_State *L) {
    struct host *h = check_host(L);
    lua_Integer ms = luaL_checkinteger(L, 2);
    luaL_argcheck(L, ms >= 0 && ms <= 3600000, 2, "0 to 3600000 ms");
    int never = 0;
    run_until(h, &never, (long)ms);
    return 0;
}

/* host:close(): stop the clients and the runtime, close the loop. */
static int testhost_m_close(lua_State *L) {
    struct host *h = luaL_checkudata(L, 1, HOST_META);
    host_close(h);
    return 0;
}

/* testhost.spawn({ argv... }, logfile) -> pid: a child that gets SIGTERM when
 * this process ends (PR_SET_PDEATHSIG), so a private redis-server never
 * outlives the specs; its stdout and stderr go to 'logfile'. */
static int testhost_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *logfile = luaL_checkstring(L, 2);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > 64) return luaL_argerror(L, 1, "1 to 64 arguments");
    const char *argv[65];
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        argv[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the string stays referenced by the table */
    }
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return luaL_error(L, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);
        int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    lua_pushinteger(L, pid);
    return 1;
}

/* testhost.stop(pid) -> exit status: SIGTERM, then SIGKILL after 5 s. */
static int testhost_stop(lua_State *L) {
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    if (pid <= 0) return luaL_argerror(L, 1, "not a process id");
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) {
            lua_pushnil(L);
            return 1;
        }
        if (i == 499) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
}

/* testhost.mkdtemp() -> a new private folder under $TMPDIR (or /tmp). */
static int testhost_mkdtemp(lua_State *L) {
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    gw_fmt(path, sizeof path, "%s/gateway-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(path)) return luaL_error(L, "mkdtemp: %s", strerror(errno));
    lua_pushstring(L, path);
    return 1;
}

/* testhost.sleep(ms): for the caller's own waits (a socket file to appear). */
static int testhost_sleep(lua_State *L) {
    lua_Integer ms = luaL_checkinteger(L, 1);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

static const luaL_Reg host_methods[] = {
    {"wait_redis", testhost_m_wait_redis}, {"call", testhost_m_call}, {"redis", testhost_m_redis}, {"run", testhost_m_run}, {"close", testhost_m_close}, {NULL, NULL}};

static const luaL_Reg lib[] = {{"new", testhost_new},         {"spawn", testhost_spawn}, {"stop", testhost_stop},
                               {"mkdtemp", testhost_mkdtemp}, {"sleep", testhost_sleep}, {NULL, NULL}};

int luaopen_gateway_testhost(lua_State *L);

int luaopen_gateway_testhost(lua_State *L) {
    if (luaL_newmetatable(L, HOST_META)) {
        luaL_newlib(L, host_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, testhost_m_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, testhost_m_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    luaL_newlib(L, lib);
    gw_open_json(L); /* the gateway's JSON, for the helper's side of the text */
    lua_setfield(L, -2, "json");
    return 1;
}
