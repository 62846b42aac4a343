/* The figures the core counts for /metrics (docs/operations.md): open
 * connections by transport, the Redis client's state, command latencies
 * and errors, worker restarts and the process start time. One loop runs
 * per process, so they are plain numbers of the process, updated where
 * the event happens (a connection opens or closes, a command completes)
 * and read only when /metrics is scraped. Counting per action is left to
 * the Lua runtime (lua/gateway/pipeline/metrics.lua). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

enum gw_metrics_conn { GW_METRICS_HTTP, GW_METRICS_WEBSOCKET, GW_METRICS_SOCKET, GW_METRICS_CONN_KINDS };

/* Upper bounds (seconds) of the Redis command latency histogram. */
#define GW_METRICS_REDIS_BUCKETS 15
extern const double gw_metrics_redis_bounds[GW_METRICS_REDIS_BUCKETS];

enum gw_metrics_redis_error {
    GW_METRICS_REDIS_REPLY,       /* Redis answered with an error reply */
    GW_METRICS_REDIS_TIMEOUT,     /* no reply within redis.commandTimeout */
    GW_METRICS_REDIS_UNAVAILABLE, /* not connected, connection lost, or redis.maxPending full */
    GW_METRICS_REDIS_ERROR_KINDS
};

struct gw_metrics {
    double start_wall_ms;               /* when this process started serving */
    long conns[GW_METRICS_CONN_KINDS];  /* open now */
    int redis_connected;
    /* The cluster (issue 17): the pub/sub connection's state, and the
     * cluster messages this worker published and received. */
    int redis_subscriber_connected;
    unsigned long long cluster_published, cluster_received;
    /* Commands that got a reply: counts per bucket (not cumulative; the
     * last is +Inf), their number and the sum of their latencies. */
    unsigned long long redis_buckets[GW_METRICS_REDIS_BUCKETS + 1];
    unsigned long long redis_count;
    double redis_sum;
    unsigned long long redis_errors[GW_METRICS_REDIS_ERROR_KINDS];
    /* Worker restarts the master made, live: the master keeps the count in
     * a page it shares with its workers (NULL without a master). */
    volatile long *worker_restarts;
    int worker;                         /* this worker's index; -1 without a master */
};

extern struct gw_metrics gw_metrics;

/* A Redis command got its reply after 'seconds'. */
void gw_metrics_redis_latency(double seconds);

#endif
