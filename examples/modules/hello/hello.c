/* The smallest gateway module: api.hello.greet(name) -> "Hello, <name>!".
 * The greeting comes from its config: config = { greeting = "Hello" }.
 * Build: make modules (build/modules/hello.so). See docs/c-api.md. */
#include <gateway.h>

#include <lauxlib.h>

GATEWAY_MODULE_DECLARE();

static const char *greeting = "Hello"; /* owned by the gateway once read */

/* api.hello.greet(name) -> string */
static int hello_greet(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    lua_pushfstring(L, "%s, %s!", greeting, name);
    return 1;
}

int gateway_module_init(struct gateway_module *m) {
    greeting = gateway_config_string(m, "greeting", "Hello");
    if (gateway_register_function(m, "greet", hello_greet) != 0) return -1;
    gateway_log(m, GATEWAY_LOG_INFO, "loaded, greeting \"%s\"", greeting);
    return 0;
}

void gateway_module_free(struct gateway_module *m) {
    gateway_log(m, GATEWAY_LOG_DEBUG, "unloading");
    greeting = "Hello";
}
