/* The "gateway.json" table (api.json): lua-cjson with the gateway's settings, plus `[]`.
 *   encode(value) -> text    decode(text) -> value
 *   null                     the value JSON null decodes to
 *   empty_array              a value that encodes as []
 * lua-cjson 2.1.0 encodes every empty table as {}, so empty_array is a
 * string token, unguessable per process, that encode rewrites to []. Each
 * call makes its own cjson instance: what users do to theirs cannot change
 * what the gateway emits. */
#include "base/gw.h"
#include "base/random.h"
#include "vm/libs.h"

#include <lauxlib.h>
#include <string.h>

/* [-0, +1] The token: NUL, a tag and 32 random hex digits, NUL. */
static void push_empty_array_token(lua_State *L) {
    static const char tag[] = "\0gw:empty_array:";
    char token[sizeof tag - 1 + 32 + 1];
    memcpy(token, tag, sizeof tag - 1);
    if (gw_random_hex(token + sizeof tag - 1) != GW_OK) luaL_error(L, "cannot read /dev/urandom");
    token[sizeof token - 1] = '\0';
    lua_pushlstring(L, token, sizeof token);
}

/* encode(value): upvalue 1 is cjson's encode, 2 the token as cjson writes
 * it ("\u0000gw:...\u0000", quotes included). */
static int json_encode(lua_State *L) {
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    size_t len, mlen;
    const char *text = lua_tolstring(L, 1, &len);
    const char *marker = lua_tolstring(L, lua_upvalueindex(2), &mlen);
    const char *hit = memmem(text, len, marker, mlen);
    if (!hit) return 1;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *p = text, *end = text + len;
    for (; hit; hit = memmem(p, (size_t)(end - p), marker, mlen)) {
        luaL_addlstring(&b, p, (size_t)(hit - p));
        luaL_addlstring(&b, "[]", 2);
        p = hit + mlen;
    }
    luaL_addlstring(&b, p, (size_t)(end - p));
    luaL_pushresult(&b);
    return 1;
}

/* [-0, +0] cjson[name](arg) */
static void configure(lua_State *L, int cjson, const char *name, int boolean, const char *str) {
    lua_getfield(L, cjson, name);
    if (str) lua_pushstring(L, str);
    else lua_pushboolean(L, boolean);
    lua_call(L, 1, 0);
}

int gw_open_json(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    int cjson = lua_gettop(L);
    configure(L, cjson, "encode_sparse_array", 1, NULL);
    configure(L, cjson, "encode_invalid_numbers", 0, "null");
    configure(L, cjson, "decode_invalid_numbers", 0, NULL);

    lua_createtable(L, 0, 4);
    push_empty_array_token(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "empty_array");
    /* How encode writes the token: every NUL as \u0000, in quotes. */
    size_t tlen;
    const char *t = lua_tolstring(L, -1, &tlen);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '"');
    for (size_t i = 0; i < tlen; i++) {
        if (t[i] == '\0') luaL_addstring(&b, "\\u0000");
        else luaL_addchar(&b, t[i]);
    }
    luaL_addchar(&b, '"');
    luaL_pushresult(&b);
    lua_remove(L, -2); /* the token */
    lua_getfield(L, cjson, "encode");
    lua_insert(L, -2);
    lua_pushcclosure(L, json_encode, 2);
    lua_setfield(L, -2, "encode");
    lua_getfield(L, cjson, "decode");
    lua_setfield(L, -2, "decode");
    lua_getfield(L, cjson, "null");
    lua_setfield(L, -2, "null");
    lua_remove(L, cjson);
    lua_remove(L, cjson - 1); /* the cjson module */
    return 1;
}
