/* Redis Sentinel: where the master named redis.masterName is now. Asks
 * the sentinels in turn (SENTINEL get-master-addr-by-name), listens to
 * one of them for +switch-master and asks again every few seconds as a
 * backstop, and tells the clients that watch it where the master is.
 * Connecting to the master and checking its ROLE are left to redis.c. */
#ifndef GW_SENTINEL_H
#define GW_SENTINEL_H

#include <stddef.h>
#include <uv.h>

#define GW_SENTINEL_MAX 16        /* sentinels in redis.sentinels */
#define GW_SENTINEL_PORT 26379    /* when an address names none */
#define GW_SENTINEL_ASK_MS 500    /* one sentinel's answer, connect included */
#define GW_SENTINEL_POLL_MS 5000  /* the backstop: ask again this often */
#define GW_SENTINEL_RETRY_MS 1000 /* the +switch-master listener's next try after a failure */

struct gw_sentinel;
struct gw_sentinel_ask;
struct gw_sentinel_watch;

/* One entry of redis.sentinels. */
struct gw_sentinel_addr {
    int is_unix;
    char host[256];
    int port;
    char path[108]; /* sun_path's size */
};

/* What the config gives: the sentinels (n == 0: Sentinel is not used),
 * the master's name, and the sentinels' own password ("" for none). */
struct gw_sentinel_conf {
    int n;
    struct gw_sentinel_addr addr[GW_SENTINEL_MAX];
    char master[256];
    char password[512];
};

/* Parse "host:port", "[v6addr]:port", "host" (port 26379) or an absolute
 * unix socket path "/run/sentinel.sock" into 'out'. Returns GW_OK, or
 * GW_ERR with a one-line reason in 'err' ('out' untouched). */
int gw_sentinel_addr_parse(const char *s, struct gw_sentinel_addr *out, char *err, size_t errlen);

/* "127.0.0.1:26379", "[::1]:26379" or the socket path, for logs. */
void gw_sentinel_addr_describe(const struct gw_sentinel_addr *a, char *buf, size_t len);

/* The master's address ('err' NULL), or why none could be found ('host'
 * NULL): valid only during the call. */
typedef void (*gw_sentinel_fn)(void *ud, const char *host, int port, const char *err);

/* Start on 'loop' (the config is copied): the +switch-master listener
 * and the poll begin at once. Never fails; trouble is logged and retried. */
struct gw_sentinel *gw_sentinel_new(uv_loop_t *loop, const struct gw_sentinel_conf *conf);

/* Stop: pending asks get their answer with an error now, the connections
 * close, and the object is freed once its handles have closed, so the loop
 * must run on. Every watch must be gone. Accepts NULL. */
void gw_sentinel_free(struct gw_sentinel *s);

/* The master's name, for logs. */
const char *gw_sentinel_master(const struct gw_sentinel *s);

/* Ask where the master is. The sentinels are asked one at a time, the one
 * that answered last first, each for at most GW_SENTINEL_ASK_MS; asks made
 * while one is under way share its answer. 'fn' is called exactly once,
 * later (never from inside this call), unless the ask is cancelled; the
 * ask is invalid once 'fn' has been called. */
struct gw_sentinel_ask *gw_sentinel_ask(struct gw_sentinel *s, gw_sentinel_fn fn, void *ud);

/* 'fn' will not be called; 'a' is invalid afterwards. */
void gw_sentinel_cancel(struct gw_sentinel_ask *a);

/* Call 'fn' (err NULL) each time the sentinels name the master: after
 * every ask, poll and +switch-master, changed or not, so a client that is
 * elsewhere can move. Called from a timer, never from inside this call or
 * a hiredis callback. */
struct gw_sentinel_watch *gw_sentinel_watch(struct gw_sentinel *s, gw_sentinel_fn fn, void *ud);

/* Stop calling; 'w' is freed. Not from inside its own 'fn'. */
void gw_sentinel_unwatch(struct gw_sentinel_watch *w);

/* A client met a sign of a failover (a timeout, a READONLY reply): ask
 * now rather than at the next poll. Does nothing while an ask is under
 * way. Safe from inside a hiredis callback. */
void gw_sentinel_check(struct gw_sentinel *s);

#endif
