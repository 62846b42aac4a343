/* See metrics.h. */
#include "base/metrics.h"

const double gw_metrics_redis_bounds[GW_METRICS_REDIS_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};

struct gw_metrics gw_metrics = {.worker = -1};

void gw_metrics_redis_latency(double seconds) {
    int i = 0;
    while (i < GW_METRICS_REDIS_BUCKETS && seconds > gw_metrics_redis_bounds[i]) i++;
    gw_metrics.redis_buckets[i]++;
    gw_metrics.redis_count++;
    gw_metrics.redis_sum += seconds;
}
