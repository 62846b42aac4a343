/* The api.regex table: pcre2 matching for Lua, using the pattern cache in
 * base/regex.c. Captures are Lua tables: [0] the whole match, [1..n] the
 * groups (absent when unset), plus one key per named group. A match that
 * hits pcre2's limits (GW_REGEX_MATCH_LIMIT) raises; core.regex_match and
 * core.regex_test, for the router and the validators, count it as no match. */
#include "vm/libs.h"
#include "base/regex.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static const struct gw_regex *check_regex(lua_State *L, int arg, int flags_arg) {
    size_t len;
    char err[512];
    const char *pat = luaL_checklstring(L, arg, &len);
    const char *flags = luaL_optstring(L, flags_arg, NULL);
    const struct gw_regex *re = gw_regex_get(pat, len, flags, err, sizeof err);
    if (!re) luaL_error(L, "%s", err);
    return re;
}

/* [-0, +1, m] Push the captures of the last match as a table. */
static void push_captures(lua_State *L, const struct gw_regex *re, const char *subj,
                          const PCRE2_SIZE *ov) {
    uint32_t namecount, entrysize;
    PCRE2_SPTR table;
    lua_createtable(L, (int)re->ncaptures, 0);
    for (uint32_t i = 0; i <= re->ncaptures; i++) {
        if (ov[2 * i] == PCRE2_UNSET) continue;
        lua_pushlstring(L, subj + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
        lua_rawseti(L, -2, (lua_Integer)i);
    }
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &namecount);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &entrysize);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t n = 0; n < namecount; n++, table += entrysize) {
        int group = table[0] << 8 | table[1];
        if (ov[2 * group] == PCRE2_UNSET) continue;
        lua_pushstring(L, (const char *)table + 2);
        lua_pushlstring(L, subj + ov[2 * group], ov[2 * group + 1] - ov[2 * group]);
        lua_rawset(L, -3);
    }
}

static int over_limit(int rc) {
    return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
           rc == PCRE2_ERROR_HEAPLIMIT;
}

/* Match from 'offset'; a failure raises, except a match over the limits
 * when 'limit_is_nomatch' (client input decides the match: route segments,
 * handler routes, validated values), which is no match. */
static int exec_match(lua_State *L, const struct gw_regex *re, const char *subj, size_t len,
                      size_t offset, int limit_is_nomatch, PCRE2_SIZE **ov) {
    int rc = gw_regex_exec(re, subj, len, offset, ov);
    if (rc >= 0) return rc;
    if (over_limit(rc)) {
        if (limit_is_nomatch) return 0;
        return luaL_error(L, "regex match failed: the pattern backtracks too much on this "
                             "subject (more than %d steps)", GW_REGEX_MATCH_LIMIT);
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return luaL_error(L, "regex match failed: %s", (const char *)msg);
}

static int exec_or_raise(lua_State *L, const struct gw_regex *re, const char *subj, size_t len,
                         size_t offset, PCRE2_SIZE **ov) {
    return exec_match(L, re, subj, len, offset, 0, ov);
}

/* match(subject, pattern [, flags]) from the arguments: the result of
 * exec_match, with the subject in '*subj' and the pattern in '*re'. */
static int match_args(lua_State *L, int limit_is_nomatch, const struct gw_regex **re,
                      const char **subj, PCRE2_SIZE **ov) {
    size_t len;
    *subj = luaL_checklstring(L, 1, &len);
    *re = check_regex(L, 2, 3);
    return exec_match(L, *re, *subj, len, 0, limit_is_nomatch, ov);
}

int gw_regex_lua_match(lua_State *L, int limit_is_nomatch) {
    const struct gw_regex *re;
    const char *subj;
    PCRE2_SIZE *ov;
    if (match_args(L, limit_is_nomatch, &re, &subj, &ov) == 0) {
        lua_pushnil(L);
        return 1;
    }
    push_captures(L, re, subj, ov);
    return 1;
}

int gw_regex_lua_test(lua_State *L, int limit_is_nomatch) {
    const struct gw_regex *re;
    const char *subj;
    PCRE2_SIZE *ov;
    lua_pushboolean(L, match_args(L, limit_is_nomatch, &re, &subj, &ov) > 0);
    return 1;
}

/* api.regex.match(subject, pattern [, flags]) -> captures | nil */
static int regex_match(lua_State *L) { return gw_regex_lua_match(L, 0); }

/* api.regex.test(subject, pattern [, flags]) -> boolean */
static int regex_test(lua_State *L) { return gw_regex_lua_test(L, 0); }

/* Where the next search starts after a match [s, e): past an empty match
 * by one character so the loop always moves forward. */
static size_t advance(const char *subj, size_t len, size_t s, size_t e) {
    if (e > s) return e;
    if (e >= len) return len + 1;
    e++;
    while (e < len && ((unsigned char)subj[e] & 0xC0) == 0x80) e++;
    return e;
}

/* api.regex.gsub(subject, pattern, repl [, flags]) -> string, count
 * 'repl' is a string ($0, $1, ${name} refer to captures, $$ is '$'), a
 * table indexed by the whole match, or function(captures) -> string|nil. */
static int regex_gsub(lua_State *L) {
    size_t len, pos = 0, copied = 0;
    PCRE2_SIZE *ov;
    lua_Integer count = 0;
    luaL_Buffer b;
    const char *subj = luaL_checklstring(L, 1, &len);
    const struct gw_regex *re = check_regex(L, 2, 4);
    int rt = lua_type(L, 3);
    luaL_argexpected(L, rt == LUA_TSTRING || rt == LUA_TNUMBER || rt == LUA_TTABLE ||
                            rt == LUA_TFUNCTION, 3, "string/function/table");
    lua_settop(L, 3);
    luaL_buffinit(L, &b);
    while (pos <= len && exec_or_raise(L, re, subj, len, pos, &ov) > 0) {
        size_t s = ov[0], e = ov[1];
        count++;
        luaL_addlstring(&b, subj + copied, s - copied);
        if (rt == LUA_TSTRING || rt == LUA_TNUMBER) {
            size_t rl;
            const char *r = lua_tolstring(L, 3, &rl);
            for (size_t i = 0; i < rl; i++) {
                if (r[i] != '$' || i + 1 >= rl) {
                    luaL_addchar(&b, r[i]);
                    continue;
                }
                i++;
                int group = -1;
                if (r[i] == '$') {
                    luaL_addchar(&b, '$');
                } else if (r[i] >= '0' && r[i] <= '9') {
                    group = r[i] - '0';
                } else if (r[i] == '{') {
                    const char *close = memchr(r + i, '}', rl - i);
                    if (!close) return luaL_error(L, "unterminated ${ in replacement");
                    char name[128];
                    size_t nl = (size_t)(close - (r + i + 1));
                    if (nl >= sizeof name) return luaL_error(L, "capture name too long in replacement");
                    memcpy(name, r + i + 1, nl);
                    name[nl] = '\0';
                    if (nl > 0 && name[0] >= '0' && name[0] <= '9') group = atoi(name);
                    else group = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)name);
                    if (group < 0) return luaL_error(L, "unknown capture \"%s\" in replacement", name);
                    i += nl + 1;
                } else {
                    luaL_addchar(&b, '$');
                    luaL_addchar(&b, r[i]);
                }
                if (group >= 0 && (uint32_t)group <= re->ncaptures && ov[2 * group] != PCRE2_UNSET)
                    luaL_addlstring(&b, subj + ov[2 * group], ov[2 * group + 1] - ov[2 * group]);
            }
        } else {
            /* The callback may run other patterns, which reuse the match
             * data: the captures table holds what we need first. */
            if (rt == LUA_TFUNCTION) {
                lua_pushvalue(L, 3);
                push_captures(L, re, subj, ov);
                lua_call(L, 1, 1);
            } else {
                lua_pushlstring(L, subj + s, e - s);
                lua_gettable(L, 3);
            }
            if (!lua_toboolean(L, -1)) {
                lua_pop(L, 1);
                lua_pushlstring(L, subj + s, e - s); /* keep the original */
            } else if (!lua_isstring(L, -1)) {
                return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
            }
            luaL_addvalue(&b);
        }
        copied = e;
        pos = advance(subj, len, s, e);
    }
    if (copied < len) luaL_addlstring(&b, subj + copied, len - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, count);
    return 2;
}

/* api.regex.split(subject, pattern [, flags]) -> { pieces } */
static int regex_split(lua_State *L) {
    size_t len, pos = 0, start = 0;
    PCRE2_SIZE *ov;
    lua_Integer n = 0;
    const char *subj = luaL_checklstring(L, 1, &len);
    const struct gw_regex *re = check_regex(L, 2, 3);
    lua_newtable(L);
    while (pos <= len && exec_or_raise(L, re, subj, len, pos, &ov) > 0) {
        size_t s = ov[0], e = ov[1];
        if (e == s && s == start && s < len) { /* empty match at a piece start */
            pos = advance(subj, len, s, e);
            if (pos > len) break;
            continue;
        }
        if (e == s && s >= len) break;
        lua_pushlstring(L, subj + start, s - start);
        lua_rawseti(L, -2, ++n);
        start = e;
        pos = advance(subj, len, s, e);
    }
    lua_pushlstring(L, subj + start, len - start);
    lua_rawseti(L, -2, ++n);
    return 1;
}

static const luaL_Reg regex_funcs[] = {
    {"match", regex_match}, {"test", regex_test}, {"gsub", regex_gsub},
    {"split", regex_split}, {NULL, NULL}};

int gw_open_regex(lua_State *L) {
    luaL_newlib(L, regex_funcs);
    return 1;
}
