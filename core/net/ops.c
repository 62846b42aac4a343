/* See ops.h. A request's path is compared with the three configured paths
 * (a length and a memcmp each), the only cost the endpoints add to other
 * requests. */
#include "net/ops.h"
#include "base/gw.h"
#include "base/metrics.h"
#include "runtime/drain.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int same(const char *want, const char *path, size_t len) {
    return want[0] && strlen(want) == len && memcmp(want, path, len) == 0;
}

enum gw_ops_kind gw_ops_route(const struct gw_config *cfg, const char *path, size_t len, int metrics_here) {
    if (same(cfg->health_path, path, len)) return GW_OPS_HEALTH;
    if (same(cfg->ready_path, path, len)) return GW_OPS_READY;
    if (metrics_here && same(cfg->metrics_path, path, len)) return GW_OPS_METRICS;
    return GW_OPS_NONE;
}

int gw_ops_ready(int stopping, char *body, size_t len, size_t *blen) {
    int redis = gw_metrics.redis_connected;
    int n;
    if (redis && !stopping) {
        n = snprintf(body, len, "{\"status\":\"ready\",\"redis\":true,\"draining\":false}");
    } else {
        n = snprintf(body, len, "{\"status\":\"unavailable\",\"redis\":%s,\"draining\":%s,\"errors\":[%s%s%s]}",
                     redis ? "true" : "false", stopping ? "true" : "false",
                     redis ? "" : "\"redis is not connected\"", !redis && stopping ? "," : "",
                     stopping ? "\"the server is shutting down\"" : "");
    }
    *blen = n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
    return redis && !stopping ? 200 : 503;
}

static void set_number(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_integer(lua_State *L, const char *k, long long v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

void gw_ops_push_figures(lua_State *L) {
    const struct gw_metrics *m = &gw_metrics;
    lua_createtable(L, 0, 19);
    set_integer(L, "connectionsHttp", m->conns[GW_METRICS_HTTP]);
    set_integer(L, "connectionsWebsocket", m->conns[GW_METRICS_WEBSOCKET]);
    set_integer(L, "connectionsSocket", m->conns[GW_METRICS_SOCKET]);
    set_integer(L, "pendingActions", gw_drain_count(GW_DRAIN_CALLS));
    set_integer(L, "redisConnected", m->redis_connected);
    set_integer(L, "redisSubscriberConnected", m->redis_subscriber_connected);
    set_integer(L, "clusterPublished", (long long)m->cluster_published);
    set_integer(L, "clusterReceived", (long long)m->cluster_received);
    /* Cumulative, as the exposition format has them; the last is +Inf. */
    lua_createtable(L, GW_METRICS_REDIS_BUCKETS + 1, 0);
    unsigned long long cum = 0;
    for (int i = 0; i <= GW_METRICS_REDIS_BUCKETS; i++) {
        cum += m->redis_buckets[i];
        lua_pushinteger(L, (lua_Integer)cum);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "redisBuckets");
    lua_createtable(L, GW_METRICS_REDIS_BUCKETS, 0);
    for (int i = 0; i < GW_METRICS_REDIS_BUCKETS; i++) {
        lua_pushnumber(L, gw_metrics_redis_bounds[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "redisBounds");
    set_integer(L, "redisCount", (long long)m->redis_count);
    set_number(L, "redisSum", m->redis_sum);
    set_integer(L, "redisErrorsReply", (long long)m->redis_errors[GW_METRICS_REDIS_REPLY]);
    set_integer(L, "redisErrorsTimeout", (long long)m->redis_errors[GW_METRICS_REDIS_TIMEOUT]);
    set_integer(L, "redisErrorsUnavailable", (long long)m->redis_errors[GW_METRICS_REDIS_UNAVAILABLE]);
    set_integer(L, "workerRestarts", m->worker_restarts ? *m->worker_restarts : 0);
    set_integer(L, "worker", m->worker);
    set_integer(L, "pid", (long long)getpid());
    set_number(L, "startTime", m->start_wall_ms / 1000.0);
    set_number(L, "now", gw_wall_ms() / 1000.0);
}
