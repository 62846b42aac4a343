/* What the fuzz targets that go through the Lua runtime share: the runtime,
 * built once per process from fuzz/project (its actions, routes and
 * handlers), a connection to feed messages to, and a check that each
 * answer is JSON of the shape the transports promise. Included by one .c
 * each: every function is static. */
#ifndef GW_FUZZ_RUNTIME_H
#define GW_FUZZ_RUNTIME_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/gw.h"
#include "runtime/conn.h"
#include "runtime/runtime.h"
#include "vm/vm.h"

#ifndef FUZZ_PROJECT
#error "FUZZ_PROJECT: the folder of the fuzz project (the Makefile sets it)"
#endif

static uv_loop_t fuzz_loop;
static struct gw_runtime *fuzz_rt;
static struct gw_config fuzz_cfg;
static int fuzz_check_ref = LUA_NOREF;

/* The answers one input got, and whether the connection was closed. */
struct fuzz_conn {
    int answers, closed;
    const char *kind;
};

/* check(text, kind): raises unless 'text' is an answer of that transport:
 * a JSON object with a status (a number for the envelope; "OK" or "error"
 * for a TCP verb), errors a list, and the envelope's keys as strings. */
static const char fuzz_check_src[] =
    "local rt = require('gateway.runtime').rt\n"
    "local decode = rt.json.decode\n"
    "return function(text, kind)\n"
    "  assert(type(text) == 'string', 'answer is not a string')\n"
    "  local ok, v = pcall(decode, text)\n"
    "  assert(ok and type(v) == 'table', 'answer is not a JSON object: ' .. text)\n"
    "  if kind == 'socket' and (v.status == 'OK' or v.status == 'error') then\n"
    "    assert(v.context == 'response', 'verb answer without context: ' .. text)\n"
    "    return\n"
    "  end\n"
    "  assert(type(v.status) == 'number' and v.status % 1 == 0 and v.status >= 100 and v.status <= 599,\n"
    "    'bad status: ' .. text)\n"
    "  assert(type(v.errors) == 'table', 'errors is not a list: ' .. text)\n"
    "  assert(type(v.action) == 'string' and type(v.route) == 'string', 'bad envelope: ' .. text)\n"
    "  if v.status >= 400 then assert(#v.errors > 0, 'an error without errors: ' .. text) end\n"
    "end\n";

/* Lua's own coverage for libFuzzer: the Lua code (the transports, the
 * router, the pipeline) is not compiled with the sanitizer's coverage, so a
 * line hook counts each (chunk, line, previous line) step into counters
 * libFuzzer reads as its own (its "extra counters"): an input that runs a
 * new line of lua/gateway/ is kept like one that runs new C. Coroutines
 * copy the main state's hook, so every task is counted. */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fuzz_lua_cov[1 << 16];
static uintptr_t fuzz_lua_prev;

static void fuzz_lua_hook(lua_State *L, lua_Debug *ar) {
    if (!lua_getinfo(L, "S", ar)) return;
    uintptr_t here = ((uintptr_t)ar->source >> 4) * 2654435761u + (uintptr_t)ar->currentline * 40503u;
    size_t i = (size_t)((here ^ fuzz_lua_prev) & (sizeof fuzz_lua_cov - 1));
    if (fuzz_lua_cov[i] < 255) fuzz_lua_cov[i]++;
    fuzz_lua_prev = here >> 1;
}

static inline lua_State *fuzz_state(void) { return gw_vm_state(gw_runtime_vm(fuzz_rt)); }

static int fuzz_send(void *transport, const char *msg, size_t len) {
    struct fuzz_conn *c = transport;
    lua_State *L = fuzz_state();
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_check_ref);
    lua_pushlstring(L, msg, len);
    lua_pushstring(L, c->kind);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, top);
    c->answers++;
    return GW_OK;
}

static void fuzz_close(void *transport) {
    struct fuzz_conn *c = transport;
    c->closed = 1;
}

static const struct gw_conn_ops fuzz_ops = {fuzz_send, fuzz_close};

/* 1 if the input holds the text of api.json's empty-array token. The token
 * is 32 random hex digits per process that encode rewrites to [] (core/vm/
 * jsonlib.c); no client can know it, but libFuzzer reads it from the
 * comparisons it watches and sends it back, which would only show that the
 * rewrite works. Such inputs are skipped. */
static inline int fuzz_has_token(const uint8_t *data, size_t size) {
    return memmem(data, size, "empty_array:", 12) != NULL;
}

/* The runtime, made on the first call. */
static inline struct gw_runtime *fuzz_runtime(void) {
    if (fuzz_rt) return fuzz_rt;
    char err[1024];
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, "crit"};
    unsetenv("GATEWAY_PORT");
    unsetenv("GATEWAY_REDIS_URL");
    unsetenv("GATEWAY_LOG_LEVEL");
    if (uv_loop_init(&fuzz_loop) != 0) abort();
    fuzz_rt = gw_runtime_new(&fuzz_loop, FUZZ_PROJECT "/gateway.lua", &ov, &fuzz_cfg, err, sizeof err);
    if (!fuzz_rt) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    lua_State *L = fuzz_state();
    if (luaL_loadstring(L, fuzz_check_src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    fuzz_check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_sethook(L, fuzz_lua_hook, LUA_MASKLINE, 0);
    return fuzz_rt;
}

/* Open a connection of 'type' ("websocket", "socket") answering into 'c'. */
static inline struct gw_conn *fuzz_open(const char *type, struct fuzz_conn *c) {
    lua_State *L = fuzz_state();
    memset(c, 0, sizeof *c);
    c->kind = type;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, "127.0.0.1");
    lua_setfield(L, -2, "remoteIP");
    lua_pushinteger(L, 40000);
    lua_setfield(L, -2, "remotePort");
    return gw_conn_open(fuzz_rt, type, &fuzz_ops, c);
}

/* Let the loop finish what the input started (timers of finished
 * actions), then close the connection. The stack must be as it was. */
static inline void fuzz_finish(struct gw_conn *conn) {
    lua_State *L = fuzz_state();
    int top = lua_gettop(L);
    for (int i = 0; i < 4; i++) uv_run(&fuzz_loop, UV_RUN_NOWAIT);
    gw_conn_closed(conn);
    uv_run(&fuzz_loop, UV_RUN_NOWAIT);
    if (lua_gettop(L) != top) abort();
}

#endif
