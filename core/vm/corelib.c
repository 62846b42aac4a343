/* The "gateway.core" table: the pure helpers the Lua runtime needs from C
 * (clocks, query parsing, UTF-8 checks, directory listing, logging, ids).
 * Nothing here touches the event loop. */
#include "base/gw.h"
#include "base/log.h"
#include "base/mime.h"
#include "base/query.h"
#include "base/random.h"
#include "vm/libs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* core.now_ms() -> monotonic milliseconds */
static int core_now_ms(lua_State *L) {
    lua_pushnumber(L, gw_now_ms());
    return 1;
}

/* core.wall_ms() -> milliseconds since the epoch */
static int core_wall_ms(lua_State *L) {
    lua_pushnumber(L, gw_wall_ms());
    return 1;
}

int gw_lib_add_pair(void *ud, const char *key, size_t klen, const char *val, size_t vlen) {
    lua_State *L = ud;
    lua_pushlstring(L, key, klen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushlstring(L, val, vlen);
        lua_rawset(L, -3);
    } else if (t == LUA_TTABLE) {
        lua_pushlstring(L, val, vlen);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 2);
    } else {
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, val, vlen);
        lua_rawseti(L, -2, 2);
        lua_rawset(L, -3);
    }
    return GW_OK;
}

/* core.parse_query(s [, into]) -> table  (decoded key/value pairs) */
static int core_parse_query(lua_State *L) {
    size_t len;
    const char *s = luaL_optlstring(L, 1, "", &len);
    if (lua_istable(L, 2)) lua_settop(L, 2);
    else {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    if (gw_query_parse(s, len, gw_lib_add_pair, L) != GW_OK) return luaL_error(L, "out of memory");
    return 1;
}

/* core.url_decode(s [, plus_is_space]) -> string */
static int core_url_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len + 1);
    luaL_pushresultsize(&b, gw_url_decode(s, len, out, lua_toboolean(L, 2)));
    return 1;
}

/* core.utf8_valid(s) -> boolean */
static int core_utf8_valid(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, gw_utf8_valid(s, len));
    return 1;
}

/* May this JSON text hold a number beyond a double's range? True for a
 * digit followed by an exponent or for a run of 309 digits or more; the
 * caller then walks the decoded value. One byte scan, so every request's
 * JSON can afford it. */
static int may_overflow(const char *s, size_t len) {
    size_t run = 0; /* digits in a row */
    int found = 0;
    for (size_t i = 0; i < len && !found; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            found = ++run >= 309;
        } else {
            found = run > 0 && (s[i] == 'e' || s[i] == 'E');
            run = 0;
        }
    }
    return found;
}

/* core.json_may_overflow(text) -> boolean (see may_overflow) */
static int core_json_may_overflow(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, may_overflow(s, len));
    return 1;
}

/* What a request's JSON text holds, read before cjson builds anything
 * from it: how deep its arrays and objects nest, how many values they hold
 * (an upper bound: each '[', '{' and ',' outside strings), and whether it
 * may hold a number out of a double's range (may_overflow, outside
 * strings). Stops at the first limit passed. One byte scan, so every
 * request's JSON can afford it. For a text cjson accepts the scan reads
 * the same tokens cjson does, so what cjson would build is bounded too. */
struct json_scan {
    int too_deep, too_many, may_overflow;
};

enum { J_OTHER, J_DIGIT, J_EXP, J_QUOTE, J_OPEN, J_CLOSE, J_COMMA };

static const unsigned char json_class[256] = {
    ['0'] = J_DIGIT, ['1'] = J_DIGIT, ['2'] = J_DIGIT, ['3'] = J_DIGIT, ['4'] = J_DIGIT,
    ['5'] = J_DIGIT, ['6'] = J_DIGIT, ['7'] = J_DIGIT, ['8'] = J_DIGIT, ['9'] = J_DIGIT,
    ['e'] = J_EXP,   ['E'] = J_EXP,   ['"'] = J_QUOTE,
    ['['] = J_OPEN,  ['{'] = J_OPEN,  [']'] = J_CLOSE, ['}'] = J_CLOSE, [','] = J_COMMA,
};

static void scan_json(const char *s, size_t len, lua_Integer max_depth, lua_Integer max_values,
                      struct json_scan *out) {
    lua_Integer depth = 0, values = 0;
    size_t run = 0; /* digits in a row */
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < len; i++) {
        switch (json_class[(unsigned char)s[i]]) {
        case J_DIGIT:
            if (++run >= 309) out->may_overflow = 1;
            continue;
        case J_EXP:
            if (run > 0) out->may_overflow = 1;
            break;
        case J_QUOTE: /* to the closing quote, past escapes */
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            break;
        case J_OPEN:
            if (++depth > max_depth) {
                out->too_deep = 1;
                return;
            }
            if (++values > max_values) { /* a container counts for its first value */
                out->too_many = 1;
                return;
            }
            break;
        case J_CLOSE:
            depth--;
            break;
        case J_COMMA:
            if (++values > max_values) {
                out->too_many = 1;
                return;
            }
            break;
        default:
            break;
        }
        run = 0;
    }
}

/* core.json_decode(decode, text [, max_depth [, max_values]]) -> value, may_overflow
 *                                                               | nil [, reason]
 * A request's JSON text in one call: nil when it is not UTF-8 or 'decode'
 * (cjson's) raises on it; nil and a reason naming the limit when it nests
 * deeper than max_depth (general.jsonMaxDepth) or holds more than
 * max_values values (general.jsonMaxElements); else the value, and whether
 * the caller must walk it for numbers out of range. Running out of memory
 * is raised, not taken for bad JSON. */
static int core_json_decode(lua_State *L) {
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_Integer max_depth = luaL_optinteger(L, 3, 1000);
    lua_Integer max_values = luaL_optinteger(L, 4, LUA_MAXINTEGER);
    if (!gw_utf8_valid(s, len)) return 0;
    struct json_scan scan;
    scan_json(s, len, max_depth, max_values, &scan);
    if (scan.too_deep) {
        lua_pushnil(L);
        lua_pushfstring(L, "nested deeper than general.jsonMaxDepth (%I)", max_depth);
        return 2;
    }
    if (scan.too_many) {
        lua_pushnil(L);
        lua_pushfstring(L, "more than general.jsonMaxElements (%I) values", max_values);
        return 2;
    }
    lua_settop(L, 2);
    /* cjson's decode leaks its buffer when an allocation fails inside it:
     * under a memory cap it runs uncapped and is measured after (libs.h).
     * The struct is vm.c's one for every state: kept once found. */
    static const struct gw_uncapped *u;
    if (!u) {
        lua_getfield(L, LUA_REGISTRYINDEX, GW_UNCAPPED_KEY);
        u = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    int rc = u ? u->pcall(L, 1, 1) : lua_pcall(L, 1, 1, 0);
    if (rc == LUA_ERRMEM) return lua_error(L);
    if (rc != LUA_OK) return 0;
    lua_pushboolean(L, scan.may_overflow);
    return 2;
}

/* core.readdir(path) -> { {name=, dir=bool}, ... } sorted by name | nil, err */
static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The open DIR of a readdir: a userdata whose __gc closes it, so an error
 * raised while the names are collected (out of memory) cannot leak it. */
static int dir_gc(lua_State *L) {
    DIR **d = luaL_checkudata(L, 1, "gw.core.Dir");
    if (*d) closedir(*d);
    *d = NULL;
    return 0;
}

static int core_readdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR **d = lua_newuserdatauv(L, sizeof *d, 0);
    *d = NULL;
    if (luaL_newmetatable(L, "gw.core.Dir")) {
        lua_pushcfunction(L, dir_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if ((*d = opendir(path)) == NULL) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    /* Collect names in a Lua table first, sorted below. */
    lua_newtable(L);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(*d)) != NULL) {
        if (de->d_name[0] == '.') continue; /* hidden files, "." and ".." */
        lua_pushstring(L, de->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(*d);
    *d = NULL;
    char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        names[i] = (char *)lua_tostring(L, -1); /* anchored by the table */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        struct stat st;
        char full[4096];
        lua_createtable(L, 0, 2);
        lua_pushstring(L, names[i]);
        lua_setfield(L, -2, "name");
        gw_fmt(full, sizeof full, "%s/%s", path, names[i]);
        lua_pushboolean(L, stat(full, &st) == 0 && S_ISDIR(st.st_mode));
        lua_setfield(L, -2, "dir");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* core.mime_type(extension) -> Content-Type */
static int core_mime_type(lua_State *L) {
    lua_pushstring(L, gw_mime_type(luaL_checkstring(L, 1)));
    return 1;
}

/* core.is_dir(path) -> boolean */
static int core_is_dir(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
    return 1;
}

static int check_level(lua_State *L, int arg) {
    const char *name = luaL_optstring(L, arg, "info");
    int level = gw_log_level_parse(name);
    if (level < 0) return luaL_argerror(L, arg, lua_pushfstring(L, "unknown log level '%s'", name));
    return level;
}

/* core.log_enabled(level) -> boolean */
static int core_log_enabled(lua_State *L) {
    lua_pushboolean(L, gw_log_enabled(check_level(L, 1)));
    return 1;
}

/* The text of the value at 'idx' for a log field: strings and numbers as
 * they are (a number is converted in its slot), anything else as tostring()
 * gives it, put in its slot so it stays anchored. */
static const char *field_text(lua_State *L, int idx, size_t *len) {
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) return lua_tolstring(L, idx, len);
    if (t == LUA_TBOOLEAN) {
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        lua_replace(L, idx);
        return lua_tolstring(L, idx, len);
    }
    luaL_tolstring(L, idx, NULL);
    lua_replace(L, idx);
    return lua_tolstring(L, idx, len);
}

/* Is the value at 'idx' one a JSON line writes as it is: a boolean, an
 * integer or a finite float? (inf and nan are not JSON: they are quoted.) */
static int field_raw(lua_State *L, int idx) {
    int t = lua_type(L, idx);
    if (t == LUA_TBOOLEAN || lua_isinteger(L, idx)) return 1;
    if (t != LUA_TNUMBER) return 0;
    lua_Number v = lua_tonumber(L, idx);
    return v == v && v != HUGE_VAL && v != -HUGE_VAL;
}

/* core.log(level, msg|nil, fields)
 * 'fields' is either a list {k1, v1, k2, v2, ...} (kept in that order) or
 * a map (written in key order). Values are converted with tostring;
 * numbers and booleans stay numbers and booleans in JSON lines. The
 * texts stay on the stack while the line is written. */
#define MAX_FIELDS 32
static int core_log(lua_State *L) {
    int level = check_level(L, 1);
    const char *msg = luaL_optstring(L, 2, NULL);
    struct gw_log_field fields[MAX_FIELDS];
    int n = 0;
    if (!gw_log_enabled(level)) return 0;
    lua_settop(L, 3);
    luaL_checkstack(L, 2 * MAX_FIELDS + 4, "too many log fields");
    if (lua_istable(L, 3) && lua_rawlen(L, 3) > 0) {
        lua_Integer len = (lua_Integer)lua_rawlen(L, 3);
        for (lua_Integer i = 1; i + 1 <= len && n < MAX_FIELDS; i += 2) {
            lua_rawgeti(L, 3, i);
            lua_rawgeti(L, 3, i + 1);
            int top = lua_gettop(L);
            fields[n].key = field_text(L, top - 1, NULL);
            fields[n].raw = field_raw(L, top);
            fields[n].value = field_text(L, top, &fields[n].value_len);
            n++;
        }
    } else if (lua_istable(L, 3)) {
        /* Sort the keys so a map logs the same way every time. */
        lua_newtable(L); /* 4: key list */
        int nk = 0;
        lua_pushnil(L);
        while (lua_next(L, 3) && nk < MAX_FIELDS) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, 4, ++nk);
            }
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, 4);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        for (int i = 1; i <= nk; i++) {
            lua_rawgeti(L, 4, i);
            lua_pushvalue(L, -1);
            lua_rawget(L, 3);
            int top = lua_gettop(L);
            fields[n].key = lua_tostring(L, top - 1);
            fields[n].raw = field_raw(L, top);
            fields[n].value = field_text(L, top, &fields[n].value_len);
            n++;
        }
    }
    gw_log_fields(level, msg, fields, n);
    return 0;
}

/* core.pid() -> this process's id (each worker has its own) */
static int core_pid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* core.random_id() -> 32 hex characters */
static int core_random_id(lua_State *L) {
    char hex[32];
    if (gw_random_hex(hex) != GW_OK) return luaL_error(L, "cannot read /dev/urandom");
    lua_pushlstring(L, hex, 32);
    return 1;
}

/* core.regex_match(subject, pattern [, flags]) -> captures | nil, and
 * core.regex_test(...) -> boolean: gateway.regex's, with a match over
 * pcre2's limits counted as no match (the subject is client input). */
static int core_regex_match(lua_State *L) { return gw_regex_lua_match(L, 1); }
static int core_regex_test(lua_State *L) { return gw_regex_lua_test(L, 1); }

static const luaL_Reg core_funcs[] = {
    {"now_ms", core_now_ms},         {"wall_ms", core_wall_ms},
    {"parse_query", core_parse_query}, {"url_decode", core_url_decode},
    {"utf8_valid", core_utf8_valid}, {"json_may_overflow", core_json_may_overflow},
    {"json_decode", core_json_decode},
    {"readdir", core_readdir},
    {"is_dir", core_is_dir},         {"mime_type", core_mime_type},
    {"log", core_log},               {"log_enabled", core_log_enabled},
    {"random_id", core_random_id},   {"pid", core_pid},
    {"regex_match", core_regex_match}, {"regex_test", core_regex_test},
    {NULL, NULL}};

int gw_open_core(lua_State *L) {
    luaL_newlib(L, core_funcs);
    return 1;
}
