/* Unit tests for gw_lua.h: tasks (coroutines) driven by a real libuv loop,
 * the cpuTimeout stop, errors with tracebacks, aborts that cancel timers,
 * loop.wait()/wake(), and action loading errors. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "base/gw.h"
#include "vm/config.h"
#include "runtime/conn.h"
#include "vm/libs.h"
#include "base/log.h"
#include "vm/vm.h"

struct fixture {
    char dir[256];
    char config[512];
    uv_loop_t loop;
    int loop_closed;
    struct gw_runtime *g;
    struct gw_config cfg;
    char err[1024];
};

/* What one task's done callback saw. */
struct record {
    int calls;
    int order;  /* global sequence number of the (last) call */
    enum gw_task_status status;
    int nres;
    int types[4];
    lua_Integer ints[4];
    char strs[4][512];
};

static int sequence;

static void done_cb(void *ud, enum gw_task_status status, lua_State *co, int nres) {
    struct record *r = ud;
    r->calls++;
    r->order = ++sequence;
    r->status = status;
    r->nres = nres;
    int top = lua_gettop(co);
    for (int i = 0; i < nres && i < 4; i++) {
        int idx = top - nres + 1 + i;
        r->types[i] = lua_type(co, idx);
        if (lua_isinteger(co, idx)) r->ints[i] = lua_tointeger(co, idx);
        if (lua_type(co, idx) == LUA_TSTRING)
            gw_fmt(r->strs[i], sizeof r->strs[i], "%s", lua_tostring(co, idx));
        else if (lua_type(co, idx) == LUA_TBOOLEAN)
            gw_fmt(r->strs[i], sizeof r->strs[i], "%s", lua_toboolean(co, idx) ? "true" : "false");
    }
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) fail_msg("cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Upper bounds on wall-clock time for things that take milliseconds when
 * they work: generous, so a loaded CI machine does not fail them, and still
 * far below what a failure costs (a 10 s sleep that was not cancelled, a
 * loop the cpuTimeout hook did not stop). */
#define QUICK_MS 5000.0
#define STOPS_MS 30000.0

/* A temp folder with gw.lua (general.cpuTimeout = 'cpu_timeout' ms),
 * actions/ and mw/; 'action' is the one action file's text. */
static struct fixture *make_dir_cpu(const char *action, int cpu_timeout) {
    struct fixture *f = calloc(1, sizeof *f);
    char buf[600], text[2048];
    assert_non_null(f);
    strcpy(f->dir, "/tmp/gw-test-lua-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    gw_fmt(f->config, sizeof f->config, "%s/gw.lua", f->dir);
    assert_int_equal(mkdir(gw_fmt(buf, sizeof buf, "%s/actions", f->dir), 0700), 0);
    assert_int_equal(mkdir(gw_fmt(buf, sizeof buf, "%s/mw", f->dir), 0700), 0);
    write_file(gw_fmt(buf, sizeof buf, "%s/actions/ping.lua", f->dir), action);
    gw_fmt(text, sizeof text,
           "return { paths = { actions = { \"%s/actions\" }, middleware = { \"%s/mw\" } },"
           " general = { cpuTimeout = %d } }\n",
           f->dir, f->dir, cpu_timeout);
    write_file(f->config, text);
    unsetenv("GATEWAY_PORT");
    unsetenv("GATEWAY_LOG_LEVEL");
    unsetenv("GATEWAY_REDIS_URL");
    assert_int_equal(uv_loop_init(&f->loop), 0);
    return f;
}

static struct fixture *make_dir(const char *action) { return make_dir_cpu(action, 100); }

static const char ping_action[] =
    "return {\n"
    "  name = \"ping\",\n"
    "  description = \"I answer pong\",\n"
    "  run = function(api, data) return { pong = true } end,\n"
    "}\n";

static int setup_cpu(void **state, int cpu_timeout) {
    struct fixture *f = make_dir_cpu(ping_action, cpu_timeout);
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    f->g = gw_runtime_new(&f->loop, f->config, &ov, &f->cfg, f->err, sizeof f->err);
    if (!f->g) {
        print_error("gw_lua_new: %s\n", f->err);
        return -1;
    }
    sequence = 0;
    *state = f;
    return 0;
}

/* cpuTimeout = 100 ms: short, for the tests of the stop itself. */
static int setup(void **state) { return setup_cpu(state, 100); }

/* cpuTimeout = 1000 ms: for tests that compute for a measured while and
 * must not be stopped, even when the machine preempts them for a long
 * moment (the hook measures wall-clock time). */
static int setup_slow(void **state) { return setup_cpu(state, 1000); }

/* Free the state, let the loop run out, and require it to close clean. */
static void finish(struct fixture *f) {
    gw_runtime_free(f->g);
    f->g = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    f->loop_closed = 1;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    if (f->g) { /* the test failed half-way: cancel what is left */
        gw_loop_shutdown();
        gw_runtime_free(f->g);
    }
    if (!f->loop_closed) {
        uv_run(&f->loop, UV_RUN_DEFAULT);
        uv_loop_close(&f->loop);
    }
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Push the chunk 'code' as a function on the main stack. */
static lua_State *push_fn(struct fixture *f, const char *code) {
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    if (luaL_loadstring(L, code) != LUA_OK) fail_msg("bad test chunk: %s", lua_tostring(L, -1));
    return L;
}

/* --- the state ------------------------------------------------------------ */

static void test_new_state(void **state) {
    struct fixture *f = *state;
    assert_non_null(gw_vm_state(gw_runtime_vm(f->g)));
    assert_ptr_equal(gw_vm_loop(gw_runtime_vm(f->g)), &f->loop);
    assert_int_equal(f->cfg.cpu_timeout, 100);
    assert_int_equal(gw_runtime_config(f->g)->cpu_timeout, 100);
    assert_string_equal(gw_runtime_config(f->g)->config_dir, f->dir);
    assert_null(gw_task_current(gw_runtime_vm(f->g)));
    assert_null(gw_task_of(gw_vm_state(gw_runtime_vm(f->g))));
    /* The runtime is reachable and loaded the action. */
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    gw_runtime_push(f->g, "handle");
    assert_int_equal(lua_type(L, -1), LUA_TFUNCTION);
    lua_pop(L, 1);
    luaL_loadstring(L, "return api.actions.versions.ping[1]");
    assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
    assert_int_equal(lua_tointeger(L, -1), 1);
    lua_pop(L, 1);
    assert_int_equal(lua_gettop(L), top);
    finish(f);
}

/* --- (a) a task that returns at once --------------------------------------- */

static void test_sync_return(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    push_fn(f, "return 1, 2");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(lua_gettop(L), top); /* the function was popped */
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_OK);
    assert_int_equal(r.nres, 2);
    assert_int_equal(r.types[0], LUA_TNUMBER);
    assert_int_equal(r.ints[0], 1);
    assert_int_equal(r.ints[1], 2);
    assert_null(gw_task_current(gw_runtime_vm(f->g)));
    /* Nothing left for the loop to do. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    finish(f);
}

static void test_sync_args(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    lua_State *L = push_fn(f, "local a, b, c = ...; return a + b, c, select('#', ...)");
    int top = lua_gettop(L) - 1;
    lua_pushinteger(L, 40);
    lua_pushinteger(L, 2);
    lua_pushliteral(L, "three");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 3, done_cb, &r));
    assert_int_equal(lua_gettop(L), top); /* function and 3 args popped */
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_OK);
    assert_int_equal(r.nres, 3);
    assert_int_equal(r.ints[0], 42);
    assert_string_equal(r.strs[1], "three");
    assert_int_equal(r.ints[2], 3);

    /* No results at all. */
    struct record r0 = {0};
    push_fn(f, "local x = 1");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r0));
    assert_int_equal(r0.calls, 1);
    assert_int_equal(r0.status, GW_TASK_OK);
    assert_int_equal(r0.nres, 0);
    finish(f);
}

static void test_current_task_inside(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    /* Inside a task, coroutine.running() is the task's thread, and it is
     * yieldable (not the main thread). */
    push_fn(f, "local co, main = coroutine.running(); return main, coroutine.isyieldable()");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(r.status, GW_TASK_OK);
    assert_string_equal(r.strs[0], "false");
    assert_string_equal(r.strs[1], "true");
    finish(f);
}

/* --- (b) a task that sleeps ------------------------------------------------- */

static void test_sleep(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    push_fn(f, "api.sleep(20); return 'slept'");
    double t0 = gw_now_ms();
    struct gw_task *t = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r);
    assert_non_null(t);
    assert_int_equal(lua_gettop(L), top);
    assert_int_equal(r.calls, 0);
    assert_null(gw_task_current(gw_runtime_vm(f->g)));
    assert_ptr_equal(gw_task_of(gw_task_thread(t)), t);

    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    double elapsed = gw_now_ms() - t0;
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_OK);
    assert_int_equal(r.nres, 1);
    assert_string_equal(r.strs[0], "slept");
    assert_true(elapsed < QUICK_MS);
    finish(f);
}

/* sleep(ms) suspends for at least ms milliseconds counted from the call,
 * even when the task computed for a while before calling it (the loop's
 * cached clock is older than the call then). */
static void test_sleep_lasts_from_the_call(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "local core = require('gateway.core')\n"
               "local t = core.now_ms()\n"
               "while core.now_ms() - t < 60 do end   -- 60 ms of work, well under cpuTimeout\n"
               "local before = core.now_ms()\n"
               "api.sleep(50)\n"
               "return math.floor(core.now_ms() - before)");
    uv_update_time(&f->loop); /* the loop's clock is fresh when the task starts */
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_OK);
    if (r.ints[0] < 49) print_error("sleep(50) lasted %lld ms\n", (long long)r.ints[0]);
    assert_true(r.ints[0] >= 49);
    finish(f);
}

static void test_sleep_then_error(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "api.sleep(1); error('late failure')");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(r.calls, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_ERROR);
    assert_non_null(strstr(r.strs[0], "late failure"));
    assert_non_null(strstr(r.strs[0], "stack traceback"));
    finish(f);
}

static void test_two_sleepers_in_order(void **state) {
    struct fixture *f = *state;
    struct record slow = {0}, fast = {0};
    push_fn(f, "api.sleep(30); return 'slow'");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &slow));
    push_fn(f, "api.sleep(5); return 'fast'");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &fast));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(fast.calls, 1);
    assert_true(fast.order < slow.order);
    assert_string_equal(fast.strs[0], "fast");
    assert_string_equal(slow.strs[0], "slow");
    finish(f);
}

/* --- (c) the cpuTimeout stop ------------------------------------------------ */

static void test_cpu_timeout(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    push_fn(f, "while true do end");
    double t0 = gw_now_ms();
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    double elapsed = gw_now_ms() - t0;
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_CPU);
    assert_int_equal(r.nres, 0);
    assert_int_equal(lua_gettop(L), top);
    assert_true(elapsed >= 99.0);
    assert_true(elapsed < STOPS_MS);
    assert_null(gw_task_current(gw_runtime_vm(f->g)));
    finish(f);
}

static void test_cpu_timeout_not_caught_by_pcall(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "while true do pcall(function() while true do end end) end");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_CPU);
    finish(f);
}

static void test_cpu_slice_per_resume(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    /* cpuTimeout is 1000 ms: 6 x 200 ms of work is more than that in all,
     * but each slice between yields is far under it. The task reports the
     * total it computed, to show the total did exceed the limit. */
    push_fn(f, "local now = require('gateway.core').now_ms\n"
               "local total = 0\n"
               "for i = 1, 6 do\n"
               "  local t = now()\n"
               "  while now() - t < 200 do end\n"
               "  total = total + (now() - t)\n"
               "  api.sleep(1)\n"
               "end\n"
               "return 'done', math.floor(total)");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_OK);
    assert_string_equal(r.strs[0], "done");
    assert_true(r.ints[1] > f->cfg.cpu_timeout);
    finish(f);
}

/* Code spinning in a coroutine of the action's own is stopped there (it
 * raises into the task, as any error does); a task that catches that and
 * goes on is stopped itself. */
static void test_cpu_timeout_in_own_coroutine(void **state) {
    struct fixture *f = *state;
    struct record r = {0}, caught = {0}, resumed = {0}, nested = {0};
    push_fn(f, "coroutine.wrap(function() while true do end end)()");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(r.status, GW_TASK_ERROR);
    assert_non_null(strstr(r.strs[0], "cpuTimeout"));

    push_fn(f, "while true do pcall(coroutine.wrap(function() while true do end end)) end");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &caught));
    assert_int_equal(caught.status, GW_TASK_CPU);

    push_fn(f, "while true do coroutine.resume(coroutine.create(function() while true do end end)) end");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &resumed));
    assert_int_equal(resumed.status, GW_TASK_CPU);

    push_fn(f, "local function spin() while true do end end\n"
               "while true do coroutine.resume(coroutine.create(function()\n"
               "  while true do pcall(coroutine.wrap(spin)) end end)) end");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &nested));
    assert_int_equal(nested.status, GW_TASK_CPU);
    finish(f);
}

/* Off the tasks (a call into the runtime on the main thread), the stop is
 * an error, and the next call runs unhindered. */
static void test_cpu_timeout_main_thread(void **state) {
    struct fixture *f = *state;
    lua_State *L = push_fn(f, "while true do end");
    assert_int_equal(gw_vm_pcall(gw_runtime_vm(f->g), 0, 0), LUA_ERRRUN);
    assert_non_null(strstr(lua_tostring(L, -1), "cpuTimeout"));
    lua_pop(L, 1);
    push_fn(f, "local n = 0 for i = 1, 100000 do n = n + i end return n");
    assert_int_equal(gw_vm_pcall(gw_runtime_vm(f->g), 0, 1), LUA_OK);
    assert_int_equal(lua_tointeger(L, -1), 5000050000);
    lua_pop(L, 1);
    finish(f);
}

/* A process forked with the state (threads do not survive fork) still has
 * the stop. */
static void test_cpu_timeout_after_fork(void **state) {
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct record r = {0};
        alarm(30); /* a child that is never stopped fails instead of hanging */
        push_fn(f, "while true do end");
        gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r);
        _exit(r.calls == 1 && r.status == GW_TASK_CPU ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    finish(f);
}

static void test_cpu_timeout_after_sleep(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "api.sleep(1); while true do end");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_CPU);
    finish(f);
}

/* --- (c2) the coroutine pool ---------------------------------------------- */

/* Each task keeps its coroutine alive in a global list (so no address is
 * reused by a new thread) and names it: `last` when it does not return. */
#define NAME_CO "keep = keep or {}; local co = coroutine.running(); keep[#keep + 1] = co; " \
                "last = tostring(co); "

static void global_string(struct fixture *f, const char *name, char *out, size_t n) {
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    lua_getglobal(L, name);
    assert_int_equal(lua_type(L, -1), LUA_TSTRING);
    gw_fmt(out, n, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
}

/* Spawn 'code' (after NAME_CO) and return its coroutine's name. */
static void spawn_named(struct fixture *f, const char *code, struct record *r, char *name, size_t n) {
    char chunk[512];
    push_fn(f, gw_fmt(chunk, sizeof chunk, "%s%s", NAME_CO, code));
    gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, r);
    global_string(f, "last", name, n);
}

static void test_pool_reuses_a_returned_coroutine(void **state) {
    struct fixture *f = *state;
    struct record r1 = {0}, r2 = {0}, r3 = {0};
    char a[64], b[64], c[64];
    spawn_named(f, "return 1", &r1, a, sizeof a);
    spawn_named(f, "return 2", &r2, b, sizeof b);
    assert_int_equal(r2.status, GW_TASK_OK);
    assert_int_equal(r2.ints[0], 2);
    assert_string_equal(a, b);
    /* One that waited on the loop before returning goes back too. */
    spawn_named(f, "api.sleep(1); return 3", &r3, c, sizeof c);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r3.status, GW_TASK_OK);
    assert_string_equal(a, c);
    finish(f);
}

/* A coroutine that raised, was stopped or was aborted is not reused, and the
 * next task runs as well as ever on a new one. */
static void test_pool_drops_a_failed_coroutine(void **state) {
    struct fixture *f = *state;
    static const char *ends[] = {"error('boom')", "while true do end", "api.sleep(10000)"};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        struct record bad = {0}, good = {0};
        char failed[64], next[64];
        spawn_named(f, ends[i], &bad, failed, sizeof failed);
        struct gw_task *t = gw_task_current(gw_runtime_vm(f->g));
        assert_null(t);
        if (bad.calls == 0) { /* still sleeping: abort it */
            lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
            luaL_loadstring(L, "return keep[#keep]");
            assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
            struct gw_task *sleeping = gw_task_of(lua_tothread(L, -1));
            lua_pop(L, 1);
            assert_non_null(sleeping);
            gw_task_abort(sleeping);
        } else {
            assert_int_not_equal(bad.status, GW_TASK_OK);
        }
        spawn_named(f, "return 'fine'", &good, next, sizeof next);
        assert_int_equal(good.status, GW_TASK_OK);
        assert_string_equal(good.strs[0], "fine");
        assert_string_not_equal(failed, next);
    }
    finish(f);
}

/* A task that set a hook of its own on its coroutine does not hand it to
 * the next task on the coroutine, and the cpuTimeout stop works there. */
static void test_pool_restores_the_hook(void **state) {
    struct fixture *f = *state;
    struct record r1 = {0}, r2 = {0}, r3 = {0};
    char a[64], b[64], c[64];
    spawn_named(f, "debug.sethook(function() hits = (hits or 0) + 1 end, 'l'); return 1", &r1, a,
                sizeof a);
    assert_int_equal(r1.status, GW_TASK_OK);
    spawn_named(f, "local h = hits\nlocal x = 1\nx = x + 1\nreturn h == hits", &r2, b, sizeof b);
    assert_string_equal(a, b);
    assert_int_equal(r2.status, GW_TASK_OK);
    assert_string_equal(r2.strs[0], "true");
    spawn_named(f, "debug.sethook(); while true do end", &r3, c, sizeof c);
    assert_string_equal(a, c);
    assert_int_equal(r3.calls, 1);
    assert_int_equal(r3.status, GW_TASK_CPU);
    finish(f);
}

/* --- (d) errors ------------------------------------------------------------- */

static void test_error(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    push_fn(f, "local function inner() error('boom') end\ninner()");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(lua_gettop(L), top);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_ERROR);
    assert_int_equal(r.nres, 1);
    assert_int_equal(r.types[0], LUA_TSTRING);
    assert_non_null(strstr(r.strs[0], "boom"));
    assert_non_null(strstr(r.strs[0], "stack traceback"));
    assert_non_null(strstr(r.strs[0], "inner"));
    finish(f);
}

static void test_error_non_string(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "error({ code = 1 })");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, GW_TASK_ERROR);
    assert_int_equal(r.nres, 1);
    assert_int_equal(r.types[0], LUA_TSTRING);
    assert_non_null(strstr(r.strs[0], "stack traceback"));
    finish(f);
}

/* --- (e) aborting a sleeping task ------------------------------------------- */

static void test_abort_sleeping(void **state) {
    struct fixture *f = *state;
    struct record r = {0};
    push_fn(f, "api.sleep(10000); return 'woke'");
    struct gw_task *t = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &r);
    assert_non_null(t);
    assert_int_equal(uv_loop_alive(&f->loop), 1); /* the timer */
    gw_task_abort(t);
    double t0 = gw_now_ms();
    /* The timer was cancelled, so the loop has nothing left to wait for. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(gw_now_ms() - t0 < QUICK_MS);
    assert_int_equal(uv_loop_alive(&f->loop), 0);
    assert_int_equal(r.calls, 0);
    finish(f);
    assert_int_equal(r.calls, 0);
}

/* At shutdown: tasks nobody waits for (spawned without 'done', as timer
 * callbacks are) are aborted with their waits; tasks with an owner are not. */
static void test_abort_unowned(void **state) {
    struct fixture *f = *state;
    struct record owned = {0};
    push_fn(f, "api.sleep(10000); error('an unowned task must not wake')");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, NULL, NULL));
    push_fn(f, "api.sleep(5); return 'owned woke'");
    assert_non_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &owned));
    gw_task_abort_unowned(gw_runtime_vm(f->g));
    /* Only the owned task's timer is left: the loop ends when it fires. */
    double t0 = gw_now_ms();
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(gw_now_ms() - t0 < QUICK_MS);
    assert_int_equal(owned.calls, 1);
    assert_string_equal(owned.strs[0], "owned woke");
    gw_task_abort_unowned(gw_runtime_vm(f->g)); /* none left: nothing happens */
    finish(f);
}

static void test_abort_waiting(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    push_fn(f, "return require('gateway.loop').wait()");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    assert_int_equal(gw_task_is_waiting(a), 1);
    /* Keep A's thread reachable from B, then abort A. */
    push_fn(f, "local th = ...; return require('gateway.loop').wake(th, 'late')");
    lua_State *co = gw_task_thread(a);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    gw_task_abort(a);
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 1, done_cb, &rb));
    assert_int_equal(rb.calls, 1);
    assert_int_equal(rb.status, GW_TASK_OK);
    assert_string_equal(rb.strs[0], "false"); /* nobody was waiting any more */
    assert_int_equal(ra.calls, 0);
    finish(f);
}

/* --- (f) wait and wake ---------------------------------------------------- */

static void test_wait_wake(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    int top = lua_gettop(L);
    push_fn(f, "local v = require('gateway.loop').wait(); return 'got ' .. v");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    assert_int_equal(ra.calls, 0);
    assert_int_equal(gw_task_is_waiting(a), 1);
    assert_int_equal(uv_loop_alive(&f->loop), 0); /* waiting holds no handle */

    push_fn(f, "local th = ...\n"
               "local woke = require('gateway.loop').wake(th, 'x')\n"
               "return woke");
    lua_State *co = gw_task_thread(a);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 1, done_cb, &rb));
    assert_int_equal(lua_gettop(L), top);

    /* wake() only schedules: B ends first, A is resumed by the loop. */
    assert_int_equal(rb.calls, 1);
    assert_int_equal(rb.status, GW_TASK_OK);
    assert_string_equal(rb.strs[0], "true");
    assert_int_equal(ra.calls, 0);
    assert_int_equal(gw_task_is_waiting(a), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(ra.status, GW_TASK_OK);
    assert_int_equal(ra.nres, 1);
    assert_string_equal(ra.strs[0], "got x");
    assert_true(rb.order < ra.order);
    assert_null(gw_task_current(gw_runtime_vm(f->g)));
    finish(f);
}

static void test_wait_wake_several_values(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    push_fn(f, "local loop = require('gateway.loop')\n"
               "local a, b = loop.wait()\n"
               "local c = loop.wait()\n"
               "return a, b, c");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    /* B wakes it twice: the second finds it no longer waiting (it has not
     * run yet); C, after the loop ran A to its second wait, wakes it again. */
    const char *waker = "local th, v = ...; local loop = require('gateway.loop')\n"
                        "local w1 = loop.wake(th, v, v and 'two')\n"
                        "local w2 = loop.wake(th, 'again')\n"
                        "return w1, w2";
    lua_State *co = gw_task_thread(a);
    push_fn(f, waker);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushstring(L, "one");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 2, done_cb, &rb));
    assert_string_equal(rb.strs[0], "true");
    assert_string_equal(rb.strs[1], "false");
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(ra.calls, 0);
    assert_int_equal(gw_task_is_waiting(a), 1);

    struct record rc = {0};
    push_fn(f, "local th = ...; return require('gateway.loop').wake(th, 'three')");
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 1, done_cb, &rc));
    assert_string_equal(rc.strs[0], "true");
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(ra.nres, 3);
    assert_string_equal(ra.strs[0], "one");
    assert_string_equal(ra.strs[1], "two");
    assert_string_equal(ra.strs[2], "three");
    finish(f);
}

/* A task parked by a C function (as a module's async call parks it) and
 * resumed from inside another task: the resume waits for the loop, so the
 * resumer ends first and no resume nests in another. */
static struct gw_task *parked;

static int l_park(lua_State *L) {
    parked = gw_task_of(L);
    return lua_yield(L, 0);
}

static int l_unpark(lua_State *L) {
    lua_State *co = gw_task_thread(parked);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    gw_task_resume(parked, 1);
    lua_pushboolean(L, gw_task_current(gw_vm_of(L)) == gw_task_of(L)); /* still the resumer */
    return 1;
}

static void test_resume_from_a_task_waits_for_the_loop(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    lua_register(L, "park", l_park);
    lua_register(L, "unpark", l_unpark);
    push_fn(f, "return 'parked got ' .. park()");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    push_fn(f, "return unpark('x')");
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &rb));
    assert_int_equal(rb.calls, 1);
    assert_string_equal(rb.strs[0], "true");
    assert_int_equal(ra.calls, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(ra.status, GW_TASK_OK);
    assert_string_equal(ra.strs[0], "parked got x");
    assert_true(rb.order < ra.order);
    finish(f);
}

/* A task aborted while its wake waits in the ready queue: the wake goes
 * with it, and the loop has nothing left to run. */
static void test_abort_cancels_a_pending_wake(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    push_fn(f, "return require('gateway.loop').wait()");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    push_fn(f, "local th = ...; return require('gateway.loop').wake(th, 'x')");
    lua_pushthread(gw_task_thread(a));
    lua_xmove(gw_task_thread(a), L, 1);
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 1, done_cb, &rb));
    assert_string_equal(rb.strs[0], "true");
    gw_task_abort(a);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(ra.calls, 0);
    finish(f);
}

static void test_wake_not_waiting(void **state) {
    struct fixture *f = *state;
    struct record ra = {0}, rb = {0};
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    /* A sleeps: it is suspended but not in wait(), so wake() refuses. */
    push_fn(f, "api.sleep(5); return 'slept'");
    struct gw_task *a = gw_task_spawn(gw_runtime_vm(f->g), 0, done_cb, &ra);
    assert_non_null(a);
    assert_int_equal(gw_task_is_waiting(a), 0);
    push_fn(f, "local th = ...; return require('gateway.loop').wake(th, 'x')");
    lua_State *co = gw_task_thread(a);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    assert_null(gw_task_spawn(gw_runtime_vm(f->g), 1, done_cb, &rb));
    assert_string_equal(rb.strs[0], "false");
    assert_int_equal(ra.calls, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(ra.calls, 1);
    assert_string_equal(ra.strs[0], "slept");
    finish(f);
}

static void test_loop_outside_task(void **state) {
    struct fixture *f = *state;
    /* On the main thread api.sleep() and wait() refuse with a clear error. */
    lua_State *L = push_fn(f, "return api.sleep(1)");
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_ERRRUN);
    assert_non_null(strstr(lua_tostring(L, -1), "only be called from an action"));
    lua_pop(L, 1);
    push_fn(f, "return require('gateway.loop').wait()");
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_ERRRUN);
    lua_pop(L, 1);
    assert_int_equal(uv_loop_alive(&f->loop), 0);
    finish(f);
}

/* --- loading errors -------------------------------------------------------- */

static void test_action_missing_description(void **state) {
    (void)state;
    struct fixture *f = make_dir("return {\n"
                                 "  name = \"nodesc\",\n"
                                 "  run = function() return {} end,\n"
                                 "}\n");
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    struct gw_config cfg;
    char err[1024] = "";
    struct gw_runtime *g = gw_runtime_new(&f->loop, f->config, &ov, &cfg, err, sizeof err);
    int loop_rc = uv_loop_close(&f->loop);
    f->loop_closed = 1;
    char file[600];
    gw_fmt(file, sizeof file, "%s/actions/ping.lua", f->dir);
    int ok = g == NULL && strstr(err, "is missing 'action.description'") && strstr(err, file) &&
             strstr(err, "nodesc") && !strchr(err, '\n');
    if (g) gw_runtime_free(g);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    if (!ok) print_error("err: %s\n", err);
    assert_null(g);
    assert_true(ok);
    assert_int_equal(loop_rc, 0);
}

static void test_bad_config(void **state) {
    (void)state;
    struct fixture *f = make_dir(ping_action);
    write_file(f->config, "return { servers = { web = { port = 'x' } } }\n");
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    struct gw_config cfg;
    char err[1024] = "";
    struct gw_runtime *g = gw_runtime_new(&f->loop, f->config, &ov, &cfg, err, sizeof err);
    int loop_rc = uv_loop_close(&f->loop);
    if (g) gw_runtime_free(g);
    int ok = g == NULL && strstr(err, "servers.web.port") && strstr(err, "gw.lua");
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    if (!ok) print_error("err: %s\n", err);
    assert_true(ok);
    assert_int_equal(loop_rc, 0);
}

/* --- out of memory --------------------------------------------------------- */

/* A lua_Alloc that fails on demand, as lua/lua's ltests.c debug_realloc
 * does with its count limit: every allocation from the 'fail_from'-th on
 * is refused until the test clears it. Frees always work. */
struct oom {
    long count;     /* allocations (nsize > 0) asked for so far */
    long fail_from; /* refuse this one and every later one; 0: never */
    int transient;  /* ... no: only this one and the next (Lua's retry of it
                       after its emergency collection), then recover */
    long refused;
    long arm_after; /* oom_arm() sets fail_from this many allocations on */
};

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct oom *o = ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    o->count++;
    if (o->fail_from > 0 && o->count >= o->fail_from &&
        (!o->transient || o->count <= o->fail_from + 1)) {
        o->refused++;
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* A config loading the repository's example actions and middleware, plus
 * a global middleware that runs first and calls oom_arm() when the test has
 * set it: allocations then start failing inside the request. */
static const char arm_middleware[] =
    "return { name = 'oomArm', global = true, priority = -1000,\n"
    "  preProcessor = function(data) if oom_arm then oom_arm() end end }\n";

/* The fixture's own action: it completes from a timer, so it needs the
 * event loop both in api.timer.after and in the processor's wait for next(). */
static const char later_action[] =
    "return { name = 'later', description = 'I answer from a timer',\n"
    "  run = function(api, data, next)\n"
    "    api.timer.after(1, function() data.response.later = true; next() end)\n"
    "  end }\n";

static const char later_ok[] =
    "{\"errors\":[],\"data\":{\"later\":true},\"action\":\"later\",\"route\":\"\",\"status\":200}";

static struct fixture *make_examples_dir(void) {
    struct fixture *f = make_dir(ping_action);
    char cwd[1024], text[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    gw_fmt(text, sizeof text, "%s/actions/moneyInCents.lua", cwd);
    if (access(text, R_OK) != 0) fail_msg("run the unit tests from the repository root (no %s)", text);
    gw_fmt(text, sizeof text,
           "return { paths = { actions = { \"%s/actions\", \"%s/actions\" },"
           " middleware = { \"%s/middleware\", \"%s/mw\" } }, general = { actionTimeout = 10000 } }\n",
           cwd, f->dir, cwd, f->dir);
    write_file(f->config, text);
    write_file(gw_fmt(text, sizeof text, "%s/mw/oomArm.lua", f->dir), arm_middleware);
    write_file(gw_fmt(text, sizeof text, "%s/actions/later.lua", f->dir), later_action);
    return f;
}

/* A transport for gw_conn that keeps what it is asked to send. */
struct wire {
    int sends;
    char last[4096];
    int closes;
};

static int wire_send(void *transport, const char *msg, size_t len) {
    struct wire *w = transport;
    w->sends++;
    gw_fmt(w->last, sizeof w->last, "%.*s", (int)len, msg);
    return GW_OK;
}

static void wire_close(void *transport) { ((struct wire *)transport)->closes++; }

static const struct gw_conn_ops wire_ops = {wire_send, wire_close};

/* oom_arm(): allocations fail from 'arm_after' allocations on. */
static int l_oom_arm(lua_State *L) {
    struct oom *o = lua_touserdata(L, lua_upvalueindex(1));
    if (o->arm_after > 0) o->fail_from = o->count + o->arm_after;
    return 0;
}

/* Send one line on the connection and run the loop until it is answered. */
static void send_line(struct fixture *f, struct gw_conn *c, struct wire *w, const char *line) {
    memset(w, 0, sizeof *w);
    gw_conn_message(c, line, strlen(line), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

static const char money_line[] = "{\"action\":\"moneyInCents\",\"data\":{\"moneyInCents\":\"4\"},\"request_id\":1}";
static const char money_ok[] =
    "{\"errors\":[],\"data\":{\"moneyInCents\":4},\"action\":\"moneyInCents\",\"route\":\"\",\"status\":200,\"request_id\":1}";
static const char money_500[] =
    "{\"errors\":[\"The server experienced an internal error\"],\"data\":null,\"action\":\"moneyInCents\","
    "\"route\":\"\",\"status\":500,\"request_id\":1}";

/* A state that loaded must work: answer an example action and one that
 * waits on the loop, on a connection opened and closed for the check. */
static void assert_state_works(struct fixture *f, long n) {
    struct wire w;
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    lua_createtable(L, 0, 2);
    gw_conn_push_peer(L, -1);
    struct gw_conn *c = gw_conn_open(f->g, "socket", &wire_ops, &w);
    send_line(f, c, &w, money_line);
    if (strcmp(w.last, money_ok) != 0) fail_msg("allocation %ld refused, the state loaded, and answers %s", n, w.last);
    send_line(f, c, &w, "{\"action\":\"later\"}");
    if (strcmp(w.last, later_ok) != 0) fail_msg("allocation %ld refused, the state loaded, and answers %s", n, w.last);
    gw_conn_closed(c);
}

/* Load the examples with allocation 'n' and every later one refused: the
 * load must fail with an error that says memory, or, when Lua shrugged the
 * refusal off (a string table that could not grow), give a whole state.
 * Either way the loop must end with nothing open. Returns 1 when it loaded
 * although an allocation was refused. */
static int load_failing_at(struct fixture *f, long n) {
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    struct oom failing = {0, n, 0, 0, 0};
    int loaded = 0;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->err[0] = '\0';
    f->g = gw_runtime_new_alloc(oom_alloc, &failing, &f->loop, f->config, &ov, &f->cfg, f->err, sizeof f->err);
    if (f->g) {
        /* (The count varies by a few between runs, with Lua's hash seeds:
         * near the end, allocation n may not have been asked for at all.) */
        loaded = failing.refused > 0;
        failing.fail_from = 0;
        assert_state_works(f, n);
        gw_runtime_free(f->g);
        f->g = NULL;
    } else if (!strstr(f->err, "memory")) {
        fail_msg("allocation %ld refused: error \"%s\" does not say memory", n, f->err);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    return loaded;
}

/* The examples loaded on a state whose memory comes from oom_alloc with 'o'
 * (nothing refused yet). */
static struct fixture *oom_examples_state(struct oom *o) {
    struct fixture *f = make_examples_dir();
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    f->g = gw_runtime_new_alloc(oom_alloc, o, &f->loop, f->config, &ov, &f->cfg, f->err, sizeof f->err);
    if (!f->g) fail_msg("gw_lua_new_alloc: %s", f->err);
    return f;
}

/* Loading the examples with the Nth allocation refused, and every one
 * after it, for N = 1.. up to all the load makes: every N below 1000, then
 * every GW_OOM_STEP-th (make test-unit-asan: 3; 1 tries them all, in a
 * minute or two), by default a sample of a few hundred. */
static void test_oom_loading(void **state) {
    (void)state;
    struct oom o = {0, 0, 0, 0, 0};
    struct fixture *f = oom_examples_state(&o);
    long total = o.count;
    assert_state_works(f, 0);
    gw_runtime_free(f->g);
    f->g = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    print_message("loading the examples makes %ld allocations\n", total);
    long step = getenv("GW_OOM_STEP") ? atol(getenv("GW_OOM_STEP")) : 0;
    double t0 = gw_now_ms();
    int tried = 0, loaded = 0;
    for (long n = 1; n <= total; n += n < 1000 ? 1 : step > 0 ? step : 1 + n / 200) {
        loaded += load_failing_at(f, n);
        tried++;
    }
    for (long n = total - 2; step != 1 && n <= total; n++) { /* the very end of the load too */
        loaded += load_failing_at(f, n);
        tried++;
    }
    print_message("%d failing loads in %.0f ms (%d loaded all the same)\n", tried, gw_now_ms() - t0,
                  loaded);
    f->loop_closed = 1;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
}


/* Running an action (the example moneyInCents, over a socket connection,
 * through gw_conn, gw_call and the runtime as in production): the Nth
 * allocation after the request's first middleware starts fails, for
 * every N up to what the request needs. Each request must end with one
 * answer, the right one or a 500, and leave the connection as it was:
 * nothing pending, and the next request answered right. */
static void test_oom_running_an_action(void **state) {
    (void)state;
    struct oom o = {0, 0, 0, 0, 0};
    struct fixture *f = oom_examples_state(&o);
    /* A hundred failing requests each log an error and an action line: keep the
     * test's output to its own findings. */
    int log_level = gw_log_get_level();
    gw_log_set_level(GW_LOG_CRIT);
    lua_State *L = gw_vm_state(gw_runtime_vm(f->g));
    lua_pushlightuserdata(L, &o);
    lua_pushcclosure(L, l_oom_arm, 1);
    lua_setglobal(L, "oom_arm");

    struct wire w;
    lua_createtable(L, 0, 2);
    gw_conn_push_peer(L, -1);
    struct gw_conn *c = gw_conn_open(f->g, "socket", &wire_ops, &w);

    /* How many allocations the request makes once armed. */
    o.arm_after = 0;
    long before = o.count;
    send_line(f, c, &w, money_line);
    assert_int_equal(w.sends, 1);
    assert_string_equal(w.last, money_ok);
    long needed = o.count - before;
    print_message("the request makes %ld allocations\n", needed);
    assert_true(needed > 10);

    int answered_500 = 0;
    for (long n = 1; n <= needed + 2; n++) {
        o.arm_after = n;
        o.transient = 1;
        o.refused = 0;
        send_line(f, c, &w, money_line);
        o.fail_from = 0;
        o.arm_after = 0;
        if (w.sends != 1) fail_msg("allocation %ld after arming refused: %d answers", n, w.sends);
        if (strcmp(w.last, money_500) == 0) answered_500++;
        else if (strcmp(w.last, money_ok) != 0)
            fail_msg("allocation %ld after arming refused: answer %s", n, w.last);
        if (n > needed + 1) assert_int_equal(o.refused, 0);
        /* The connection is as it was. */
        send_line(f, c, &w, "detailsView");
        if (!strstr(w.last, "\"pendingActions\":0"))
            fail_msg("allocation %ld after arming refused: then %s", n, w.last);
        send_line(f, c, &w, money_line);
        if (strcmp(w.last, money_ok) != 0) fail_msg("allocation %ld after arming refused: then %s", n, w.last);
    }
    gw_log_set_level(log_level);
    print_message("%d of %ld failing requests answered 500\n", answered_500, needed);
    assert_true(answered_500 > 0);

    gw_conn_closed(c);
    finish(f);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
}

/* general.luaMemoryLimit on a state whose memory comes from the caller's
 * allocator: an action that allocates without bound fails with 500, the
 * memory comes back, and the next request is answered. With the cap below
 * what the state already holds, every task fails at its first allocation,
 * yet opening the connection, spawning the task and rendering the 500 (the
 * runtime's own work, partly outside protected calls) still allocate. */
static void test_memory_limit(void **state) {
    (void)state;
    struct oom o = {0, 0, 0, 0, 0};
    struct fixture *f = oom_examples_state(&o);
    int log_level = gw_log_get_level();
    gw_log_set_level(GW_LOG_CRIT);
    struct gw_vm *vm = gw_runtime_vm(f->g);
    lua_State *L = gw_vm_state(vm);
    size_t base = gw_vm_memory(vm);
    assert_true(base > 100000);
    size_t limit = base + 4 * 1024 * 1024;
    gw_vm_limit_memory(vm, limit);

    struct wire w;
    lua_createtable(L, 0, 2);
    gw_conn_push_peer(L, -1);
    struct gw_conn *c = gw_conn_open(f->g, "socket", &wire_ops, &w);
    send_line(f, c, &w, money_line);
    assert_string_equal(w.last, money_ok);

    /* The global middleware calls oom_arm() before each action: a hog. */
    assert_int_equal(luaL_dostring(L, "oom_arm = function() local t = {} "
                                      "for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end end"),
                     LUA_OK);
    long count = o.count;
    for (int i = 0; i < 3; i++) {
        send_line(f, c, &w, money_line);
        assert_string_equal(w.last, money_500);
        assert_true(gw_vm_memory(vm) < limit);
    }
    assert_true(o.count > count + 1000); /* the hog's memory came from 'o' */
    assert_int_equal(o.refused, 0);       /* ... and the cap, not 'o', refused it */
    assert_int_equal(luaL_dostring(L, "oom_arm = nil"), LUA_OK);
    send_line(f, c, &w, money_line);
    assert_string_equal(w.last, money_ok);
    gw_conn_closed(c);

    /* Below what the state holds: no task gets far, the runtime answers. */
    gw_vm_limit_memory(vm, 1);
    lua_createtable(L, 0, 2);
    gw_conn_push_peer(L, -1);
    c = gw_conn_open(f->g, "socket", &wire_ops, &w);
    for (int i = 0; i < 3; i++) {
        send_line(f, c, &w, money_line);
        /* (The task failed before it read the message: a bare envelope.) */
        assert_non_null(strstr(w.last, "\"status\":500"));
    }
    gw_vm_limit_memory(vm, 0);
    send_line(f, c, &w, money_line);
    assert_string_equal(w.last, money_ok);
    gw_conn_closed(c);
    gw_log_set_level(log_level);
    finish(f);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define T_SLOW(fn) cmocka_unit_test_setup_teardown(fn, setup_slow, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_new_state),
        T(test_sync_return),
        T(test_sync_args),
        T(test_current_task_inside),
        T(test_sleep),
        T_SLOW(test_sleep_lasts_from_the_call),
        T(test_sleep_then_error),
        T(test_two_sleepers_in_order),
        T(test_cpu_timeout),
        T(test_cpu_timeout_not_caught_by_pcall),
        T_SLOW(test_cpu_slice_per_resume),
        T(test_cpu_timeout_after_sleep),
        T(test_cpu_timeout_in_own_coroutine),
        T(test_cpu_timeout_main_thread),
        T(test_cpu_timeout_after_fork),
        T(test_pool_reuses_a_returned_coroutine),
        T(test_pool_drops_a_failed_coroutine),
        T(test_pool_restores_the_hook),
        T(test_error),
        T(test_error_non_string),
        T(test_abort_sleeping),
        T(test_abort_unowned),
        T(test_abort_waiting),
        T(test_wait_wake),
        T(test_wait_wake_several_values),
        T(test_wake_not_waiting),
        T(test_resume_from_a_task_waits_for_the_loop),
        T(test_abort_cancels_a_pending_wake),
        T(test_loop_outside_task),
        cmocka_unit_test(test_action_missing_description),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_oom_loading),
        cmocka_unit_test(test_oom_running_an_action),
        cmocka_unit_test(test_memory_limit),
    };
    return cmocka_run_group_tests_name("gw_lua", tests, NULL, NULL);
}
