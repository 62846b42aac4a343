/* gateway.lua: load the file, check every key against the schema, apply
 * environment and command-line overrides, fill defaults, resolve relative
 * paths against the config file's folder (SPEC §1-§2). */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <lua.h>

/* What C needs from the config; the full table stays in Lua (api.config). */
struct gw_config {
    char name[128];
    int workers;
    int web_enabled, web_port, metadata;
    char web_host[256], api_path[128], files_path[128];
    long max_body_size;
    long max_header_size; /* request line and headers, bytes */
    int max_headers;      /* header fields per request */
    int ws_enabled;
    char ws_path[256];
    long ws_max_message;
    int socket_enabled, socket_port;
    char socket_host[256];
    long max_line_length;
    long action_timeout, cpu_timeout, shutdown_timeout;
    long lua_memory_limit; /* bytes; 0: none */
    int simultaneous_actions;
    long max_output_buffer; /* bytes queued for a persistent client */
    int log_level, log_json;
    char redis_url[1024];
    long redis_command_timeout; /* ms; 0: none */
    char config_dir[4096];
    char public_dir[4096];  /* paths.public, absolute */
};

/* Overrides from the command line (NULL or -1 when not given). The
 * environment (GATEWAY_PORT, GATEWAY_REDIS_URL, GATEWAY_LOG_LEVEL) is read
 * by gw_config_load itself and sits between these and the file. */
struct gw_config_overrides {
    const char *host;
    int port;
    int workers;
    const char *redis_url;
    const char *log_level;
};

/* Load 'path' (NULL: built-in defaults only, relative to the cwd).
 * [-0, +1, m] On success pushes the completed config table onto L, fills
 * 'out' and returns GW_OK. On error pushes nothing, writes one line
 * "file:line: key: reason" into 'err' and returns GW_ERR. */
int gw_config_load(lua_State *L, const char *path, const struct gw_config_overrides *ov,
                   struct gw_config *out, char *err, size_t errlen);

#endif
