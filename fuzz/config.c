/* libFuzzer target for the config loader (core/vm/config.c): the input
 * does not become Lua code. It drives a small generator that writes a
 * config file of assignments to known and unknown keys ("servers.web.port",
 * "general.missingParamChecks.1", "bogus"...) with odd values: huge,
 * negative, fractional and non-finite numbers, strings with any bytes,
 * booleans, nested tables and lists. gw_config_load must either accept it
 * with the C fields in range, or refuse it with a message; it
 * must never crash, leak or leave the stack changed.
 * Build and run: make fuzz-run FUZZ_TARGETS=config (FUZZ_SECONDS=N). */
#include <lauxlib.h>
#include <lualib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/gw.h"
#include "vm/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {
    "name", "workers", "paths", "paths.actions", "paths.middleware", "paths.routes",
    "paths.public", "paths.actions.1", "paths.actions.2", "servers", "servers.web",
    "servers.web.enabled", "servers.web.host", "servers.web.port",
    "servers.web.urlPathForActions", "servers.web.urlPathForFiles", "servers.web.metadata",
    "servers.web.maxBodySize", "servers.web.maxHeaderSize", "servers.web.maxHeaders",
    "servers.websocket", "servers.websocket.enabled", "servers.websocket.path",
    "servers.websocket.maxMessageSize", "servers.socket", "servers.socket.enabled",
    "servers.socket.host", "servers.socket.port", "servers.socket.maxLineLength", "general",
    "general.simultaneousActions", "general.maxOutputBuffer", "general.actionTimeout",
    "general.cpuTimeout", "general.shutdownTimeout", "general.missingParamChecks",
    "general.missingParamChecks.1", "general.missingParamChecks.3",
    "general.disableParamScrubbing", "general.defaultMiddlewarePriority", "redis", "redis.url",
    "redis.prefix", "redis.commandTimeout", "logging", "logging.level", "logging.format",
    "logging.filteredParams", "logging.filteredParams.1", "modules", "modules.1",
    "modules.1.name", "modules.1.path", "modules.1.config", "bogus", "servers.web.bogus",
    "general.1", "servers.2",
};

/* Values worth trying as they are, Lua source. */
static const char *const atoms[] = {
    "0", "-1", "1", "1/0", "-1/0", "0/0", "2^53", "2^63", "-2^63", "1e308", "0.5", "-0.0",
    "65535", "65536", "256", "257", "math.maxinteger", "math.mininteger", "2147483648",
    "-2147483649", "true", "false", "{}", "''", "'text'", "'json'", "'debug'", "'crit'",
    "'nil'", "'null'", "'/ws'", "'ws'", "'redis://127.0.0.1:6379/0'", "'redis://:pw@h:1/99999999999'",
    "'redis://[::1]:6379/2'", "'unix:///tmp/r.sock?db=1&password=x'", "'redis://h:99999/0'",
    "'127.0.0.1'", "'::1'", "'0.0.0.0'", "'actions'", "'/'", "'../..'", "{'nil', 'null', ''}",
    "{1, 2, 3}", "{[1] = 'a', [3] = 'c'}", "{x = 1}", "{{}}", "'hello'",
};

struct gen {
    const uint8_t *p, *end;
    char *out;
    size_t len, cap;
};

static unsigned next(struct gen *g) { return g->p < g->end ? *g->p++ : 0; }

static void emit(struct gen *g, const char *s, size_t n) {
    if (g->len + n + 1 > g->cap) {
        size_t cap = (g->len + n + 1) * 2;
        char *b = realloc(g->out, cap);
        if (!b) abort();
        g->out = b;
        g->cap = cap;
    }
    memcpy(g->out + g->len, s, n);
    g->len += n;
    g->out[g->len] = '\0';
}

static void emits(struct gen *g, const char *s) { emit(g, s, strlen(s)); }

/* A Lua string literal of up to 255 input bytes, every byte escaped. */
static void gen_string(struct gen *g) {
    size_t n = next(g);
    char esc[8];
    emits(g, "\"");
    for (size_t i = 0; i < n && g->p < g->end; i++) {
        snprintf(esc, sizeof esc, "\\%03u", next(g));
        emits(g, esc);
    }
    emits(g, "\"");
}

static void gen_value(struct gen *g, int depth) {
    unsigned op = next(g) % 6;
    char num[64];
    switch (op) {
    case 0: {
        long long v = 0;
        for (int i = 0; i < 8; i++) v = (long long)((unsigned long long)v << 8 | next(g));
        snprintf(num, sizeof num, "%lld", v);
        emits(g, num);
        break;
    }
    case 1:
        snprintf(num, sizeof num, "%d", (int)(next(g) | next(g) << 8) - 1000);
        emits(g, num);
        break;
    case 2:
        gen_string(g);
        break;
    case 3:
        if (depth < 3) {
            unsigned n = next(g) % 5;
            emits(g, "{");
            for (unsigned i = 0; i < n; i++) {
                if (next(g) & 1) { /* a named field, named like a key of the schema */
                    const char *k = paths[next(g) % (sizeof paths / sizeof *paths)];
                    const char *dot = strrchr(k, '.');
                    emits(g, "[\"");
                    emits(g, dot ? dot + 1 : k);
                    emits(g, "\"] = ");
                }
                gen_value(g, depth + 1);
                emits(g, ", ");
            }
            emits(g, "}");
            break;
        }
        /* fall through */
    default:
        emits(g, atoms[next(g) % (sizeof atoms / sizeof *atoms)]);
    }
}

static char dir[] = "/tmp/gw-fuzz-config-XXXXXX", file[sizeof dir + 16];

/* The config file and its folder go when the process ends. */
static void remove_file(void) {
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!file[0]) {
        if (!mkdtemp(dir)) abort();
        snprintf(file, sizeof file, "%s/gateway.lua", dir);
        atexit(remove_file);
        unsetenv("GATEWAY_PORT");
        unsetenv("GATEWAY_REDIS_URL");
        unsetenv("GATEWAY_LOG_LEVEL");
    }
    struct gen g = {data, data + size, NULL, 0, 0};
    emits(&g, "local c = {}\n"
              "local function set(path, v)\n"
              "  local t = c\n"
              "  for seg, dot in path:gmatch('([^.]+)(%.?)') do\n"
              "    local k = math.tointeger(tonumber(seg)) or seg\n"
              "    if dot == '' then t[k] = v\n"
              "    else\n"
              "      if type(t[k]) ~= 'table' then t[k] = {} end\n"
              "      t = t[k]\n"
              "    end\n"
              "  end\n"
              "end\n");
    for (int i = 0; i < 24 && g.p < g.end; i++) {
        emits(&g, "set('");
        emits(&g, paths[next(&g) % (sizeof paths / sizeof *paths)]);
        emits(&g, "', ");
        gen_value(&g, 0);
        emits(&g, ")\n");
    }
    emits(&g, "return c\n");

    FILE *f = fopen(file, "w");
    if (!f) abort();
    fwrite(g.out, 1, g.len, f);
    fclose(f);
    free(g.out);

    lua_State *L = luaL_newstate();
    if (!L) return 0;
    luaL_openlibs(L);
    struct gw_config cfg;
    char err[512] = "";
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    int rc = gw_config_load(L, file, &ov, &cfg, err, sizeof err);
    if (rc == GW_OK) {
        if (lua_gettop(L) != 1 || !lua_istable(L, 1)) abort();
        if (cfg.workers < 1 || cfg.workers > 256 || cfg.web_port < 0 || cfg.web_port > 65535 ||
            cfg.socket_port < 0 || cfg.socket_port > 65535 || cfg.ws_path[0] != '/')
            abort();
    } else {
        if (rc != GW_ERR || lua_gettop(L) != 0 || !err[0]) {
            fprintf(stderr, "fuzz: rc %d, top %d, err \"%s\"\n", rc, lua_gettop(L), err);
            abort();
        }
    }
    lua_close(L);
    return 0;
}
