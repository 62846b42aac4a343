/* gateway.lua: load the file, check every key against the schema, apply
 * environment and command-line overrides, fill defaults, resolve relative
 * paths against the config file's folder (SPEC §1-§2). */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <lua.h>

#include "base/cidr.h"
#include "base/sentinel.h"

/* What C needs from the config; the full table stays in Lua (api.config). */
struct gw_config {
    char name[128];
    int workers;
    int web_enabled, web_port, metadata;
    char web_host[256], api_path[128], files_path[128];
    long max_body_size;
    long max_header_size; /* request line and headers, bytes */
    int max_headers;      /* header fields per request */
    /* ms: the request head from its first byte; between two reads of a body; an idle
     * keep-alive connection; a client not taking its answer. Bytes/s: a body's least
     * average rate after its first 5 s (0: none). */
    long header_timeout, body_timeout, keep_alive_timeout, send_timeout, min_body_rate;
    /* HTTP/2: served at all; SETTINGS_MAX_CONCURRENT_STREAMS; SETTINGS_INITIAL_WINDOW_SIZE. */
    int h2_enabled;
    long h2_max_streams, h2_window;
    /* The operations endpoints (net/ops.c), "" when off (metrics.enabled =
     * false empties metrics_path); who may read /metrics; the proxies whose
     * X-Forwarded-For names the client. */
    char health_path[128], ready_path[128], metrics_path[128];
    struct gw_cidr_list metrics_allow, trusted_proxies;
    /* The metrics listener of its own (servers.web.metrics.host/port): port
     * -1 when /metrics is served on the web listener. */
    char metrics_host[256];
    int metrics_port;
    /* servers.web.tls: absolute paths ("" when TLS is off), "1.2" or "1.3",
     * the plain redirect listener's port (-1: none). */
    char tls_cert[4096], tls_key[4096];
    char tls_min_version[8];
    int tls_redirect_port;
    int ws_enabled;
    char ws_path[256];
    long ws_max_message;
    long ws_ping_interval, ws_pong_timeout; /* ms; ping 0: no pings */
    long ws_fragment_timeout;               /* ms to complete a message; 0: none */
    int socket_enabled, socket_port;
    char socket_host[256];
    long max_line_length;
    long line_timeout; /* ms to complete a started line; 0: none */
    long idle_timeout; /* ms a silent client is kept; 0: forever */
    long action_timeout, cpu_timeout, shutdown_timeout;
    long lua_memory_limit; /* bytes; 0: none */
    int simultaneous_actions;
    long max_output_buffer; /* bytes queued for a persistent client */
    long max_connections;        /* client connections per worker, every transport */
    long max_connections_per_ip; /* ... from one address (0: no limit) */
    int log_level, log_json;
    char redis_url[1024];
    long redis_command_timeout; /* ms; 0: none */
    long redis_max_pending;     /* commands waiting for Redis; past it new ones fail */
    unsigned long redis_allow;  /* redis.allowCommands as gw_redis_allow's mask */
    struct gw_sentinel_conf redis_sentinel; /* redis.sentinels...; n == 0: none */
    int cluster_enabled;        /* the pub/sub connection and presence (docs/realtime.md) */
    long cluster_heartbeat;     /* ms between this worker's beats (and sweeps) */
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

/* Re-read 'path' with the same overrides for a reload (SIGHUP), against
 * the config table in force at index 'current'. Each changed key that can
 * change live is copied into that table, with a log line; each other
 * changed key is left as it is, with a log line saying it needs a restart.
 * Then 'out' is filled again from the table. Returns GW_OK; on a file that
 * fails to load, GW_ERR with the reason in 'err', and nothing changed.
 * [-0, +0, m] */
int gw_config_reload(lua_State *L, int current, const char *path,
                     const struct gw_config_overrides *ov, struct gw_config *out, char *err,
                     size_t errlen);

#endif
