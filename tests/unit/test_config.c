/* Unit tests for gw_config.h: gateway.lua loading, validation, defaults,
 * path resolution and overrides. Config files live in a mkdtemp folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/gw.h"
#include "vm/config.h"
#include "base/redis.h"
#include "base/log.h"

struct fixture {
    char dir[256];
    char path[512]; /* <dir>/gw.lua */
    lua_State *L;
    int top;        /* stack top before the load, a sentinel below it */
    struct gw_config cfg;
    char err[1024];
};

static const struct gw_config_overrides no_ov = {NULL, -1, -1, NULL, NULL};

static void clear_env(void) {
    unsetenv("GATEWAY_PORT");
    unsetenv("GATEWAY_LOG_LEVEL");
    unsetenv("GATEWAY_REDIS_URL");
}

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/gw-test-config-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    gw_fmt(f->path, sizeof f->path, "%s/gw.lua", f->dir);
    f->L = luaL_newstate();
    luaL_openlibs(f->L);
    /* Something below whatever the load pushes, to see it is left alone. */
    lua_pushliteral(f->L, "sentinel");
    f->top = lua_gettop(f->L);
    clear_env();
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state) {
    struct fixture *f = *state;
    clear_env();
    lua_close(f->L);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static int load_ov(struct fixture *f, const char *text, const struct gw_config_overrides *ov) {
    if (text) write_file(f->path, text);
    f->err[0] = '\0';
    return gw_config_load(f->L, f->path, ov, &f->cfg, f->err, sizeof f->err);
}

/* Load and expect success: exactly one table pushed, sentinel untouched. */
static void load_ok_ov(struct fixture *f, const char *text, const struct gw_config_overrides *ov) {
    int rc = load_ov(f, text, ov);
    if (rc != GW_OK) print_error("unexpected error: %s\n", f->err);
    assert_int_equal(rc, GW_OK);
    assert_int_equal(lua_gettop(f->L), f->top + 1);
    assert_true(lua_istable(f->L, -1));
    assert_string_equal(lua_tostring(f->L, f->top), "sentinel");
}

static void load_ok(struct fixture *f, const char *text) { load_ok_ov(f, text, &no_ov); }

/* Load and expect failure: nothing pushed, the message non-empty and on
 * one line, naming the file. */
static void load_fail_ov(struct fixture *f, const char *text, const struct gw_config_overrides *ov) {
    int rc = load_ov(f, text, ov);
    assert_int_equal(rc, GW_ERR);
    assert_int_equal(lua_gettop(f->L), f->top);
    assert_string_equal(lua_tostring(f->L, f->top), "sentinel");
    assert_true(f->err[0] != '\0');
    assert_null(strchr(f->err, '\n'));
    assert_non_null(strstr(f->err, f->path));
}

static void load_fail(struct fixture *f, const char *text) { load_fail_ov(f, text, &no_ov); }

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle)) print_error("\"%s\" does not contain \"%s\"\n", haystack, needle);
    assert_non_null(strstr(haystack, needle));
}

/* Push the value at dotted 'path' in the table on top of the stack. */
static int push_path(lua_State *L, const char *path) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return LUA_TNIL;
        }
        lua_getfield(L, -1, seg);
        lua_remove(L, -2);
        if (!dot) break;
        p = dot + 1;
    }
    return lua_type(L, -1);
}

static void assert_lua_int(lua_State *L, const char *path, lua_Integer want) {
    push_path(L, path);
    if (!lua_isinteger(L, -1)) print_error("%s is a %s\n", path, luaL_typename(L, -1));
    assert_true(lua_isinteger(L, -1));
    assert_int_equal(lua_tointeger(L, -1), want);
    lua_pop(L, 1);
}

static void assert_lua_str(lua_State *L, const char *path, const char *want) {
    push_path(L, path);
    assert_int_equal(lua_type(L, -1), LUA_TSTRING);
    assert_string_equal(lua_tostring(L, -1), want);
    lua_pop(L, 1);
}

static void assert_lua_bool(lua_State *L, const char *path, int want) {
    push_path(L, path);
    assert_int_equal(lua_type(L, -1), LUA_TBOOLEAN);
    assert_int_equal(lua_toboolean(L, -1), want);
    lua_pop(L, 1);
}

/* The list at 'path' has 'n' entries. */
static void assert_lua_len(lua_State *L, const char *path, lua_Integer n) {
    push_path(L, path);
    assert_int_equal(lua_type(L, -1), LUA_TTABLE);
    assert_int_equal((lua_Integer)luaL_len(L, -1), n);
    lua_pop(L, 1);
}

static void assert_lua_item(lua_State *L, const char *path, int i, const char *want) {
    push_path(L, path);
    assert_int_equal(lua_type(L, -1), LUA_TTABLE);
    assert_int_equal(lua_rawgeti(L, -1, i), LUA_TSTRING);
    assert_string_equal(lua_tostring(L, -1), want);
    lua_pop(L, 2);
}

static const char *in_dir(struct fixture *f, const char *rel, char *buf, size_t len) {
    return gw_fmt(buf, len, "%s/%s", f->dir, rel);
}

/* --- defaults ----------------------------------------------------------- */

static void test_defaults(void **state) {
    struct fixture *f = *state;
    lua_State *L = f->L;
    char buf[600];
    load_ok(f, "return {}\n");

    const struct gw_config *c = &f->cfg;
    assert_string_equal(c->name, "gateway");
    assert_int_equal(c->workers, 1);
    assert_int_equal(c->web_enabled, 1);
    assert_string_equal(c->web_host, "127.0.0.1");
    assert_int_equal(c->web_port, 8080);
    assert_string_equal(c->api_path, "api");
    assert_string_equal(c->files_path, "public");
    assert_int_equal(c->metadata, 1);
    assert_int_equal(c->max_body_size, 1048576);
    assert_int_equal(c->ws_enabled, 1);
    assert_string_equal(c->ws_path, "/ws");
    assert_int_equal(c->ws_max_message, 1048576);
    assert_int_equal(c->socket_enabled, 0);
    assert_string_equal(c->socket_host, "127.0.0.1");
    assert_int_equal(c->socket_port, 5000);
    assert_int_equal(c->max_line_length, 65536);
    assert_int_equal(c->simultaneous_actions, 5);
    assert_int_equal(c->action_timeout, 30000);
    assert_int_equal(c->cpu_timeout, 2000);
    assert_int_equal(c->shutdown_timeout, 5000);
    assert_int_equal(c->log_level, GW_LOG_INFO);
    assert_int_equal(c->log_json, 0);
    assert_string_equal(c->redis_url, "redis://127.0.0.1:6379/0");
    assert_int_equal(c->redis_command_timeout, 5000);
    assert_string_equal(c->config_dir, f->dir);

    /* The pushed table is complete too. */
    assert_lua_str(L, "name", "gateway");
    assert_lua_int(L, "workers", 1);
    assert_lua_int(L, "servers.web.port", 8080);
    assert_lua_bool(L, "servers.web.enabled", 1);
    assert_lua_str(L, "servers.web.host", "127.0.0.1");
    assert_lua_str(L, "servers.web.urlPathForActions", "api");
    assert_lua_str(L, "servers.web.urlPathForFiles", "public");
    assert_lua_bool(L, "servers.web.metadata", 1);
    assert_lua_int(L, "servers.web.maxBodySize", 1048576);
    assert_lua_bool(L, "servers.websocket.enabled", 1);
    assert_lua_str(L, "servers.websocket.path", "/ws");
    assert_lua_int(L, "servers.websocket.maxMessageSize", 1048576);
    assert_lua_bool(L, "servers.socket.enabled", 0);
    assert_lua_int(L, "servers.socket.port", 5000);
    assert_lua_int(L, "servers.socket.maxLineLength", 65536);
    assert_lua_int(L, "general.simultaneousActions", 5);
    assert_lua_int(L, "general.actionTimeout", 30000);
    assert_lua_int(L, "general.shutdownTimeout", 5000);
    assert_lua_bool(L, "general.disableParamScrubbing", 0);
    assert_lua_int(L, "general.defaultMiddlewarePriority", 100);
    assert_lua_len(L, "general.missingParamChecks", 3);
    assert_lua_item(L, "general.missingParamChecks", 1, "nil");
    assert_lua_item(L, "general.missingParamChecks", 2, "null");
    assert_lua_item(L, "general.missingParamChecks", 3, "");
    assert_lua_str(L, "redis.url", "redis://127.0.0.1:6379/0");
    assert_lua_str(L, "redis.prefix", "gateway:");
    assert_lua_int(L, "redis.commandTimeout", 5000);
    assert_lua_str(L, "logging.level", "info");
    assert_lua_str(L, "logging.format", "text");
    assert_lua_len(L, "logging.filteredParams", 1); /* "password" by default */
    assert_lua_len(L, "modules", 0);
    /* Default paths, absolute against the config file's folder. */
    assert_lua_len(L, "paths.actions", 1);
    assert_lua_item(L, "paths.actions", 1, in_dir(f, "actions", buf, sizeof buf));
    assert_lua_len(L, "paths.middleware", 1);
    assert_lua_item(L, "paths.middleware", 1, in_dir(f, "middleware", buf, sizeof buf));
    assert_lua_str(L, "paths.routes", in_dir(f, "routes.lua", buf, sizeof buf));
    assert_lua_str(L, "paths.public", in_dir(f, "public", buf, sizeof buf));
}

static void test_partial_sections_completed(void **state) {
    struct fixture *f = *state;
    load_ok(f, "return { servers = { web = { port = 9000 } }, general = {} }\n");
    assert_int_equal(f->cfg.web_port, 9000);
    assert_lua_int(f->L, "servers.web.port", 9000);
    assert_lua_str(f->L, "servers.web.host", "127.0.0.1");
    assert_lua_int(f->L, "servers.socket.port", 5000);
    assert_lua_len(f->L, "general.missingParamChecks", 3);
}

/* gateway.lua.example shows every key with its default (SPEC §2), and the
 * Lua specs build their config from it (tests/lua/support/state.lua): loaded,
 * it must give exactly what an empty config gives, and name every key. */
static const char compare_configs[] =
    "local example, defaults, raw = ...\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) or (type(a) ~= 'table' and a ~= b) then\n"
    "    return path .. ': ' .. tostring(a) .. ' in the example, ' .. tostring(b) .. ' by default'\n"
    "  end\n"
    "  if type(a) ~= 'table' then return nil end\n"
    "  for k, v in pairs(a) do\n"
    "    local e = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if e then return e end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if a[k] == nil then return path .. '.' .. tostring(k) .. ': missing from the example' end\n"
    "  end\n"
    "end\n"
    "local function shown(d, r, path)\n"
    "  for k, v in pairs(d) do\n"
    "    local p = path .. '.' .. tostring(k)\n"
    "    if r[k] == nil then return p .. ': not written in the example' end\n"
    "    if type(v) == 'table' and next(v) ~= nil and v[1] == nil then\n"
    "      local e = shown(v, r[k], p)\n"
    "      if e then return e end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return same(example, defaults, 'config') or shown(defaults, raw, 'config')\n";

static void test_example_shows_every_default(void **state) {
    struct fixture *f = *state;
    lua_State *L = f->L;
    char cwd[4096], example[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    gw_fmt(example, sizeof example, "%s/gateway.lua.example", cwd);
    FILE *in = fopen(example, "r");
    if (!in) fail_msg("run the unit tests from the repository root (no %s)", example);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, in);
    fclose(in);
    text[n] = '\0';

    /* The example as this folder's gw.lua, then an empty config in the same
     * folder: relative paths resolve alike. */
    assert_int_equal(load_ov(f, text, &no_ov), GW_OK);
    struct gw_config from_example = f->cfg;
    assert_int_equal(load_ov(f, "return {}\n", &no_ov), GW_OK);

    assert_int_equal(luaL_loadstring(L, compare_configs), LUA_OK);
    lua_pushvalue(L, -3); /* the example, completed */
    lua_pushvalue(L, -3); /* the defaults */
    assert_int_equal(luaL_dofile(L, example), LUA_OK); /* the example as written */
    assert_int_equal(lua_pcall(L, 3, 1, 0), LUA_OK);
    if (!lua_isnil(L, -1)) fail_msg("gateway.lua.example: %s", lua_tostring(L, -1));
    lua_pop(L, 3);
    assert_int_equal(lua_gettop(L), f->top);
    assert_memory_equal(&from_example, &f->cfg, sizeof from_example);
}

static void test_null_path_defaults(void **state) {
    struct fixture *f = *state;
    char cwd[4096], buf[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    f->err[0] = '\0';
    assert_int_equal(gw_config_load(f->L, NULL, &no_ov, &f->cfg, f->err, sizeof f->err), GW_OK);
    assert_int_equal(lua_gettop(f->L), f->top + 1);
    assert_true(lua_istable(f->L, -1));
    assert_int_equal(f->cfg.web_port, 8080);
    assert_string_equal(f->cfg.config_dir, cwd);
    gw_fmt(buf, sizeof buf, "%s/actions", cwd);
    assert_lua_item(f->L, "paths.actions", 1, buf);
}

/* --- a full valid config ------------------------------------------------ */

static const char full_config[] =
    "return {\n"
    "  name = \"edge\",\n"
    "  workers = 4,\n"
    "  paths = { actions = { \"/srv/a\", \"/srv/b\" }, middleware = { \"/srv/mw\" },\n"
    "            routes = \"/srv/routes.lua\", public = \"/srv/pub\" },\n"
    "  servers = {\n"
    "    web = { enabled = false, host = \"0.0.0.0\", port = 8181, urlPathForActions = \"v1\",\n"
    "            urlPathForFiles = \"static\", metadata = false, maxBodySize = 4096 },\n"
    "    websocket = { enabled = false, path = \"/socket\", maxMessageSize = 2048 },\n"
    "    socket = { enabled = true, host = \"10.0.0.2\", port = 5001, maxLineLength = 1024 },\n"
    "  },\n"
    "  general = {\n"
    "    simultaneousActions = 7,\n"
    "    actionTimeout = 0,\n"
    "    cpuTimeout = 250,\n"
    "    shutdownTimeout = 100,\n"
    "    missingParamChecks = { \"nil\", \"\" },\n"
    "    disableParamScrubbing = true,\n"
    "    defaultMiddlewarePriority = -5,\n"
    "  },\n"
    "  redis = { url = \"redis://redis.local:6380/2\", prefix = \"gw:\" },\n"
    "  logging = { level = \"debug\", format = \"json\", filteredParams = { \"password\" } },\n"
    "  modules = { { name = \"hello\", path = \"modules/hello.so\", config = {} } },\n"
    "}\n";

static void test_full_config(void **state) {
    struct fixture *f = *state;
    lua_State *L = f->L;
    load_ok(f, full_config);
    const struct gw_config *c = &f->cfg;
    assert_string_equal(c->name, "edge");
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->web_enabled, 0);
    assert_string_equal(c->web_host, "0.0.0.0");
    assert_int_equal(c->web_port, 8181);
    assert_string_equal(c->api_path, "v1");
    assert_string_equal(c->files_path, "static");
    assert_int_equal(c->metadata, 0);
    assert_int_equal(c->max_body_size, 4096);
    assert_int_equal(c->ws_enabled, 0);
    assert_string_equal(c->ws_path, "/socket");
    assert_int_equal(c->ws_max_message, 2048);
    assert_int_equal(c->socket_enabled, 1);
    assert_string_equal(c->socket_host, "10.0.0.2");
    assert_int_equal(c->socket_port, 5001);
    assert_int_equal(c->max_line_length, 1024);
    assert_int_equal(c->simultaneous_actions, 7);
    assert_int_equal(c->action_timeout, 0);
    assert_int_equal(c->cpu_timeout, 250);
    assert_int_equal(c->shutdown_timeout, 100);
    assert_int_equal(c->log_level, GW_LOG_DEBUG);
    assert_int_equal(c->log_json, 1);
    assert_string_equal(c->redis_url, "redis://redis.local:6380/2");

    assert_lua_len(L, "paths.actions", 2);
    assert_lua_item(L, "paths.actions", 1, "/srv/a");
    assert_lua_item(L, "paths.actions", 2, "/srv/b");
    assert_lua_str(L, "paths.routes", "/srv/routes.lua");
    assert_lua_str(L, "paths.public", "/srv/pub");
    assert_lua_len(L, "general.missingParamChecks", 2);
    assert_lua_bool(L, "general.disableParamScrubbing", 1);
    assert_lua_int(L, "general.defaultMiddlewarePriority", -5);
    assert_lua_str(L, "redis.prefix", "gw:");
    assert_lua_item(L, "logging.filteredParams", 1, "password");
    assert_lua_len(L, "modules", 1);
    push_path(L, "modules");
    lua_rawgeti(L, -1, 1);
    lua_getfield(L, -1, "path");
    /* Module paths are not config paths: left as written. */
    assert_string_equal(lua_tostring(L, -1), "modules/hello.so");
    lua_pop(L, 3);
}

static void test_integral_float_accepted(void **state) {
    struct fixture *f = *state;
    load_ok(f, "return { servers = { web = { port = 8.0e3 } } }\n");
    assert_int_equal(f->cfg.web_port, 8000);
}

static void test_range_edges_accepted(void **state) {
    struct fixture *f = *state;
    load_ok(f, "return { workers = 256, servers = { web = { port = 0 }, socket = { port = 65535 } } }\n");
    assert_int_equal(f->cfg.workers, 256);
    assert_int_equal(f->cfg.web_port, 0);
    assert_int_equal(f->cfg.socket_port, 65535);
}

/* --- unknown keys ------------------------------------------------------- */

static void test_unknown_top_level_key(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n"
                 "  name = \"x\",\n"
                 "  nope = 1,\n"
                 "}\n");
    assert_contains(f->err, "gw.lua:3: nope: unknown key");
    char want[700];
    gw_fmt(want, sizeof want, "%s:3: nope: unknown key", f->path);
    assert_string_equal(f->err, want);
}

static void test_unknown_nested_key(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n"
                 "  servers = {\n"
                 "    web = {\n"
                 "      prot = 80,\n"
                 "    },\n"
                 "  },\n"
                 "}\n");
    assert_contains(f->err, "gw.lua:4: servers.web.prot: unknown key");

    load_fail(f, "return { general = { cpuTimout = 5 } }\n");
    assert_contains(f->err, "general.cpuTimout: unknown key");
    load_fail(f, "return { logging = { levle = 'info' } }\n");
    assert_contains(f->err, "logging.levle: unknown key");
}

static void test_non_string_key(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return { 1, 2 }\n");
    assert_contains(f->err, "keys must be strings");
}

/* --- wrong types -------------------------------------------------------- */

static void test_wrong_types(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n  servers = { web = { port = \"8080\" } },\n}\n");
    assert_contains(f->err, "servers.web.port");
    assert_contains(f->err, "expected an integer, got string");
    assert_contains(f->err, "gw.lua:2:");

    load_fail(f, "return { servers = { web = { port = 80.5 } } }\n");
    assert_contains(f->err, "servers.web.port: expected an integer, got number");

    load_fail(f, "return { name = 5 }\n");
    assert_contains(f->err, "name: expected a string, got number");

    load_fail(f, "return { servers = { web = { enabled = \"yes\" } } }\n");
    assert_contains(f->err, "servers.web.enabled: expected a boolean, got string");

    load_fail(f, "return { servers = 5 }\n");
    assert_contains(f->err, "servers: expected a table, got number");

    load_fail(f, "return { paths = { actions = 5 } }\n");
    assert_contains(f->err, "paths.actions: expected a list");

    load_fail(f, "return { paths = { routes = { 'a' } } }\n");
    assert_contains(f->err, "paths.routes: expected a string, got table");

    load_fail(f, "return { general = { missingParamChecks = { 'nil', 1 } } }\n");
    assert_contains(f->err, "general.missingParamChecks: expected a list of strings");

    load_fail(f, "return { logging = { filteredParams = 'password' } }\n");
    assert_contains(f->err, "logging.filteredParams: expected a list");

    load_fail(f, "return { modules = 'hello' }\n");
    assert_contains(f->err, "modules: expected a list");
}

/* The line points at the offending key, not at another key of the same
 * name earlier in the file. */
static void test_error_line_is_the_offending_key(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n"
                 "  servers = {\n"
                 "    socket = { port = 5000 },\n"
                 "    web = { port = \"80\" },\n"
                 "  },\n"
                 "}\n");
    assert_contains(f->err, "servers.web.port: expected an integer, got string");
    assert_contains(f->err, "gw.lua:4: servers.web.port");
}

/* --- ranges and enumerations -------------------------------------------- */

static void test_out_of_range(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n  servers = { web = { port = 70000 } },\n}\n");
    assert_contains(f->err, "gw.lua:2: servers.web.port");
    assert_contains(f->err, "70000");
    assert_contains(f->err, "out of range");

    load_fail(f, "return { servers = { socket = { port = -1 } } }\n");
    assert_contains(f->err, "servers.socket.port");
    assert_contains(f->err, "-1");

    load_fail(f, "return { workers = 0 }\n");
    assert_contains(f->err, "workers");
    assert_contains(f->err, "out of range");

    load_fail(f, "return { general = { simultaneousActions = 0 } }\n");
    assert_contains(f->err, "general.simultaneousActions");
}

/* Numbers no integer holds (found by fuzz/config.c: converting them was
 * undefined behaviour, which the sanitizer build stops on). */
static void test_non_integral_numbers(void **state) {
    struct fixture *f = *state;
    static const char *const values[] = {"1/0", "-1/0", "0/0", "1e300", "-1e300", "2^63"};
    char text[128];
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        gw_fmt(text, sizeof text, "return { workers = %s }\n", values[i]);
        load_fail(f, text);
        assert_contains(f->err, "workers");
        assert_contains(f->err, "expected an integer");
    }
    load_fail(f, "return { workers = math.maxinteger }\n");
    assert_contains(f->err, "out of range");
    load_fail(f, "return { servers = { web = { port = math.mininteger } } }\n");
    assert_contains(f->err, "out of range");
}

static void test_bad_logging_level(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n  logging = {\n    level = \"loud\",\n  },\n}\n");
    assert_contains(f->err, "logging.level");
    assert_contains(f->err, "loud");
    assert_contains(f->err, "gw.lua:3:");
}

static void test_bad_logging_format(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return { logging = { format = \"xml\" } }\n");
    assert_contains(f->err, "logging.format");
    assert_contains(f->err, "xml");
}

static void test_bad_missing_param_check(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return { general = { missingParamChecks = { \"nil\", \"undefined\" } } }\n");
    assert_contains(f->err, "general.missingParamChecks");
    assert_contains(f->err, "undefined");
}

static void test_bad_websocket_path(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return { servers = { websocket = { path = \"ws\" } } }\n");
    assert_contains(f->err, "servers.websocket.path");
}

/* --- files that do not load --------------------------------------------- */

static void test_syntax_error(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n"
                 "  name = \"x\"\n"
                 "  workers = 2,\n"
                 "}\n");
    assert_contains(f->err, "gw.lua:3:");
}

static void test_runtime_error(void **state) {
    struct fixture *f = *state;
    load_fail(f, "local x = 1\nerror(\"kaput\")\n");
    assert_contains(f->err, "gw.lua:2:");
    assert_contains(f->err, "kaput");
}

static void test_non_table(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return 42\n");
    assert_contains(f->err, "must return a table");
    assert_contains(f->err, "number");

    load_fail(f, "local x = 1\n");
    assert_contains(f->err, "must return a table");
    assert_contains(f->err, "nil");

    load_fail(f, "return \"config\"\n");
    assert_contains(f->err, "string");
}

static void test_missing_file(void **state) {
    struct fixture *f = *state;
    gw_fmt(f->path, sizeof f->path, "%s/does-not-exist.lua", f->dir);
    load_fail(f, NULL);
    assert_contains(f->err, "does-not-exist.lua");
}

/* --- paths -------------------------------------------------------------- */

static void test_relative_paths(void **state) {
    struct fixture *f = *state;
    lua_State *L = f->L;
    char buf[600];
    load_ok(f, "return { paths = { actions = \"acts\", middleware = { \"mw\", \"/abs/mw\", \"x/../y\" },\n"
               "  routes = \"conf/routes.lua\", public = \"/srv/public\" } }\n");
    /* A string becomes a one-element list. */
    assert_lua_len(L, "paths.actions", 1);
    assert_lua_item(L, "paths.actions", 1, in_dir(f, "acts", buf, sizeof buf));
    assert_lua_len(L, "paths.middleware", 3);
    assert_lua_item(L, "paths.middleware", 1, in_dir(f, "mw", buf, sizeof buf));
    assert_lua_item(L, "paths.middleware", 2, "/abs/mw");
    assert_lua_item(L, "paths.middleware", 3, in_dir(f, "x/../y", buf, sizeof buf));
    assert_lua_str(L, "paths.routes", in_dir(f, "conf/routes.lua", buf, sizeof buf));
    assert_lua_str(L, "paths.public", "/srv/public");
}

static void test_relative_config_path(void **state) {
    struct fixture *f = *state;
    char saved[4096], cwd[4096], buf[4200];
    assert_non_null(getcwd(saved, sizeof saved));
    assert_int_equal(mkdir(in_dir(f, "sub", buf, sizeof buf), 0700), 0);
    write_file(in_dir(f, "sub/gw.lua", buf, sizeof buf), "return { paths = { actions = 'a' } }\n");
    assert_int_equal(chdir(f->dir), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));

    /* "sub/gw.lua": the folder is <cwd>/sub. */
    f->err[0] = '\0';
    int rc = gw_config_load(f->L, "sub/gw.lua", &no_ov, &f->cfg, f->err, sizeof f->err);
    /* And "gw.lua" alone: the folder is the cwd. */
    char dir1[4096];
    strcpy(dir1, f->cfg.config_dir);
    write_file("gw.lua", "return {}\n");
    int rc2 = gw_config_load(f->L, "gw.lua", &no_ov, &f->cfg, f->err, sizeof f->err);
    assert_int_equal(chdir(saved), 0);

    assert_int_equal(rc, GW_OK);
    assert_int_equal(rc2, GW_OK);
    assert_int_equal(lua_gettop(f->L), f->top + 2);
    gw_fmt(buf, sizeof buf, "%s/sub", cwd);
    assert_string_equal(dir1, buf);
    assert_string_equal(f->cfg.config_dir, cwd);
    gw_fmt(buf, sizeof buf, "%s/actions", cwd);
    assert_lua_item(f->L, "paths.actions", 1, buf);
    lua_pop(f->L, 1);
    gw_fmt(buf, sizeof buf, "%s/sub/a", cwd);
    assert_lua_item(f->L, "paths.actions", 1, buf);
}

/* --- overrides ---------------------------------------------------------- */

static const char override_file[] =
    "return {\n"
    "  workers = 2,\n"
    "  servers = { web = { host = \"10.0.0.1\", port = 1111 } },\n"
    "  redis = { url = \"redis://file:1/0\" },\n"
    "  logging = { level = \"error\" },\n"
    "}\n";

static void test_file_values_without_overrides(void **state) {
    struct fixture *f = *state;
    load_ok(f, override_file);
    assert_int_equal(f->cfg.workers, 2);
    assert_string_equal(f->cfg.web_host, "10.0.0.1");
    assert_int_equal(f->cfg.web_port, 1111);
    assert_string_equal(f->cfg.redis_url, "redis://file:1/0");
    assert_int_equal(f->cfg.log_level, GW_LOG_ERROR);
}

static void test_overrides_beat_file(void **state) {
    struct fixture *f = *state;
    lua_State *L = f->L;
    struct gw_config_overrides ov = {"0.0.0.0", 2222, 3, "redis://ov:2/1", "debug"};
    load_ok_ov(f, override_file, &ov);
    assert_string_equal(f->cfg.web_host, "0.0.0.0");
    assert_int_equal(f->cfg.web_port, 2222);
    assert_int_equal(f->cfg.workers, 3);
    assert_string_equal(f->cfg.redis_url, "redis://ov:2/1");
    assert_int_equal(f->cfg.log_level, GW_LOG_DEBUG);
    /* The Lua table agrees. */
    assert_lua_str(L, "servers.web.host", "0.0.0.0");
    assert_lua_int(L, "servers.web.port", 2222);
    assert_lua_int(L, "workers", 3);
    assert_lua_str(L, "redis.url", "redis://ov:2/1");
    assert_lua_str(L, "logging.level", "debug");
}

static void test_overrides_on_defaults(void **state) {
    struct fixture *f = *state;
    struct gw_config_overrides ov = {NULL, 0, -1, NULL, "crit"};
    load_ok_ov(f, "return {}\n", &ov);
    assert_int_equal(f->cfg.web_port, 0);
    assert_int_equal(f->cfg.log_level, GW_LOG_CRIT);
    assert_string_equal(f->cfg.web_host, "127.0.0.1");
    assert_int_equal(f->cfg.workers, 1);
}

static void test_bad_override_log_level(void **state) {
    struct fixture *f = *state;
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, "chatty"};
    load_fail_ov(f, "return {}\n", &ov);
    assert_contains(f->err, "logging.level");
    assert_contains(f->err, "chatty");
}

static void test_env_beats_file(void **state) {
    struct fixture *f = *state;
    setenv("GATEWAY_PORT", "3333", 1);
    setenv("GATEWAY_LOG_LEVEL", "warning", 1);
    setenv("GATEWAY_REDIS_URL", "redis://env:3/3", 1);
    load_ok(f, override_file);
    assert_int_equal(f->cfg.web_port, 3333);
    assert_int_equal(f->cfg.log_level, GW_LOG_WARNING);
    assert_string_equal(f->cfg.redis_url, "redis://env:3/3");
    assert_lua_int(f->L, "servers.web.port", 3333);
    assert_lua_str(f->L, "logging.level", "warning");
    assert_lua_str(f->L, "redis.url", "redis://env:3/3");
    /* What the environment does not name stays from the file. */
    assert_string_equal(f->cfg.web_host, "10.0.0.1");
    assert_int_equal(f->cfg.workers, 2);
}

static void test_overrides_beat_env(void **state) {
    struct fixture *f = *state;
    setenv("GATEWAY_PORT", "3333", 1);
    setenv("GATEWAY_LOG_LEVEL", "warning", 1);
    setenv("GATEWAY_REDIS_URL", "redis://env:3/3", 1);
    struct gw_config_overrides ov = {NULL, 4444, -1, "redis://ov:4/4", "notice"};
    load_ok_ov(f, override_file, &ov);
    assert_int_equal(f->cfg.web_port, 4444);
    assert_int_equal(f->cfg.log_level, GW_LOG_NOTICE);
    assert_string_equal(f->cfg.redis_url, "redis://ov:4/4");
    assert_lua_int(f->L, "servers.web.port", 4444);

    /* Only the port given on the command line: the rest from the env. */
    struct gw_config_overrides ov2 = {NULL, 5555, -1, NULL, NULL};
    lua_pop(f->L, 1);
    load_ok_ov(f, NULL, &ov2);
    assert_int_equal(f->cfg.web_port, 5555);
    assert_int_equal(f->cfg.log_level, GW_LOG_WARNING);
    assert_string_equal(f->cfg.redis_url, "redis://env:3/3");
}

static void test_bad_env_port(void **state) {
    struct fixture *f = *state;
    static const char *bad[] = {"80x", "x80", "70000", "-1", "8 0", "80.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("GATEWAY_PORT", bad[i], 1);
        load_fail(f, "return {}\n");
        assert_contains(f->err, "GATEWAY_PORT");
        assert_contains(f->err, bad[i]);
    }
    /* Even when the command line gives a port, a broken env is an error. */
    setenv("GATEWAY_PORT", "nope", 1);
    struct gw_config_overrides ov = {NULL, 80, -1, NULL, NULL};
    load_fail_ov(f, "return {}\n", &ov);
    assert_contains(f->err, "GATEWAY_PORT");
}

static void test_bad_env_log_level(void **state) {
    struct fixture *f = *state;
    setenv("GATEWAY_LOG_LEVEL", "verbose", 1);
    load_fail(f, "return {}\n");
    assert_contains(f->err, "logging.level");
    assert_contains(f->err, "verbose");
    /* ...unless the command line overrides it. */
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, "info"};
    load_ok_ov(f, NULL, &ov);
    assert_int_equal(f->cfg.log_level, GW_LOG_INFO);
}

/* A bad value that came from the environment or the command line is not
 * in the file, so the message must not point at a line of the file
 * (apply_overrides drops the text for exactly this reason). */
static void test_override_error_has_no_file_line(void **state) {
    struct fixture *f = *state;
    char at_line[700];
    gw_fmt(at_line, sizeof at_line, "%s:5:", f->path); /* level = "error" is on line 5 */

    setenv("GATEWAY_LOG_LEVEL", "verbose", 1);
    load_fail(f, override_file);
    assert_contains(f->err, "logging.level");
    assert_contains(f->err, "verbose");
    if (strstr(f->err, at_line)) print_error("points into the file: %s\n", f->err);
    assert_null(strstr(f->err, at_line));
    unsetenv("GATEWAY_LOG_LEVEL");

    struct gw_config_overrides ov = {NULL, -1, -1, NULL, "chatty"};
    load_fail_ov(f, NULL, &ov);
    assert_contains(f->err, "chatty");
    if (strstr(f->err, at_line)) print_error("points into the file: %s\n", f->err);
    assert_null(strstr(f->err, at_line));
}

/* --- redis ---------------------------------------------------------------- */

static void test_redis_command_timeout(void **state) {
    struct fixture *f = *state;
    load_ok(f, "return { redis = { commandTimeout = 250 } }\n");
    assert_int_equal(f->cfg.redis_command_timeout, 250);
    lua_pop(f->L, 1);
    load_ok(f, "return { redis = { commandTimeout = 0 } }\n"); /* no timeout */
    assert_int_equal(f->cfg.redis_command_timeout, 0);
    lua_pop(f->L, 1);
    load_fail(f, "return { redis = { commandTimeout = -1 } }\n");
    assert_contains(f->err, "redis.commandTimeout");
}

/* redis.maxPending and redis.allowCommands reach C; a name the gateway
 * does not guard (a typo, or SUBSCRIBE, which is never allowed) stops
 * startup with the list of names it accepts. */
static void test_redis_limits(void **state) {
    struct fixture *f = *state;
    load_ok(f, "return {}\n");
    assert_int_equal(f->cfg.redis_max_pending, 10000);
    assert_true(f->cfg.redis_allow == 0);
    lua_pop(f->L, 1);
    load_ok(f, "return { redis = { maxPending = 5, allowCommands = { 'flushdb', 'CLIENT KILL' } } }\n");
    assert_int_equal(f->cfg.redis_max_pending, 5);
    assert_true(f->cfg.redis_allow == ((1UL << gw_redis_allowable("FLUSHDB")) |
                                       (1UL << gw_redis_allowable("CLIENT KILL"))));
    lua_pop(f->L, 1);
    load_fail(f, "return { redis = {\n allowCommands = { 'FLUSHBD' } } }\n");
    assert_contains(f->err, ":2: redis.allowCommands: \"FLUSHBD\" is not a command the gateway refuses");
    assert_contains(f->err, "FLUSHALL, FLUSHDB");
    load_fail(f, "return { redis = { allowCommands = { 'SUBSCRIBE' } } }\n");
    assert_contains(f->err, "\"SUBSCRIBE\" is not a command");
    load_fail(f, "return { redis = { maxPending = 0 } }\n");
    assert_contains(f->err, "redis.maxPending");
}

/* A URL the client could not use stops startup, naming the key and the
 * line; the password is not repeated in the message. */
static void test_bad_redis_url(void **state) {
    struct fixture *f = *state;
    load_fail(f, "return {\n  name = 'x',\n  redis = { url = 'redis://h:99999/0' },\n}\n");
    assert_contains(f->err, "gw.lua:3: redis.url");
    assert_contains(f->err, "port");
    load_fail(f, "return { redis = { url = 'redis://hunter2@h' } }\n");
    assert_contains(f->err, "redis.url");
    assert_null(strstr(f->err, "hunter2"));
    load_fail(f, "return { redis = { url = 'localhost:6379' } }\n");
    assert_contains(f->err, "redis:// or unix://");
}

static void test_bad_redis_url_from_overrides(void **state) {
    struct fixture *f = *state;
    setenv("GATEWAY_REDIS_URL", "unix://relative.sock", 1);
    load_fail(f, override_file);
    assert_contains(f->err, "redis.url");
    assert_contains(f->err, "from GATEWAY_REDIS_URL");
    assert_null(strstr(f->err, "gw.lua:4:"));
    unsetenv("GATEWAY_REDIS_URL");
    struct gw_config_overrides ov = {NULL, -1, -1, "rediss://h", NULL};
    load_fail_ov(f, override_file, &ov);
    assert_contains(f->err, "TLS");
    assert_contains(f->err, "from --redis");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_partial_sections_completed),
        T(test_null_path_defaults),
        T(test_example_shows_every_default),
        T(test_full_config),
        T(test_integral_float_accepted),
        T(test_range_edges_accepted),
        T(test_unknown_top_level_key),
        T(test_unknown_nested_key),
        T(test_non_string_key),
        T(test_wrong_types),
        T(test_error_line_is_the_offending_key),
        T(test_out_of_range),
        T(test_non_integral_numbers),
        T(test_bad_logging_level),
        T(test_bad_logging_format),
        T(test_bad_missing_param_check),
        T(test_bad_websocket_path),
        T(test_syntax_error),
        T(test_runtime_error),
        T(test_non_table),
        T(test_missing_file),
        T(test_relative_paths),
        T(test_relative_config_path),
        T(test_file_values_without_overrides),
        T(test_overrides_beat_file),
        T(test_overrides_on_defaults),
        T(test_bad_override_log_level),
        T(test_env_beats_file),
        T(test_overrides_beat_env),
        T(test_bad_env_port),
        T(test_bad_env_log_level),
        T(test_override_error_has_no_file_line),
        T(test_redis_command_timeout),
        T(test_redis_limits),
        T(test_bad_redis_url),
        T(test_bad_redis_url_from_overrides),
    };
    return cmocka_run_group_tests_name("gw_config", tests, NULL, NULL);
}
