/* The operations endpoints of the web listener (docs/operations.md):
 * /health, /ready and /metrics, answered before routes and middleware.
 * This file knows the paths, the readiness rule and the figures the core
 * counts; net/http.c writes the answers, and the Lua runtime renders the
 * metrics text (lua/gateway/transport/metrics.lua). */
#ifndef GW_OPS_H
#define GW_OPS_H

#include <lua.h>
#include <stddef.h>

#include "vm/config.h"

enum gw_ops_kind { GW_OPS_NONE, GW_OPS_HEALTH, GW_OPS_READY, GW_OPS_METRICS };

/* Which endpoint the decoded 'path' names, if any; /metrics only where
 * 'metrics_here' (the web listener when the metrics have no listener of
 * their own, or that listener). */
enum gw_ops_kind gw_ops_route(const struct gw_config *cfg, const char *path, size_t len, int metrics_here);

/* The /ready answer: 200 or 503, its JSON body in 'body' ('stopping': the
 * server drains). */
int gw_ops_ready(int stopping, char *body, size_t len, size_t *blen);

/* [-0, +1, m] Push the core's figures for the metrics text: connections by
 * transport, actions in flight, the Redis client's state, latencies and
 * errors, worker restarts, the process's pid and start time. */
void gw_ops_push_figures(lua_State *L);

#endif
