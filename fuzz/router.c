/* libFuzzer target for route and handler matching: the routes and message
 * handlers of fuzz/project are loaded, and each input names a request
 *   method byte, then "path \n route \n action"
 * The path (as after /api/, still %-encoded, then decoded as the HTTP
 * layer does) goes to gateway.registry.router.resolve with the method; the
 * route and action go to gateway.registry.handlers.resolve, as a WebSocket
 * or TCP message's route does. Neither may raise, and each must answer in
 * its documented shapes.
 * Build and run: make fuzz-run FUZZ_TARGETS=router (FUZZ_SECONDS=N). */
#include <stddef.h>
#include <stdint.h>

#include "base/query.h"
#include "runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD",
                                      "OPTIONS", "get", "BREW", ""};

static const char resolve_src[] =
    "local rt = require('gateway.runtime').rt\n"
    "local router = require('gateway.registry.router')\n"
    "local handlers = require('gateway.registry.handlers')\n"
    "return function(method, rest, raw, route, name)\n"
    "  local params = {}\n"
    "  if name ~= '' then params.action = name end\n"
    "  local extension = rest:match('%.([^./]+)$')\n"
    "  local n, a, b, c = router.resolve(rt.reg, method, rest, raw, params, extension)\n"
    "  if n == nil then\n"
    "    assert(type(a) == 'string' and b == 405, 'resolve: nil without a 405')\n"
    "  else\n"
    "    assert(type(n) == 'string', 'resolve: the name is not a string')\n"
    "    assert(a == nil or type(a) == 'table', 'resolve: params not a table')\n"
    "    assert(c == nil or type(c) == 'table', 'resolve: handler action not a table')\n"
    "  end\n"
    "  for k in pairs(params) do assert(type(k) == 'string', 'a param key is not a string') end\n"
    "  local act, p, pattern = handlers.resolve(rt.reg.handlerIndex, route, name)\n"
    "  if act == nil then\n"
    "    assert(type(p) == 'string' and (pattern == 404 or pattern == 405), 'handlers: bad error')\n"
    "  else\n"
    "    assert(type(act) == 'table' and type(p) == 'table' and type(pattern) == 'string',\n"
    "      'handlers: bad match')\n"
    "  end\n"
    "  local act2 = handlers.resolve(rt.reg.handlerIndex, raw, nil, method)\n"
    "  assert(act2 == nil or type(act2) == 'table')\n"
    "end\n";

static int resolve_ref = LUA_NOREF;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    fuzz_runtime();
    lua_State *L = fuzz_state();
    if (resolve_ref == LUA_NOREF) {
        if (luaL_loadstring(L, resolve_src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) abort();
        resolve_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    const char *method = methods[data[0] % (sizeof methods / sizeof *methods)];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *parts[3] = {"", "", ""};
    size_t lens[3] = {0, 0, 0};
    for (int i = 0; i < 3 && p <= end; i++) {
        const char *nl = i < 2 ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        parts[i] = p;
        lens[i] = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!nl) break;
        p = nl + 1;
    }
    char *rest = malloc(lens[0] + 1);
    if (!rest) return 0;
    long rl = gw_url_decode_strict(parts[0], lens[0], rest);
    if (rl < 0 || !gw_utf8_valid(rest, (size_t)rl)) { /* the HTTP layer answers 400 */
        free(rest);
        return 0;
    }
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, resolve_ref);
    lua_pushstring(L, method);
    lua_pushlstring(L, rest, (size_t)rl);
    lua_pushlstring(L, parts[0], lens[0]);
    lua_pushlstring(L, parts[1], lens[1]);
    lua_pushlstring(L, parts[2], lens[2]);
    free(rest);
    if (gw_vm_pcall(gw_runtime_vm(fuzz_rt), 5, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, top);
    return 0;
}
