/* See cli.h. The file-system functions are the few a generator needs
 * that Lua lacks: mkdir, and the entries of a folder hidden ones included
 * (gateway.core's readdir skips those). */
#include "runtime/cli.h"
#include "base/gw.h"
#include "runtime/runtime.h"
#include "vm/libs.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* fs.mkdir(path) -> true | nil, err  (an existing folder is an error) */
static int fs_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (mkdir(path, 0755) != 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.entries(path) -> count of entries, hidden ones included |
 * nil, "missing" | nil, "not a folder" | nil, err */
static int fs_entries(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    luaL_pushfail(L);
    if (stat(path, &st) != 0) {
        lua_pushstring(L, errno == ENOENT ? "missing" : strerror(errno));
        return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
        lua_pushliteral(L, "not a folder");
        return 2;
    }
    DIR *d = opendir(path);
    if (!d) {
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_Integer n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    closedir(d);
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg fs[] = {{"mkdir", fs_mkdir}, {"entries", fs_entries}, {NULL, NULL}};

struct cli {
    const char *name;
    int argc;
    char **argv;
    int status;
};

static int cli_main(lua_State *L) {
    struct cli *c = lua_touserdata(L, 1);
    luaL_openlibs(L);
    const char *dir = gw_runtime_lua_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    luaL_requiref(L, "gateway.core", gw_open_core, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, c->name);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, c->argc, 0);
    for (int i = 0; i < c->argc; i++) {
        lua_pushstring(L, c->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    luaL_newlib(L, fs);
    lua_call(L, 2, 1);
    c->status = (int)luaL_optinteger(L, -1, 0);
    return 0;
}

int gw_cli_run(const char *name, int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "gateway: not enough memory\n");
        return 1;
    }
    struct cli c = {name, argc, argv, 1};
    lua_pushcfunction(L, cli_main);
    lua_pushlightuserdata(L, &c);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "gateway: %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        c.status = 1;
    }
    lua_close(L);
    return c.status;
}
