/* Config loading and validation against one schema table, so the keys,
 * their types and their defaults are written down in a single place. */
#include "vm/config.h"
#include "base/gw.h"
#include "base/log.h"
#include "base/redis.h"
#include "base/sentinel.h"

#include <lauxlib.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* K_FREE: a table whose keys are the user's (not checked). */
enum kind { K_TABLE, K_STRING, K_INT, K_BOOL, K_LIST, K_PATH, K_PATHLIST, K_ANY_LIST, K_FREE };

struct key {
    const char *path; /* dotted */
    enum kind kind;
    const char *def;  /* default as Lua source, NULL for none */
    long min, max;    /* for K_INT */
};

static const struct key schema[] = {
    {"name", K_STRING, "'gateway'", 0, 0},
    {"workers", K_INT, "1", 1, 256},
    {"paths", K_TABLE, NULL, 0, 0},
    {"paths.actions", K_PATHLIST, "{'actions'}", 0, 0},
    {"paths.middleware", K_PATHLIST, "{'middleware'}", 0, 0},
    {"paths.routes", K_PATH, "'routes.lua'", 0, 0},
    {"paths.public", K_PATH, "'public'", 0, 0},
    {"paths.tasks", K_PATHLIST, "{'tasks'}", 0, 0},
    {"servers", K_TABLE, NULL, 0, 0},
    {"servers.web", K_TABLE, NULL, 0, 0},
    {"servers.web.enabled", K_BOOL, "true", 0, 0},
    {"servers.web.host", K_STRING, "'127.0.0.1'", 0, 0},
    {"servers.web.port", K_INT, "8080", 0, 65535},
    {"servers.web.urlPathForActions", K_STRING, "'api'", 0, 0},
    {"servers.web.urlPathForFiles", K_STRING, "'public'", 0, 0},
    {"servers.web.metadata", K_BOOL, "true", 0, 0},
    {"servers.web.maxBodySize", K_INT, "1048576", 0, LONG_MAX},
    {"servers.web.maxHeaderSize", K_INT, "16384", 1024, 1048576},
    {"servers.web.maxHeaders", K_INT, "100", 1, 10000},
    {"servers.web.headerTimeout", K_INT, "10000", 1, LONG_MAX},
    {"servers.web.bodyTimeout", K_INT, "10000", 1, LONG_MAX},
    {"servers.web.minBodyRate", K_INT, "1024", 0, LONG_MAX},
    {"servers.web.keepAliveTimeout", K_INT, "60000", 1, LONG_MAX},
    {"servers.web.sendTimeout", K_INT, "60000", 1, LONG_MAX},
    /* Operations (issue 16): health, readiness, metrics, trusted proxies. */
    {"servers.web.healthPath", K_STRING, "'/health'", 0, 0},
    {"servers.web.readyPath", K_STRING, "'/ready'", 0, 0},
    {"servers.web.trustedProxies", K_LIST, "{}", 0, 0},
    {"servers.web.metrics", K_TABLE, NULL, 0, 0},
    {"servers.web.metrics.enabled", K_BOOL, "true", 0, 0},
    {"servers.web.metrics.path", K_STRING, "'/metrics'", 0, 0},
    {"servers.web.metrics.allow", K_LIST, "{'127.0.0.1/8', '::1'}", 0, 0},
    {"servers.web.metrics.host", K_STRING, "''", 0, 0},
    {"servers.web.metrics.port", K_INT, "-1", -1, 65535},
    /* TLS (issue 16, docs/http.md "TLS"): on when cert and key are given. */
    {"servers.web.tls", K_TABLE, NULL, 0, 0},
    {"servers.web.tls.cert", K_STRING, NULL, 0, 0},
    {"servers.web.tls.key", K_STRING, NULL, 0, 0},
    {"servers.web.tls.minVersion", K_STRING, "'1.2'", 0, 0},
    {"servers.web.tls.redirectPort", K_INT, "-1", -1, 65535},
    /* HTTP/2 (net/h2.c): prior knowledge on the plain listener, ALPN "h2" under TLS. */
    {"servers.web.http2", K_TABLE, NULL, 0, 0},
    {"servers.web.http2.enabled", K_BOOL, "true", 0, 0},
    {"servers.web.http2.maxConcurrentStreams", K_INT, "100", 1, 2147483647L},
    {"servers.web.http2.initialWindowSize", K_INT, "65535", 1, 2147483647L},
    {"servers.websocket", K_TABLE, NULL, 0, 0},
    {"servers.websocket.enabled", K_BOOL, "true", 0, 0},
    {"servers.websocket.path", K_STRING, "'/ws'", 0, 0},
    {"servers.websocket.maxMessageSize", K_INT, "1048576", 1, LONG_MAX},
    /* ms; lws counts whole seconds (rounded up) and at most 65535 */
    {"servers.websocket.pingInterval", K_INT, "20000", 0, 65535000},
    {"servers.websocket.pongTimeout", K_INT, "20000", 1, 65535000},
    {"servers.websocket.fragmentTimeout", K_INT, "10000", 0, LONG_MAX},
    {"servers.socket", K_TABLE, NULL, 0, 0},
    {"servers.socket.enabled", K_BOOL, "false", 0, 0},
    {"servers.socket.host", K_STRING, "'127.0.0.1'", 0, 0},
    {"servers.socket.port", K_INT, "5000", 0, 65535},
    {"servers.socket.maxLineLength", K_INT, "65536", 1, LONG_MAX},
    {"servers.socket.lineTimeout", K_INT, "10000", 0, LONG_MAX},
    {"servers.socket.idleTimeout", K_INT, "0", 0, LONG_MAX},
    {"servers.socket.maxParams", K_INT, "64", 0, 1000000},
    {"servers.socket.maxParamBytes", K_INT, "65536", 0, LONG_MAX},
    {"general", K_TABLE, NULL, 0, 0},
    {"general.simultaneousActions", K_INT, "5", 1, 1000000},
    {"general.maxOutputBuffer", K_INT, "8388608", 1024, LONG_MAX},
    {"general.actionTimeout", K_INT, "30000", 0, LONG_MAX},
    {"general.cpuTimeout", K_INT, "2000", 0, LONG_MAX},
    /* Memory and client-input bounds (issue 14: vm limits). */
    {"general.luaMemoryLimit", K_INT, "268435456", 0, LONG_MAX},
    {"general.jsonMaxDepth", K_INT, "64", 1, 1000},
    {"general.jsonMaxElements", K_INT, "100000", 1, LONG_MAX},
    {"general.shutdownTimeout", K_INT, "5000", 0, LONG_MAX},
    {"general.missingParamChecks", K_LIST, "{'nil', 'null', ''}", 0, 0},
    {"general.disableParamScrubbing", K_BOOL, "false", 0, 0},
    {"general.defaultMiddlewarePriority", K_INT, "100", LONG_MIN, LONG_MAX},
    {"general.maxConnections", K_INT, "16384", 1, LONG_MAX},
    {"general.maxConnectionsPerIP", K_INT, "0", 0, LONG_MAX},
    /* Live resources (issue 17): subscriptions one WebSocket/TCP connection may hold. */
    {"general.maxSubscriptions", K_INT, "1000", 0, 1000000},
    {"redis", K_TABLE, NULL, 0, 0},
    {"redis.url", K_STRING, "'redis://127.0.0.1:6379/0'", 0, 0},
    {"redis.prefix", K_STRING, "'gateway:'", 0, 0},
    {"redis.commandTimeout", K_INT, "5000", 0, LONG_MAX},
    {"redis.maxPending", K_INT, "10000", 1, LONG_MAX},
    {"redis.allowCommands", K_LIST, "{}", 0, 0},
    {"redis.maxListSize", K_INT, "1000", 1, LONG_MAX},
    /* Redis Sentinel (issue 17): find the master through these instead of redis.url's host. */
    {"redis.sentinels", K_LIST, "{}", 0, 0},
    {"redis.masterName", K_STRING, "''", 0, 0},
    {"redis.sentinelPassword", K_STRING, "''", 0, 0},
    /* The cluster (issue 17, docs/realtime.md): pub/sub between workers, presence. */
    {"cluster", K_TABLE, NULL, 0, 0},
    {"cluster.enabled", K_BOOL, "true", 0, 0},
    {"cluster.heartbeat", K_INT, "1000", 100, 60000},
    {"cluster.deadAfter", K_INT, "5000", 300, 3600000},
    {"logging", K_TABLE, NULL, 0, 0},
    {"logging.level", K_STRING, "'info'", 0, 0},
    {"logging.format", K_STRING, "'text'", 0, 0},
    {"logging.filteredParams", K_LIST, "{'password'}", 0, 0},
    {"modules", K_ANY_LIST, "{}", 0, 0},
    /* The project's own settings, read by its actions as api.config.app (issue 16: apps). */
    {"app", K_FREE, "{}", 0, 0},
    /* The OpenAPI document (docs/openapi.md): /api/openapi.json and `gateway openapi`. */
    {"openapi", K_TABLE, NULL, 0, 0},
    {"openapi.enabled", K_BOOL, "true", 0, 0},
    {"openapi.title", K_STRING, "''", 0, 0},
    {"openapi.version", K_STRING, "'1.0.0'", 0, 0},
    {"openapi.description", K_STRING, "''", 0, 0},
    {"openapi.servers", K_LIST, "{}", 0, 0},
    /* Background tasks on Redis (issue 18, docs/tasks.md). */
    {"tasks", K_TABLE, NULL, 0, 0},
    {"tasks.enabled", K_BOOL, "false", 0, 0},
    {"tasks.scheduler", K_BOOL, "true", 0, 0},
    {"tasks.queues", K_LIST, "{'*'}", 0, 0},
    {"tasks.concurrency", K_INT, "1", 1, 10000},
    {"tasks.pollInterval", K_INT, "1000", 10, 3600000},
    {"tasks.schedulerInterval", K_INT, "250", 10, 3600000},
    {"tasks.visibilityTimeout", K_INT, "30000", 100, LONG_MAX},
    {"tasks.maxFailed", K_INT, "10000", 1, LONG_MAX},
    /* Rooms (issue 17: docs/realtime.md): api.rooms and the room messages. */
    {"rooms", K_TABLE, NULL, 0, 0},
    {"rooms.autoCreate", K_BOOL, "true", 0, 0},
    {"rooms.maxNameLength", K_INT, "256", 1, 65536},
    {"rooms.maxRoomsPerConnection", K_INT, "100", 1, 1000000},
    {"rooms.viewLimit", K_INT, "1000", 0, 1000000},
    {"rooms.maxMessageBytes", K_INT, "65536", 1, LONG_MAX},
};
#define NKEYS (sizeof schema / sizeof schema[0])

/* The keys a SIGHUP applies to the running gateway (gw_config_reload); a
 * change to any other key is logged as needing a restart. Each is read
 * where it is used (a new connection's limits, each sweep, each call), or
 * re-applied after a reload (log level, memory limit, connection caps, the
 * Lua runtime's derived values, the action paths the reload reads). */
static const char *const live_keys[] = {
    "name", "paths.actions", "paths.middleware", "paths.routes", "paths.public", "paths.tasks",
    "servers.web.metadata", "servers.web.maxBodySize", "servers.web.maxHeaderSize",
    "servers.web.maxHeaders", "servers.web.headerTimeout", "servers.web.bodyTimeout",
    "servers.web.minBodyRate", "servers.web.keepAliveTimeout", "servers.web.sendTimeout",
    "servers.websocket.maxMessageSize", "servers.websocket.fragmentTimeout",
    "servers.socket.maxLineLength", "servers.socket.maxParams", "servers.socket.maxParamBytes",
    "general.simultaneousActions", "general.maxOutputBuffer", "general.actionTimeout",
    "general.luaMemoryLimit", "general.jsonMaxDepth", "general.jsonMaxElements",
    "general.shutdownTimeout", "general.missingParamChecks", "general.disableParamScrubbing",
    "general.defaultMiddlewarePriority", "general.maxConnections",
    "general.maxConnectionsPerIP", "general.maxSubscriptions", "redis.maxListSize", "logging.level", "logging.format",
    "logging.filteredParams",
    /* Rooms (issue 17) */
    "rooms.autoCreate", "rooms.maxNameLength", "rooms.maxRoomsPerConnection", "rooms.viewLimit",
    "rooms.maxMessageBytes",
    /* re-read by the server after a reload (certificate rotation) */
    "servers.web.tls.cert", "servers.web.tls.key", "servers.web.tls.minVersion",
    "servers.web.http2.enabled", "servers.web.http2.maxConcurrentStreams",
    "servers.web.http2.initialWindowSize",
};
#define NLIVE (sizeof live_keys / sizeof live_keys[0])

struct loader {
    lua_State *L;
    const char *file;  /* for messages */
    const char *text;  /* file contents, to find a key's line */
    char *err;
    size_t errlen;
    const char *level_from; /* the override logging.level came from, if any */
    const char *url_from;   /* the override redis.url came from, if any */
};

static int is_ident(char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Where "seg =" first occurs at or after 'from', as a pointer, or NULL. */
static const char *find_assign(const char *from, const char *seg, size_t n) {
    for (const char *p = from; *p; p++) {
        if (strncmp(p, seg, n) != 0 || (p > from && is_ident(p[-1])) || is_ident(p[n])) continue;
        const char *q = p + n;
        while (*q == ' ' || *q == '\t' || *q == ']' || *q == '"' || *q == '\'') q++;
        if (*q == '=' && q[1] != '=') return p;
    }
    return NULL;
}

/* The line of a dotted key: each segment is looked for after the one
 * before it, so servers.web.port finds the port inside web = {...}.
 * 0 when the last segment is not found. */
static int find_line(const char *text, const char *dotted) {
    const char *pos = text, *found = NULL;
    char seg[128];
    for (const char *p = dotted; *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        gw_fmt(seg, sizeof seg, "%.*s", (int)n, p);
        found = find_assign(pos, seg, strlen(seg));
        if (found) pos = found + n;
        p += n + (dot ? 1 : 0);
    }
    if (!found) return 0;
    int line = 1;
    for (const char *p = text; p < found; p++)
        if (*p == '\n') line++;
    return line;
}

static int fail(struct loader *ld, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, const char *key, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    int line = ld->text ? find_line(ld->text, key) : 0;
    if (line) gw_fmt(ld->err, ld->errlen, "%s:%d: %s: %s", ld->file, line, key, reason);
    else gw_fmt(ld->err, ld->errlen, "%s: %s: %s", ld->file, key, reason);
    return GW_ERR;
}

static const struct key *lookup(const char *path) {
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(schema[i].path, path) == 0) return &schema[i];
    return NULL;
}

static const char *kind_name(enum kind k) {
    switch (k) {
    case K_TABLE: case K_FREE: return "a table";
    case K_STRING: case K_PATH: return "a string";
    case K_INT: return "an integer";
    case K_BOOL: return "a boolean";
    default: return "a list";
    }
}

/* Check the table at the top of the stack, whose dotted name is 'prefix'
 * ("" for the root): unknown keys, then each value's type. */
static int check_table(struct loader *ld, const char *prefix) {
    lua_State *L = ld->L;
    char path[256];
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return fail(ld, prefix[0] ? prefix : "config", "keys must be strings");
        }
        const char *k = lua_tostring(L, -2);
        gw_fmt(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", k);
        const struct key *key = lookup(path);
        if (!key) {
            lua_pop(L, 2);
            return fail(ld, path, "unknown key");
        }
        int t = lua_type(L, -1);
        int ok = 1;
        switch (key->kind) {
        case K_TABLE: case K_ANY_LIST: case K_FREE: ok = t == LUA_TTABLE; break;
        case K_STRING: case K_PATH: ok = t == LUA_TSTRING; break;
        case K_BOOL: ok = t == LUA_TBOOLEAN; break;
        case K_INT: /* an integer, or a float with an integer's value (not inf, nan or 1e300) */
            ok = 0;
            if (t == LUA_TNUMBER) (void)lua_tointegerx(L, -1, &ok);
            break;
        case K_LIST: case K_PATHLIST:
            ok = t == LUA_TTABLE || (key->kind == K_PATHLIST && t == LUA_TSTRING);
            if (ok && t == LUA_TTABLE) {
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= n && ok; i++) {
                    ok = lua_rawgeti(L, -1, i) == LUA_TSTRING;
                    lua_pop(L, 1);
                }
                if (!ok) {
                    lua_pop(L, 2);
                    return fail(ld, path, "expected a list of strings");
                }
            }
            break;
        }
        if (!ok) {
            const char *got = luaL_typename(L, -1);
            lua_pop(L, 2);
            return fail(ld, path, "expected %s, got %s", kind_name(key->kind), got);
        }
        if (key->kind == K_INT) {
            long long v = (long long)lua_tointeger(L, -1);
            if (v < key->min || v > key->max) {
                lua_pop(L, 2);
                return fail(ld, path, "%lld is out of range (%ld..%ld)", v, key->min, key->max);
            }
        }
        if (key->kind == K_TABLE) {
            if (check_table(ld, path) != GW_OK) {
                lua_pop(L, 2);
                return GW_ERR;
            }
        }
        lua_pop(L, 1);
    }
    return GW_OK;
}

/* Walk to the table holding 'path' (creating sections), leaving it and
 * pushing nothing else; returns the last segment. */
static const char *descend(lua_State *L, const char *path, char *seg, size_t seglen) {
    const char *p = path, *dot;
    while ((dot = strchr(p, '.')) != NULL) {
        gw_fmt(seg, seglen, "%.*s", (int)(dot - p), p);
        if (lua_getfield(L, -1, seg) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, seg);
        }
        lua_remove(L, -2);
        p = dot + 1;
    }
    return p;
}

static void set_string(lua_State *L, const char *path, const char *value) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_pushstring(L, value);
    lua_setfield(L, -2, last);
    lua_pop(L, 1);
}

static void set_int(lua_State *L, const char *path, long long value) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_pushinteger(L, value);
    lua_setfield(L, -2, last);
    lua_pop(L, 1);
}

/* Fill defaults for absent keys, and make relative paths absolute. */
static void complete(lua_State *L, const char *dir) {
    char seg[128];
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &schema[i];
        lua_pushvalue(L, -1);
        const char *last = descend(L, k->path, seg, sizeof seg);
        int t = lua_getfield(L, -1, last);
        if (t == LUA_TNIL && k->def) {
            lua_pop(L, 1);
            char src[256];
            luaL_loadstring(L, gw_fmt(src, sizeof src, "return %s", k->def));
            lua_call(L, 0, 1);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, last);
        }
        if (k->kind == K_PATHLIST && lua_type(L, -1) == LUA_TSTRING) {
            lua_createtable(L, 1, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, last);
        }
        if (k->kind == K_PATH || k->kind == K_PATHLIST) {
            int n = k->kind == K_PATH ? 1 : (int)lua_rawlen(L, -1);
            for (int j = 1; j <= n; j++) {
                if (k->kind == K_PATHLIST) lua_rawgeti(L, -1, j);
                const char *p = lua_tostring(L, -1);
                if (p[0] != '/') {
                    lua_pushfstring(L, "%s/%s", dir, p);
                    if (k->kind == K_PATHLIST) lua_rawseti(L, -3, j);
                    else lua_setfield(L, -3, last);
                }
                if (k->kind == K_PATHLIST) lua_pop(L, 1);
            }
        }
        lua_pop(L, 2);
    }
}

static long get_int(lua_State *L, const char *path) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_getfield(L, -1, last);
    long v = (long)lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1)) v = (long)lua_tonumber(L, -1);
    lua_pop(L, 2);
    return v;
}

static int get_bool(lua_State *L, const char *path) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_getfield(L, -1, last);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return v;
}

static void get_string(lua_State *L, const char *path, char *out, size_t outlen) {
    char seg[128];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_getfield(L, -1, last);
    gw_fmt(out, outlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 2);
}

/* [-0, +1, m] Push the contents of the regular file 'path' as a userdata
 * and return them NUL-terminated, or push nothing and return NULL. The
 * memory belongs to Lua, so an error raised later (out of memory) cannot
 * leak it. */
static const char *push_file(lua_State *L, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    char *buf = lua_newuserdatauv(L, (size_t)st.st_size + 1, 0);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pop(L, 1);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static int parse_port(const char *s, int *port) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 65535) return GW_ERR;
    *port = (int)v;
    return GW_OK;
}

static int apply_overrides(struct loader *ld, const struct gw_config_overrides *ov) {
    lua_State *L = ld->L;
    const char *env;
    int port;
    ld->text = NULL; /* override errors have no line in the file */
    if ((env = getenv("GATEWAY_PORT")) && *env) {
        if (parse_port(env, &port) != GW_OK) return fail(ld, "GATEWAY_PORT", "not a port number: %s", env);
        set_int(L, "servers.web.port", port);
    }
    if ((env = getenv("GATEWAY_REDIS_URL")) && *env) {
        set_string(L, "redis.url", env);
        ld->url_from = "GATEWAY_REDIS_URL";
    }
    if ((env = getenv("GATEWAY_LOG_LEVEL")) && *env) {
        set_string(L, "logging.level", env);
        ld->level_from = "GATEWAY_LOG_LEVEL";
    }
    if (ov) {
        if (ov->host) set_string(L, "servers.web.host", ov->host);
        if (ov->port >= 0) set_int(L, "servers.web.port", ov->port);
        if (ov->workers > 0) set_int(L, "workers", ov->workers);
        if (ov->redis_url) {
            set_string(L, "redis.url", ov->redis_url);
            ld->url_from = "--redis";
        }
        if (ov->log_level) {
            set_string(L, "logging.level", ov->log_level);
            ld->level_from = "--log-level";
        }
    }
    return GW_OK;
}

/* The address list at 'path' into 'list': each entry an address or CIDR block. */
static int load_cidrs(struct loader *ld, const char *path, struct gw_cidr_list *list) {
    lua_State *L = ld->L;
    char seg[128], why[160];
    lua_pushvalue(L, -1);
    const char *last = descend(L, path, seg, sizeof seg);
    lua_getfield(L, -1, last);
    list->n = 0;
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
        lua_rawgeti(L, -1, i);
        int ok = gw_cidr_add(list, lua_tostring(L, -1), why, sizeof why);
        lua_pop(L, 1);
        if (ok != GW_OK) {
            lua_pop(L, 2);
            return fail(ld, path, "%s", why);
        }
    }
    lua_pop(L, 2);
    return GW_OK;
}

/* The operations endpoints (net/ops.c): their paths ("" turns one off),
 * the metrics allow-list and the trusted proxies. */
static int load_ops(struct loader *ld, struct gw_config *out) {
    lua_State *L = ld->L;
    static const struct { const char *key; size_t off; } paths[] = {
        {"servers.web.healthPath", offsetof(struct gw_config, health_path)},
        {"servers.web.readyPath", offsetof(struct gw_config, ready_path)},
        {"servers.web.metrics.path", offsetof(struct gw_config, metrics_path)},
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *dst = (char *)out + paths[i].off;
        get_string(L, paths[i].key, dst, sizeof out->health_path);
        if (dst[0] && dst[0] != '/') return fail(ld, paths[i].key, "must start with '/' (or be \"\" for none)");
    }
    lua_getfield(L, -1, "servers");
    lua_getfield(L, -1, "web");
    lua_getfield(L, -1, "metrics");
    lua_getfield(L, -1, "enabled");
    if (!lua_toboolean(L, -1)) out->metrics_path[0] = '\0';
    lua_pop(L, 4);
    /* A listener of its own (port -1: none), on the web listener's host unless named. */
    out->metrics_port = (int)get_int(L, "servers.web.metrics.port");
    get_string(L, "servers.web.metrics.host", out->metrics_host, sizeof out->metrics_host);
    if (!out->metrics_host[0]) get_string(L, "servers.web.host", out->metrics_host, sizeof out->metrics_host);
    if (load_cidrs(ld, "servers.web.metrics.allow", &out->metrics_allow) != GW_OK ||
        load_cidrs(ld, "servers.web.trustedProxies", &out->trusted_proxies) != GW_OK)
        return GW_ERR;
    return GW_OK;
}

/* servers.web.tls: both files or neither (relative to the config file's
 * folder); the files themselves are read by net/tls.c. */
static int load_tls(struct loader *ld, struct gw_config *out) {
    lua_State *L = ld->L;
    static const char *const keys[] = {"servers.web.tls.cert", "servers.web.tls.key"};
    char *dst[] = {out->tls_cert, out->tls_key};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        get_string(L, keys[i], path, sizeof path);
        if (path[0] && path[0] != '/') gw_fmt(dst[i], sizeof out->tls_cert, "%s/%s", out->config_dir, path);
        else gw_fmt(dst[i], sizeof out->tls_cert, "%s", path);
    }
    if (!out->tls_cert[0] != !out->tls_key[0])
        return fail(ld, out->tls_cert[0] ? "servers.web.tls.key" : "servers.web.tls.cert",
                    "required with servers.web.tls.%s", out->tls_cert[0] ? "cert" : "key");
    get_string(L, "servers.web.tls.minVersion", out->tls_min_version, sizeof out->tls_min_version);
    if (strcmp(out->tls_min_version, "1.2") != 0 && strcmp(out->tls_min_version, "1.3") != 0)
        return fail(ld, "servers.web.tls.minVersion", "must be \"1.2\" or \"1.3\", got \"%s\"",
                    out->tls_min_version);
    out->tls_redirect_port = (int)get_int(L, "servers.web.tls.redirectPort");
    if (out->tls_redirect_port >= 0 && !out->tls_cert[0])
        return fail(ld, "servers.web.tls.redirectPort", "needs servers.web.tls.cert and key (TLS on)");
    return GW_OK;
}

/* redis.sentinels, redis.masterName and redis.sentinelPassword into
 * 'sc' (sc->n == 0: no Sentinel). A name without sentinels, or sentinels
 * without a name, is a mistake worth stopping for. */
static int load_sentinels(struct loader *ld, struct gw_sentinel_conf *sc) {
    lua_State *L = ld->L;
    char why[512];
    memset(sc, 0, sizeof *sc);
    get_string(L, "redis.masterName", sc->master, sizeof sc->master);
    get_string(L, "redis.sentinelPassword", sc->password, sizeof sc->password);
    lua_getfield(L, -1, "redis");
    lua_getfield(L, -1, "sentinels");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_pop(L, 2);
    if (n > GW_SENTINEL_MAX) return fail(ld, "redis.sentinels", "at most %d sentinels", GW_SENTINEL_MAX);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_getfield(L, -1, "redis");
        lua_getfield(L, -1, "sentinels");
        lua_rawgeti(L, -1, i);
        int ok = gw_sentinel_addr_parse(lua_tostring(L, -1), &sc->addr[i - 1], why, sizeof why);
        lua_pop(L, 3);
        if (ok != GW_OK) return fail(ld, "redis.sentinels", "%s", why);
    }
    if (n > 0 && !sc->master[0])
        return fail(ld, "redis.masterName", "required with redis.sentinels: the name the sentinels "
                    "monitor the master by (sentinel monitor <name> ...)");
    if (n == 0 && sc->master[0])
        return fail(ld, "redis.masterName", "set, but redis.sentinels is empty: list the sentinels "
                    "(\"host:port\"), or remove masterName to use redis.url's host");
    if (n == 0 && sc->password[0])
        return fail(ld, "redis.sentinelPassword", "set, but redis.sentinels is empty");
    for (const char *p = sc->master; *p; p++)
        if ((unsigned char)*p <= ' ')
            return fail(ld, "redis.masterName", "no spaces or control characters in a master name");
    sc->n = (int)n;
    return GW_OK;
}

/* Check the values of the completed config at the top of L whose range a
 * type cannot express, and fill 'out' from it (all but config_dir). */
static int finish(struct loader *ld_, struct gw_config *out) {
    struct loader ld = *ld_;
    lua_State *L = ld.L;
    out->redis_allow = 0;
    /* Values whose range a type cannot express. */
    char buf[256];
    get_string(L, "logging.level", buf, sizeof buf);
    if ((out->log_level = gw_log_level_parse(buf)) < 0) {
        if (ld.level_from) ld.text = NULL; /* not the file's fault */
        fail(&ld, "logging.level", "unknown level \"%s\"%s%s (debug, info, notice, warning, error, crit)",
             buf, ld.level_from ? " from " : "", ld.level_from ? ld.level_from : "");
        return GW_ERR;
    }
    get_string(L, "logging.format", buf, sizeof buf);
    if (strcmp(buf, "text") != 0 && strcmp(buf, "json") != 0) {
        fail(&ld, "logging.format", "must be \"text\" or \"json\", got \"%s\"", buf);
        return GW_ERR;
    }
    out->log_json = strcmp(buf, "json") == 0;
    lua_getfield(L, -1, "general");
    lua_getfield(L, -1, "missingParamChecks");
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
        lua_rawgeti(L, -1, i);
        const char *c = lua_tostring(L, -1);
        if (strcmp(c, "nil") != 0 && strcmp(c, "null") != 0 && strcmp(c, "") != 0) {
            fail(&ld, "general.missingParamChecks", "unknown check \"%s\" (\"nil\", \"null\", \"\")", c);
            return GW_ERR;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    {
        char url[1024], why[256];
        struct gw_redis_url u;
        get_string(L, "redis.url", url, sizeof url);
        if (gw_redis_url_parse(url, &u, why, sizeof why) != GW_OK) {
            if (ld.url_from) {
                ld.text = NULL; /* not the file's fault */
                fail(&ld, "redis.url", "%s (from %s)", why, ld.url_from);
            } else {
                fail(&ld, "redis.url", "%s", why);
            }
            return GW_ERR;
        }
    }
    lua_getfield(L, -1, "redis");
    lua_getfield(L, -1, "allowCommands");
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
        lua_rawgeti(L, -1, i);
        const char *c = lua_tostring(L, -1);
        int bit = gw_redis_allowable(c);
        if (bit < 0) {
            fail(&ld, "redis.allowCommands", "\"%s\" is not a command the gateway refuses unless "
                 "allowed (%s)", c, gw_redis_allowable_names());
            return GW_ERR;
        }
        out->redis_allow |= 1UL << bit;
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    if (load_sentinels(&ld, &out->redis_sentinel) != GW_OK) return GW_ERR;
    get_string(L, "servers.websocket.path", buf, sizeof buf);
    if (buf[0] != '/') {
        fail(&ld, "servers.websocket.path", "must start with '/'");
        return GW_ERR;
    }
    if (get_int(L, "cluster.deadAfter") < 3 * get_int(L, "cluster.heartbeat")) {
        fail(&ld, "cluster.deadAfter", "must be at least 3 times cluster.heartbeat (%ld), or a "
             "worker late by one beat would be taken for dead", get_int(L, "cluster.heartbeat"));
        return GW_ERR;
    }
    if (load_ops(&ld, out) != GW_OK) return GW_ERR;
    if (load_tls(&ld, out) != GW_OK) return GW_ERR;

    get_string(L, "name", out->name, sizeof out->name);
    out->workers = (int)get_int(L, "workers");
    {
        lua_getfield(L, -1, "servers");
        lua_getfield(L, -1, "web");
        lua_getfield(L, -1, "enabled");
        out->web_enabled = lua_toboolean(L, -1);
        lua_getfield(L, -2, "metadata");
        out->metadata = lua_toboolean(L, -1);
        lua_pop(L, 3);
        lua_getfield(L, -1, "websocket");
        lua_getfield(L, -1, "enabled");
        out->ws_enabled = lua_toboolean(L, -1);
        lua_pop(L, 2);
        lua_getfield(L, -1, "socket");
        lua_getfield(L, -1, "enabled");
        out->socket_enabled = lua_toboolean(L, -1);
        lua_pop(L, 3);
    }
    get_string(L, "servers.web.host", out->web_host, sizeof out->web_host);
    out->web_port = (int)get_int(L, "servers.web.port");
    get_string(L, "servers.web.urlPathForActions", out->api_path, sizeof out->api_path);
    get_string(L, "servers.web.urlPathForFiles", out->files_path, sizeof out->files_path);
    out->max_body_size = get_int(L, "servers.web.maxBodySize");
    out->max_header_size = get_int(L, "servers.web.maxHeaderSize");
    out->max_headers = (int)get_int(L, "servers.web.maxHeaders");
    out->header_timeout = get_int(L, "servers.web.headerTimeout");
    out->body_timeout = get_int(L, "servers.web.bodyTimeout");
    out->min_body_rate = get_int(L, "servers.web.minBodyRate");
    out->keep_alive_timeout = get_int(L, "servers.web.keepAliveTimeout");
    out->send_timeout = get_int(L, "servers.web.sendTimeout");
    out->h2_enabled = get_bool(L, "servers.web.http2.enabled");
    out->h2_max_streams = get_int(L, "servers.web.http2.maxConcurrentStreams");
    out->h2_window = get_int(L, "servers.web.http2.initialWindowSize");
    get_string(L, "servers.websocket.path", out->ws_path, sizeof out->ws_path);
    out->ws_max_message = get_int(L, "servers.websocket.maxMessageSize");
    out->ws_ping_interval = get_int(L, "servers.websocket.pingInterval");
    out->ws_pong_timeout = get_int(L, "servers.websocket.pongTimeout");
    out->ws_fragment_timeout = get_int(L, "servers.websocket.fragmentTimeout");
    get_string(L, "servers.socket.host", out->socket_host, sizeof out->socket_host);
    out->socket_port = (int)get_int(L, "servers.socket.port");
    out->max_line_length = get_int(L, "servers.socket.maxLineLength");
    out->line_timeout = get_int(L, "servers.socket.lineTimeout");
    out->idle_timeout = get_int(L, "servers.socket.idleTimeout");
    out->simultaneous_actions = (int)get_int(L, "general.simultaneousActions");
    out->max_output_buffer = get_int(L, "general.maxOutputBuffer");
    out->action_timeout = get_int(L, "general.actionTimeout");
    out->cpu_timeout = get_int(L, "general.cpuTimeout");
    out->lua_memory_limit = get_int(L, "general.luaMemoryLimit");
    out->shutdown_timeout = get_int(L, "general.shutdownTimeout");
    out->max_connections = get_int(L, "general.maxConnections");
    out->max_connections_per_ip = get_int(L, "general.maxConnectionsPerIP");
    get_string(L, "redis.url", out->redis_url, sizeof out->redis_url);
    out->redis_command_timeout = get_int(L, "redis.commandTimeout");
    out->redis_max_pending = get_int(L, "redis.maxPending");
    lua_getfield(L, -1, "cluster");
    lua_getfield(L, -1, "enabled");
    out->cluster_enabled = lua_toboolean(L, -1);
    lua_pop(L, 2);
    out->cluster_heartbeat = get_int(L, "cluster.heartbeat");
    get_string(L, "paths.public", out->public_dir, sizeof out->public_dir);

    return GW_OK;
}

int gw_config_load(lua_State *L, const char *path, const struct gw_config_overrides *ov,
                   struct gw_config *out, char *err, size_t errlen) {
    struct loader ld = {L, path ? path : "(defaults)", NULL, err, errlen, NULL, NULL};
    const char *text = NULL;
    int top = lua_gettop(L);

    memset(out, 0, sizeof *out);
    if (path) {
        const char *slash = strrchr(path, '/');
        char cwd[4096];
        if (!slash) gw_fmt(out->config_dir, sizeof out->config_dir, "%s", getcwd(cwd, sizeof cwd) ? cwd : ".");
        else if (path[0] == '/') gw_fmt(out->config_dir, sizeof out->config_dir, "%.*s", (int)(slash - path), path);
        else gw_fmt(out->config_dir, sizeof out->config_dir, "%s/%.*s", getcwd(cwd, sizeof cwd) ? cwd : ".", (int)(slash - path), path);
        if (slash == path) gw_fmt(out->config_dir, sizeof out->config_dir, "/");

        if (!(text = push_file(L, path))) {
            gw_fmt(err, errlen, "%s: cannot read the config file", path);
            return GW_ERR;
        }
        ld.text = text; /* the file stays at top + 1 until the end */
        if (luaL_loadbuffer(L, text, strlen(text), lua_pushfstring(L, "@%s", path)) != LUA_OK ||
            lua_pcall(L, 0, 1, 0) != LUA_OK) {
            gw_fmt(err, errlen, "%s", lua_tostring(L, -1));
            goto fail;
        }
        lua_remove(L, -2); /* the chunk name */
        if (!lua_istable(L, -1)) {
            gw_fmt(err, errlen, "%s: the config file must return a table, got %s", path, luaL_typename(L, -1));
            goto fail;
        }
        if (check_table(&ld, "") != GW_OK) goto fail;
    } else {
        char cwd[4096];
        gw_fmt(out->config_dir, sizeof out->config_dir, "%s", getcwd(cwd, sizeof cwd) ? cwd : ".");
        lua_newtable(L);
    }

    if (apply_overrides(&ld, ov) != GW_OK) goto fail;
    ld.text = text;
    complete(L, out->config_dir);
    if (finish(&ld, out) != GW_OK) goto fail;

    if (text) lua_remove(L, top + 1);
    return GW_OK;
fail:
    lua_settop(L, top);
    return GW_ERR;
}


/* --- reload (SIGHUP) ----------------------------------------------------- */

static int is_live(const char *path) {
    for (size_t i = 0; i < NLIVE; i++)
        if (strcmp(live_keys[i], path) == 0) return 1;
    return 0;
}

/* [-0, +1] Push the value at dotted 'path' in the table at 'idx' (nil when
 * a section is missing). */
static void push_key(lua_State *L, int idx, const char *path) {
    char seg[128];
    lua_pushvalue(L, idx);
    for (const char *p = path;;) {
        const char *dot = strchr(p, '.');
        gw_fmt(seg, sizeof seg, "%.*s", (int)(dot ? dot - p : (long)strlen(p)), p);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return;
        }
        lua_getfield(L, -1, seg);
        lua_remove(L, -2);
        if (!dot) return;
        p = dot + 1;
    }
}

/* Do the values at 'a' and 'b' hold the same data? Tables are compared key
 * by key (a config is a tree, so 'depth' only guards against a cycle). */
static int same(lua_State *L, int a, int b, int depth) {
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b)) return 0;
    if (!lua_istable(L, a)) return lua_rawequal(L, a, b);
    if (lua_rawequal(L, a, b)) return 1;
    if (depth > 16) return 0;
    for (int pass = 0; pass < 2; pass++) { /* a's keys in b, then b's keys in a */
        int from = pass ? b : a, to = pass ? a : b;
        lua_pushnil(L);
        while (lua_next(L, from)) {
            lua_pushvalue(L, -2);
            lua_rawget(L, to);
            int eq = pass ? !lua_isnil(L, -1) : same(L, -2, -1, depth + 1);
            lua_pop(L, 2);
            if (!eq) {
                lua_pop(L, 1);
                return 0;
            }
        }
    }
    return 1;
}

/* A value for a log line; secrets (a URL may carry a password) are not shown. */
static const char *show(lua_State *L, int idx, const char *path, char *buf, size_t len) {
    const char *name = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
    if (strcmp(name, "url") == 0 || strcmp(name, "key") == 0 || strstr(name, "assword") ||
        strstr(name, "ecret") || strstr(name, "oken"))
        return "(hidden)";
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return "(none)";
    case LUA_TTABLE: { /* a list of strings as {"a", "b"}; anything else as "(a table)" */
        size_t n = lua_rawlen(L, idx), used = 1;
        if (len < 8) return "(a table)";
        buf[0] = '{';
        for (size_t i = 1; i <= n; i++) {
            int t = lua_rawgeti(L, idx, (lua_Integer)i);
            const char *v = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            lua_pop(L, 1); /* the string stays valid: the table holds it */
            if (!v) return "(a table)";
            int w = snprintf(buf + used, len - used, "%s\"%s\"", i > 1 ? ", " : "", v);
            if (w < 0 || (size_t)w >= len - used - 5) { /* no room: end it short */
                gw_fmt(buf + used, len - used, "...}");
                return buf;
            }
            used += (size_t)w;
        }
        gw_fmt(buf + used, len - used, "}");
        return buf;
    }
    case LUA_TSTRING: return gw_fmt(buf, len, "\"%s\"", lua_tostring(L, idx));
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER: /* not lua_tostring: it would turn the value itself into a string */
        if (lua_isinteger(L, idx)) return gw_fmt(buf, len, "%lld", (long long)lua_tointeger(L, idx));
        return gw_fmt(buf, len, "%.14g", (double)lua_tonumber(L, idx));
    default: return luaL_typename(L, idx);
    }
}

int gw_config_reload(lua_State *L, int current, const char *path, const struct gw_config_overrides *ov,
                     struct gw_config *out, char *err, size_t errlen) {
    current = lua_absindex(L, current);
    int top = lua_gettop(L);
    struct gw_config fresh;
    if (gw_config_load(L, path, ov, &fresh, err, errlen) != GW_OK) return GW_ERR;
    int nt = lua_gettop(L);
    int changed = 0, held = 0;
    char a[160], b[160], seg[128];
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &schema[i];
        if (k->kind == K_TABLE) continue; /* its keys are compared one by one */
        push_key(L, current, k->path);
        push_key(L, nt, k->path);
        if (!same(L, -2, -1, 0)) {
            if (is_live(k->path)) {
                gw_log(GW_LOG_NOTICE, "reload: %s: %s -> %s (applied)", k->path,
                       show(L, -2, k->path, a, sizeof a), show(L, -1, k->path, b, sizeof b));
                lua_pushvalue(L, current);
                const char *last = descend(L, k->path, seg, sizeof seg);
                lua_pushvalue(L, -2);
                lua_setfield(L, -2, last);
                lua_pop(L, 1);
                changed++;
            } else {
                gw_log(GW_LOG_WARNING, "reload: %s: %s -> %s needs a restart: not applied", k->path,
                       show(L, -2, k->path, a, sizeof a), show(L, -1, k->path, b, sizeof b));
                held++;
            }
        }
        lua_pop(L, 2);
    }
    /* The config in force, with the live changes, gives the struct again. */
    struct loader ld = {L, path ? path : "(defaults)", NULL, err, errlen, NULL, NULL};
    lua_pushvalue(L, current);
    struct gw_config next = *out;
    if (finish(&ld, &next) != GW_OK) { /* each value passed in one file or the other */
        lua_settop(L, top);
        return GW_ERR;
    }
    *out = next;
    lua_settop(L, top);
    gw_log(GW_LOG_NOTICE, "reload: %s: %d change%s applied, %d waiting for a restart",
           path ? path : "(defaults)", changed, changed == 1 ? "" : "s", held);
    return GW_OK;
}
