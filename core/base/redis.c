/* See redis.h. One hiredis async context at a time, in one of four
 * states: DOWN (waiting to retry), CONNECTING (connect, AUTH, SELECT and
 * a PING in flight; user commands wait in our queue), READY, STOPPED.
 * Every user command is a gw_redis_cmd on one list in issue order: sent
 * ones first (Redis answers them in that order), then queued ones. With
 * one timeout for all, deadlines grow along the list, so one timer armed
 * for the oldest command that has not timed out covers them all. A
 * command whose caller left (cancel, timeout) stays on the list with no
 * callback until its reply comes, so the reply finds it and is dropped.
 * The context sits on the loop through redis_poll.c.
 * A subscriber (gw_redis_new_subscriber) is the same client with no user
 * commands: once READY it sends SUBSCRIBE for each of its channels, and
 * again after every reconnect. */
#include "base/redis.h"
#include "base/redis_poll.h"
#include "base/sentinel.h"
#include "base/metrics.h"
#include "base/gw.h"
#include "base/log.h"
#include "base/query.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 1000
#define CONNECT_TIMEOUT_MS 2000 /* connect, AUTH, SELECT and PING of one attempt */
/* Sent commands that time out one after another, with no reply between
 * them, before the connection is taken for dead (a stopped or black-holed
 * Redis) and replaced: everything on it fails at once instead of queueing
 * for ever, and new commands fail fast until a new connection is ready. */
#define RESET_AFTER_TIMEOUTS 3

enum state { ST_DOWN, ST_CONNECTING, ST_READY, ST_STOPPED };

struct gw_redis_cmd {
    struct gw_redis_cmd *prev, *next;
    struct gw_redis *r;
    gw_redis_reply_fn fn; /* NULL once the caller left: the reply is dropped */
    void *ud;
    uint64_t deadline;    /* uv_now() ms; unused without a timeout */
    double sent_ms;       /* gw_now_ms() when the caller sent it, for its latency */
    char *queued;         /* the formatted command until it is sent */
    size_t queued_len;
};

struct gw_redis {
    uv_loop_t *loop;
    /* A subscriber's: its channels, and where their messages go. */
    int subscriber;
    char **channels;
    size_t nchannels;
    int subs_waiting;            /* SUBSCRIBE confirmations still due after a connect */
    gw_redis_message_fn on_message;
    void *message_ud;
    struct gw_redis_url url;
    char name[1024];             /* the URL without its password */
    long timeout_ms;
    long max_pending;            /* commands on the list; past it new ones fail */
    long npending;
    int timeouts_in_row;         /* sent commands timed out since the last reply */
    int full_logged;             /* the current overload was logged already */
    enum state state;
    redisAsyncContext *ac;       /* NULL when DOWN or STOPPED */
    int handshake_failed;
    uv_timer_t conn_timer;       /* DOWN: next attempt; CONNECTING: gives up on it */
    uv_timer_t cmd_timer;        /* the deadline of 'cursor' */
    uint64_t retry_ms;
    int outage_logged;           /* the current outage was logged once already */
    struct gw_redis_cmd pending; /* list head */
    struct gw_redis_cmd *cursor; /* oldest command not yet timed out, or &pending */
    int open_handles;
    /* With redis.sentinels: where the master is (url's host and port are
     * its last known address), the ask under way, and the watch that says
     * when it moved ('moved': conn_timer is to leave this one). */
    struct gw_sentinel *sentinel;
    struct gw_sentinel_ask *ask;
    struct gw_sentinel_watch *watch;
    int moved;
    int role_warned;             /* ROLE was refused (NOPERM): logged once */
};

static void connect_start(struct gw_redis *r);

/* The gauge of this client's state: the command connection's, or the
 * subscriber's. */
static void set_connected(struct gw_redis *r, int up) {
    if (r->subscriber) gw_metrics.redis_subscriber_connected = up;
    else gw_metrics.redis_connected = up;
}

/* --- URL ---------------------------------------------------------------- */

/* Percent-decode src[0..n) into 'out' as a C string. GW_ERR on a bad
 * escape, a NUL, or when it does not fit. */
static int decode(const char *src, size_t n, char *out, size_t outlen) {
    if (n >= outlen) {
        /* Escapes shrink it: decode a copy to see whether it fits. */
        char *tmp = malloc(n);
        if (!tmp) return GW_ERR;
        long m = gw_url_decode_strict(src, n, tmp);
        int ok = m >= 0 && (size_t)m < outlen && !memchr(tmp, 0, (size_t)m);
        if (ok) {
            memcpy(out, tmp, (size_t)m);
            out[m] = '\0';
        }
        free(tmp);
        return ok ? GW_OK : GW_ERR;
    }
    long m = gw_url_decode_strict(src, n, out);
    if (m < 0 || memchr(out, 0, (size_t)m)) return GW_ERR;
    out[m] = '\0';
    return GW_OK;
}

static int parse_number(const char *s, size_t n, long lo, long hi, long *out) {
    long v = 0;
    if (n == 0 || n > 10) return GW_ERR;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return GW_ERR;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return GW_ERR;
    *out = v;
    return GW_OK;
}

static int url_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int url_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return GW_ERR;
}

/* "db=N&password=P&user=U" */
static int parse_query(const char *q, struct gw_redis_url *u, char *err, size_t errlen) {
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (n > 0) {
            if (!eq) return url_fail(err, errlen, "query parameter \"%.*s\" needs a value", (int)n, q);
            size_t klen = (size_t)(eq - q), vlen = n - klen - 1;
            long db;
            if (klen == 2 && memcmp(q, "db", 2) == 0) {
                if (parse_number(eq + 1, vlen, 0, INT_MAX, &db) != GW_OK)
                    return url_fail(err, errlen, "db must be a number, got \"%.*s\"", (int)vlen, eq + 1);
                u->db = (int)db;
            } else if (klen == 8 && memcmp(q, "password", 8) == 0) {
                if (decode(eq + 1, vlen, u->password, sizeof u->password) != GW_OK)
                    return url_fail(err, errlen, "password: bad percent-escape or too long");
            } else if (klen == 4 && memcmp(q, "user", 4) == 0) {
                if (decode(eq + 1, vlen, u->user, sizeof u->user) != GW_OK)
                    return url_fail(err, errlen, "user: bad percent-escape or too long");
            } else {
                return url_fail(err, errlen, "unknown query parameter \"%.*s\" (db, password, user)", (int)klen, q);
            }
        }
        q += n;
        if (*q == '&') q++;
    }
    return GW_OK;
}

/* [user]:password before the '@' */
static int parse_userinfo(const char *s, size_t n, struct gw_redis_url *u, char *err, size_t errlen) {
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return url_fail(err, errlen, "put the password after a colon: redis://:password@host or "
                        "redis://user:password@host");
    size_t ulen = (size_t)(colon - s);
    if (decode(s, ulen, u->user, sizeof u->user) != GW_OK)
        return url_fail(err, errlen, "user: bad percent-escape or too long");
    if (decode(colon + 1, n - ulen - 1, u->password, sizeof u->password) != GW_OK)
        return url_fail(err, errlen, "password: bad percent-escape or too long");
    return GW_OK;
}

/* host[:port][/db] or [v6][:port][/db] in s[0..n) */
static int parse_hostpart(const char *s, size_t n, struct gw_redis_url *u, char *err, size_t errlen) {
    const char *end = s + n, *host = s, *host_end, *p;
    if (n && *s == '[') {
        host = s + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) return url_fail(err, errlen, "missing ']' after an IPv6 address");
        p = host_end + 1;
    } else {
        host_end = s;
        while (host_end < end && *host_end != ':' && *host_end != '/') host_end++;
        p = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0) return url_fail(err, errlen, "no host (redis://host:port/db)");
    if (hlen >= sizeof u->host) return url_fail(err, errlen, "host name too long");
    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';
    if (p < end && *p == ':') {
        const char *ps = ++p;
        while (p < end && *p != '/') p++;
        long port;
        if (parse_number(ps, (size_t)(p - ps), 1, 65535, &port) != GW_OK)
            return url_fail(err, errlen, "port must be a number from 1 to 65535, got \"%.*s\"",
                            (int)(p - ps), ps);
        u->port = (int)port;
    }
    if (p < end && *p != '/') return url_fail(err, errlen, "unexpected \"%.*s\" after the host", (int)(end - p), p);
    if (p < end) p++; /* the '/' */
    if (p < end) {
        long db;
        if (parse_number(p, (size_t)(end - p), 0, INT_MAX, &db) != GW_OK)
            return url_fail(err, errlen, "the database after '/' must be a number, got \"%.*s\"",
                            (int)(end - p), p);
        u->db = (int)db;
    }
    return GW_OK;
}

int gw_redis_url_parse(const char *url, struct gw_redis_url *out, char *err, size_t errlen) {
    struct gw_redis_url u;
    memset(&u, 0, sizeof u);
    u.port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        size_t n = strcspn(p, "?");
        u.is_unix = 1;
        if (n == 0 || p[0] != '/')
            return url_fail(err, errlen, "the socket path must be absolute: unix:///path/to/redis.sock");
        if (n >= sizeof u.path)
            return url_fail(err, errlen, "the socket path is too long (at most %d bytes)", (int)sizeof u.path - 1);
        memcpy(u.path, p, n);
        u.path[n] = '\0';
        if (p[n] == '?' && parse_query(p + n + 1, &u, err, errlen) != GW_OK) return GW_ERR;
    } else if (strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8;
        size_t n = strcspn(p, "?");
        /* The last '@' ends the password, so '@', ':' and '/' may appear
         * in it unescaped; '?' and '%' must be percent-escaped. */
        const char *at = NULL;
        for (const char *q = p; q < p + n; q++)
            if (*q == '@') at = q;
        if (at && parse_userinfo(p, (size_t)(at - p), &u, err, errlen) != GW_OK) return GW_ERR;
        const char *hp = at ? at + 1 : p;
        if (parse_hostpart(hp, (size_t)(p + n - hp), &u, err, errlen) != GW_OK) return GW_ERR;
        if (p[n] == '?' && parse_query(p + n + 1, &u, err, errlen) != GW_OK) return GW_ERR;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        return url_fail(err, errlen, "TLS (rediss://) is not supported");
    } else {
        return url_fail(err, errlen, "must start with redis:// or unix://");
    }
    if (u.user[0] && !u.password[0])
        return url_fail(err, errlen, "a user needs a password");
    *out = u;
    return GW_OK;
}

void gw_redis_url_describe(const struct gw_redis_url *u, char *buf, size_t len) {
    if (u->is_unix) {
        gw_fmt(buf, len, "unix://%s?db=%d%s%s%s", u->path, u->db, u->user[0] ? "&user=" : "", u->user,
               u->password[0] ? "&password=***" : "");
        return;
    }
    int v6 = strchr(u->host, ':') != NULL;
    gw_fmt(buf, len, "redis://%s%s%s%s%s:%d/%d", u->user, u->password[0] ? ":***@" : "",
           v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}

/* --- commands the shared connection cannot take ------------------------- */

static int arg_is(const char *arg, size_t len, const char *name) {
    return strlen(name) == len && strncasecmp(arg, name, len) == 0;
}

/* A blocking command's timeout argument is zero: it would wait forever,
 * holding up every command behind it on the shared connection. */
static int zero_timeout(const char *arg, size_t len) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, arg, len);
    buf[len] = '\0';
    char *end;
    double d = strtod(buf, &end);
    return *end == '\0' && d == 0;
}

/* XREAD [COUNT n] [BLOCK ms] STREAMS ... and XREADGROUP GROUP g c [COUNT n]
 * [BLOCK ms] [NOACK] STREAMS ...: BLOCK 0 waits forever. */
static int xread_blocks_forever(int argc, const char **argv, const size_t *argvlen) {
    for (int i = 1; i < argc;) {
        if (arg_is(argv[i], argvlen[i], "streams")) return 0;
        if (arg_is(argv[i], argvlen[i], "group")) i += 3;
        else if (arg_is(argv[i], argvlen[i], "count")) i += 2;
        else if (arg_is(argv[i], argvlen[i], "block"))
            return i + 1 < argc && zero_timeout(argv[i + 1], argvlen[i + 1]);
        else i++;
    }
    return 0;
}

/* Where a blocking command's timeout is. */
enum guard { G_ALWAYS, G_TIMEOUT_LAST, G_TIMEOUT_FIRST, G_XREAD };

/* Commands that stall or wreck the connection and the server every worker
 * shares, refused unless redis.allowCommands names them (gw_redis_allow).
 * A name with a space is a command and its subcommand. Each reason names
 * the command and the key, since it ends up in the action's error. */
#define HOW(name) "; to allow it, name \"" name "\" in redis.allowCommands"
static const struct guarded {
    const char *name;
    enum guard guard;
    const char *why;
} guarded[] = {
    {"FLUSHALL", G_ALWAYS, "it deletes every key of the Redis every worker shares" HOW("FLUSHALL")},
    {"FLUSHDB", G_ALWAYS, "it deletes every key of the database every worker shares" HOW("FLUSHDB")},
    {"CONFIG", G_ALWAYS, "it changes the Redis server every worker shares" HOW("CONFIG")},
    {"SHUTDOWN", G_ALWAYS, "it stops the Redis server every worker shares" HOW("SHUTDOWN")},
    {"DEBUG", G_ALWAYS, "it can stall, crash or change the Redis server every worker shares" HOW("DEBUG")},
    {"CLIENT KILL", G_ALWAYS, "it can close the connections of every worker" HOW("CLIENT KILL")},
    {"CLIENT PAUSE", G_ALWAYS, "it stalls every worker's Redis commands" HOW("CLIENT PAUSE")},
    {"WAIT", G_ALWAYS, "it holds up the shared connection until replicas answer" HOW("WAIT")},
    {"WAITAOF", G_ALWAYS, "it holds up the shared connection until the AOF is synced" HOW("WAITAOF")},
    {"SCRIPT FLUSH", G_ALWAYS, "it removes the scripts every worker relies on" HOW("SCRIPT FLUSH")},
    {"FUNCTION FLUSH", G_ALWAYS, "it removes the functions every worker relies on" HOW("FUNCTION FLUSH")},
    {"BLPOP", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BLPOP")},
    {"BRPOP", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BRPOP")},
    {"BRPOPLPUSH", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BRPOPLPUSH")},
    {"BLMOVE", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BLMOVE")},
    {"BZPOPMIN", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BZPOPMIN")},
    {"BZPOPMAX", G_TIMEOUT_LAST, "with timeout 0 it holds up the shared connection forever" HOW("BZPOPMAX")},
    {"BLMPOP", G_TIMEOUT_FIRST, "with timeout 0 it holds up the shared connection forever" HOW("BLMPOP")},
    {"BZMPOP", G_TIMEOUT_FIRST, "with timeout 0 it holds up the shared connection forever" HOW("BZMPOP")},
    {"XREAD", G_XREAD, "with BLOCK 0 it holds up the shared connection forever" HOW("XREAD")},
    {"XREADGROUP", G_XREAD, "with BLOCK 0 it holds up the shared connection forever" HOW("XREADGROUP")},
};
#undef HOW
#define NGUARDED (sizeof guarded / sizeof guarded[0])

/* Process-wide, as the config is: gw_redis_allow sets it at startup. */
static unsigned long allowed;

/* The index of the guarded entry the command is, or -1. Every Redis
 * command passes here, so the length of each name's first word is worked
 * out once and most commands are turned away by it. */
static int guarded_index(int argc, const char **argv, const size_t *argvlen) {
    static size_t first_len[NGUARDED];
    if (!first_len[0])
        for (size_t i = 0; i < NGUARDED; i++) first_len[i] = strcspn(guarded[i].name, " ");
    for (size_t i = 0; i < NGUARDED; i++) {
        const char *name = guarded[i].name;
        size_t n = first_len[i];
        if (argvlen[0] != n || strncasecmp(argv[0], name, n) != 0) continue;
        if (name[n] == ' ' && (argc < 2 || !arg_is(argv[1], argvlen[1], name + n + 1))) continue;
        return (int)i;
    }
    return -1;
}

const char *gw_redis_refuses(int argc, const char **argv, const size_t *argvlen) {
    static const char *const pubsub[] = {"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                                         "punsubscribe", "sunsubscribe", "monitor", NULL};
    static const char *const tx[] = {"multi", "exec", "discard", "watch", "unwatch", NULL};
    static const char *const conn[] = {"select", "auth", "hello", "reset", "quit", "sync", "psync", NULL};
    if (argc < 1) return "no command";
    for (int i = 0; pubsub[i]; i++)
        if (arg_is(argv[0], argvlen[0], pubsub[i]))
            return "pub/sub and MONITOR need a connection of their own, which api.redis does not offer";
    for (int i = 0; tx[i]; i++)
        if (arg_is(argv[0], argvlen[0], tx[i]))
            return "other actions' commands would land inside the transaction on the shared "
                   "connection; use EVAL or FCALL for atomic work";
    for (int i = 0; conn[i]; i++)
        if (arg_is(argv[0], argvlen[0], conn[i]))
            return "it would change the connection every action shares (the database and "
                   "password come from redis.url)";
    if (argc >= 2 && arg_is(argv[0], argvlen[0], "client") && arg_is(argv[1], argvlen[1], "reply"))
        return "replies would no longer match their commands on the shared connection";
    int g = guarded_index(argc, argv, argvlen);
    if (g < 0 || (allowed & (1UL << g))) return NULL;
    switch (guarded[g].guard) {
    case G_ALWAYS: return guarded[g].why;
    case G_TIMEOUT_LAST:
        return argc >= 2 && zero_timeout(argv[argc - 1], argvlen[argc - 1]) ? guarded[g].why : NULL;
    case G_TIMEOUT_FIRST:
        return argc >= 2 && zero_timeout(argv[1], argvlen[1]) ? guarded[g].why : NULL;
    case G_XREAD: return xread_blocks_forever(argc, argv, argvlen) ? guarded[g].why : NULL;
    }
    return NULL;
}

int gw_redis_allowable(const char *name) {
    for (size_t i = 0; i < NGUARDED; i++)
        if (strcasecmp(name, guarded[i].name) == 0) return (int)i;
    return -1;
}

const char *gw_redis_allowable_names(void) {
    static char names[512];
    if (!names[0]) {
        size_t off = 0;
        for (size_t i = 0; i < NGUARDED; i++)
            off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "", guarded[i].name);
    }
    return names;
}

void gw_redis_allow(unsigned long mask) { allowed = mask; }

/* --- the pending list and its timer ------------------------------------- */

static void cmd_unlink(struct gw_redis *r, struct gw_redis_cmd *c) {
    if (r->cursor == c) r->cursor = c->next;
    r->npending--;
    c->prev->next = c->next;
    c->next->prev = c->prev;
}

static void cmd_free(struct gw_redis_cmd *c) {
    if (c->queued) redisFreeCommand(c->queued);
    free(c);
}

static void on_cmd_timer(uv_timer_t *h);
static void reset(struct gw_redis *r);

static void arm_timer(struct gw_redis *r) {
    if (r->timeout_ms <= 0 || r->cursor == &r->pending || uv_is_active((uv_handle_t *)&r->cmd_timer))
        return;
    uint64_t now = uv_now(r->loop);
    uint64_t due = r->cursor->deadline > now ? r->cursor->deadline - now : 0;
    uv_timer_start(&r->cmd_timer, on_cmd_timer, due, 0);
}

/* Time out every command whose deadline has passed. A callback may run
 * Lua, which may send or cancel commands, so the cursor is re-read after
 * each one (cmd_unlink keeps it valid). */
static void on_cmd_timer(uv_timer_t *h) {
    struct gw_redis *r = h->data;
    uint64_t now = uv_now(r->loop);
    while (r->cursor != &r->pending && r->cursor->deadline <= now) {
        struct gw_redis_cmd *c = r->cursor;
        gw_redis_reply_fn fn = c->fn;
        void *ud = c->ud;
        r->cursor = c->next;
        c->fn = NULL;
        if (c->queued) { /* never sent: nothing will answer it */
            cmd_unlink(r, c);
            cmd_free(c);
        } else {
            r->timeouts_in_row++;
        }
        if (fn) gw_metrics.redis_errors[GW_METRICS_REDIS_TIMEOUT]++;
        if (fn) fn(ud, NULL, "redis timeout");
    }
    if (r->sentinel && r->timeouts_in_row > 0) gw_sentinel_check(r->sentinel); /* a failover? */
    if (r->timeouts_in_row >= RESET_AFTER_TIMEOUTS && r->state == ST_READY && r->ac) reset(r);
    arm_timer(r);
}

/* Fail every command still waiting for the handshake, one at a time from
 * the head, since each callback may change the list. */
static void fail_queued(struct gw_redis *r) {
    for (;;) {
        struct gw_redis_cmd *c = r->pending.next;
        while (c != &r->pending && !c->queued) c = c->next;
        if (c == &r->pending) return;
        gw_redis_reply_fn fn = c->fn;
        void *ud = c->ud;
        cmd_unlink(r, c);
        cmd_free(c);
        if (fn) gw_metrics.redis_errors[GW_METRICS_REDIS_UNAVAILABLE]++;
        if (fn) fn(ud, NULL, "redis unavailable");
    }
}

/* A sent command's reply, or NULL when the context goes away (the
 * connection was lost, or the client is stopping). */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    struct gw_redis_cmd *c = privdata;
    struct gw_redis *r = c->r;
    gw_redis_reply_fn fn = c->fn;
    void *ud = c->ud;
    double sent_ms = c->sent_ms;
    (void)ac;
    cmd_unlink(r, c);
    cmd_free(c);
    if (reply) r->timeouts_in_row = 0;
    if (reply && r->sentinel && ((redisReply *)reply)->type == REDIS_REPLY_ERROR &&
        strncmp(((redisReply *)reply)->str, "READONLY", 8) == 0)
        gw_sentinel_check(r->sentinel); /* the master we know became a replica */
    if (fn) { /* a reply its caller still waits for (a timed-out one was counted) */
        if (!reply) gw_metrics.redis_errors[GW_METRICS_REDIS_UNAVAILABLE]++;
        else {
            gw_metrics_redis_latency((gw_now_ms() - sent_ms) / 1000.0);
            if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) gw_metrics.redis_errors[GW_METRICS_REDIS_REPLY]++;
        }
    }
    if (fn) fn(ud, reply, reply ? NULL : "redis unavailable");
}

/* --- connecting ----------------------------------------------------------- */

static void log_outage(struct gw_redis *r, const char *what, const char *why) {
    if (!r->outage_logged && r->subscriber)
        gw_log(GW_LOG_WARNING, "redis subscriber: %s %s: %s (cluster messages published meanwhile "
               "are lost; retrying in the background)", what, r->name, why);
    else if (!r->outage_logged)
        gw_log(GW_LOG_WARNING, "redis: %s %s: %s (Redis commands fail with \"redis unavailable\"; "
               "retrying in the background)", what, r->name, why);
    else
        gw_log(GW_LOG_DEBUG, "redis%s: %s %s: %s", r->subscriber ? " subscriber" : "", what, r->name, why);
    r->outage_logged = 1;
}

static void on_conn_timer(uv_timer_t *h);

static void schedule_retry(struct gw_redis *r) {
    set_connected(r, 0);
    r->state = ST_DOWN;
    uv_timer_start(&r->conn_timer, on_conn_timer, r->retry_ms, 0);
    r->retry_ms = r->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : r->retry_ms * 2;
}

/* The attempt or the connection is over (the context is gone or going). */
static void went_down(struct gw_redis *r, const char *what, const char *why) {
    r->ac = NULL;
    log_outage(r, what, why);
    schedule_retry(r);
    fail_queued(r);
}

/* Too many commands in a row timed out: drop the connection, fail every
 * command on it with "redis unavailable" (a write among them may still
 * have run) and reconnect with the usual backoff. From the command timer,
 * outside any hiredis callback. */
static void reset(struct gw_redis *r) {
    redisAsyncContext *ac = r->ac;
    char why[128];
    gw_fmt(why, sizeof why, "%d commands in a row got no reply within %ld ms", r->timeouts_in_row,
           r->timeout_ms);
    r->ac = NULL;
    r->timeouts_in_row = 0;
    log_outage(r, "dropped the connection to", why);
    schedule_retry(r); /* DOWN first: callers that send again fail at once */
    /* Runs on_reply with NULL for every sent command; on_disconnect sees
     * r->ac != ac. */
    redisAsyncFree(ac);
    fail_queued(r);
}

static void send_subscribe(struct gw_redis *r, const char *channel);

static void became_ready(struct gw_redis *r) {
    r->state = ST_READY;
    set_connected(r, 1);
    r->timeouts_in_row = 0;
    r->retry_ms = RETRY_MIN_MS;
    r->outage_logged = 0;
    uv_timer_stop(&r->conn_timer);
    gw_log(GW_LOG_NOTICE, "redis%s: connected to %s", r->subscriber ? " subscriber" : "", r->name);
    if (r->subscriber) {
        r->subs_waiting = (int)r->nchannels;
        for (size_t i = 0; i < r->nchannels; i++) send_subscribe(r, r->channels[i]);
        return;
    }
    int failed = 0;
    for (struct gw_redis_cmd *c = r->pending.next; c != &r->pending; c = c->next) {
        if (!c->queued) continue;
        if (redisAsyncFormattedCommand(r->ac, on_reply, c, c->queued, c->queued_len) != REDIS_OK) {
            failed = 1;
            continue;
        }
        redisFreeCommand(c->queued);
        c->queued = NULL;
    }
    if (failed) fail_queued(r);
}

/* ROLE's answer starts with "master" on a master. */
static int role_is_master(const redisReply *rep) {
    return rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(rep->element[0]->str, "master") == 0;
}

/* Replies to AUTH, SELECT, ROLE (with sentinels) and the final PING.
 * 'privdata' names the step. */
static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata) {
    struct gw_redis *r = ac->data;
    redisReply *rep = reply;
    if (!r || r->ac != ac || !rep || r->handshake_failed) return;
    int is_role = strcmp(privdata, "ROLE") == 0;
    if (is_role && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOPERM", 6) == 0) {
        /* An ACL user without ROLE: trust the sentinels (a READONLY reply still sends us back). */
        if (!r->role_warned)
            gw_log(GW_LOG_WARNING, "redis: %s: cannot check that it is the master (ROLE: %s); trusting "
                   "the sentinels", r->name, rep->str);
        r->role_warned = 1;
        return;
    }
    int not_master = is_role && !role_is_master(rep);
    if (rep->type == REDIS_REPLY_ERROR || not_master) {
        char why[512];
        if (not_master) /* the sentinels named it before a failover ended */
            gw_fmt(why, sizeof why, "ROLE says it is not the master; asking the sentinels again");
        else gw_fmt(why, sizeof why, "%s failed: %s", (const char *)privdata, rep->str);
        r->handshake_failed = 1;
        log_outage(r, "cannot use", why);
        redisAsyncDisconnect(ac); /* after the remaining replies; then on_disconnect */
        return;
    }
    if (strcmp(privdata, "PING") == 0) became_ready(r);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    struct gw_redis *r = ac->data;
    if (!r || r->ac != ac || status == REDIS_OK) return;
    went_down(r, "cannot connect to", ac->c.errstr[0] ? ac->c.errstr : "connection failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    struct gw_redis *r = ac->data;
    (void)status;
    if (!r || r->ac != ac) return;
    if (r->handshake_failed) {
        r->ac = NULL;
        schedule_retry(r);
        fail_queued(r);
        return;
    }
    int was_ready = r->state == ST_READY;
    went_down(r, was_ready ? "lost the connection to" : "cannot connect to",
              ac->c.errstr[0] ? ac->c.errstr : "connection closed");
}

static void send_handshake(struct gw_redis *r) {
    char db[16];
    if (r->url.password[0]) {
        const char *argv[3] = {"AUTH", r->url.user, r->url.password};
        size_t lens[3] = {4, strlen(r->url.user), strlen(r->url.password)};
        if (r->url.user[0]) redisAsyncCommandArgv(r->ac, on_handshake, (void *)"AUTH", 3, argv, lens);
        else {
            argv[1] = r->url.password;
            lens[1] = lens[2];
            redisAsyncCommandArgv(r->ac, on_handshake, (void *)"AUTH", 2, argv, lens);
        }
    }
    if (r->url.db != 0) {
        gw_fmt(db, sizeof db, "%d", r->url.db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        redisAsyncCommandArgv(r->ac, on_handshake, (void *)"SELECT", 2, argv, lens);
    }
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (r->sentinel) { /* a sentinel's answer may be stale: check it is the master */
        const char *role[1] = {"ROLE"};
        redisAsyncCommandArgv(r->ac, on_handshake, (void *)"ROLE", 1, role, lens);
    }
    redisAsyncCommandArgv(r->ac, on_handshake, (void *)"PING", 1, argv, lens);
}

/* Where this attempt connects: the address in redis.url, or with
 * sentinels the master they named last (set_master_address). The one step
 * that decides the address, for the command connection and the
 * subscriber alike. */
static redisAsyncContext *open_context(struct gw_redis *r) {
    return r->url.is_unix ? redisAsyncConnectUnix(r->url.path) : redisAsyncConnect(r->url.host, r->url.port);
}

static void connect_to(struct gw_redis *r) {
    redisAsyncContext *ac = open_context(r);
    if (!ac) {
        went_down(r, "cannot connect to", "out of memory");
        return;
    }
    if (ac->err || gw_redis_poll_attach(ac, r->loop) != GW_OK) {
        char why[256];
        gw_fmt(why, sizeof why, "%s", ac->err ? ac->c.errstr : "cannot poll the socket");
        redisAsyncFree(ac);
        went_down(r, "cannot connect to", why);
        return;
    }
    /* A peer that vanished (host down, a dropped route) is found within
     * about 30 s even when no command is waiting; a unix socket needs none. */
    if (!r->url.is_unix) redisEnableKeepAlive(&ac->c);
    ac->data = r;
    r->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    send_handshake(r);
    uv_timer_start(&r->conn_timer, on_conn_timer, CONNECT_TIMEOUT_MS, 0);
}

static void set_master_address(struct gw_redis *r, const char *host, int port) {
    char url[1024];
    r->url.is_unix = 0;
    gw_fmt(r->url.host, sizeof r->url.host, "%s", host);
    r->url.port = port;
    gw_redis_url_describe(&r->url, url, sizeof url);
    gw_fmt(r->name, sizeof r->name, "%s (master \"%s\")", url, gw_sentinel_master(r->sentinel));
}

/* The sentinels' answer to this attempt's ask. */
static void on_master_found(void *ud, const char *host, int port, const char *err) {
    struct gw_redis *r = ud;
    r->ask = NULL;
    if (err) {
        went_down(r, "cannot find", err);
        return;
    }
    set_master_address(r, host, port);
    connect_to(r);
}

static void connect_start(struct gw_redis *r) {
    r->state = ST_CONNECTING;
    r->handshake_failed = 0;
    if (r->sentinel) r->ask = gw_sentinel_ask(r->sentinel, on_master_found, r);
    else connect_to(r);
}

/* The sentinels name the master (after a poll, an ask or +switch-master).
 * Elsewhere than this client is or is trying to be: leave from conn_timer,
 * outside this callback. */
static void on_master_named(void *ud, const char *host, int port, const char *err) {
    struct gw_redis *r = ud;
    (void)err;
    if (r->state == ST_STOPPED || r->ask || r->moved) return;
    if (!r->url.is_unix && strcmp(r->url.host, host) == 0 && r->url.port == port) return;
    r->moved = 1;
    uv_timer_start(&r->conn_timer, on_conn_timer, 0, 0);
}

/* Leave the old master now rather than wait for it to fail: commands sent
 * to it get "redis unavailable" (a write among them may have run there);
 * queued ones wait for the connection to the new one. */
static void follow_master(struct gw_redis *r) {
    redisAsyncContext *ac = r->ac;
    if (ac) gw_log(GW_LOG_NOTICE, "redis: leaving %s: the sentinels name another master", r->name);
    r->ac = NULL;
    r->state = ST_CONNECTING; /* commands sent from the callbacks below wait in the queue */
    set_connected(r, 0);
    r->timeouts_in_row = 0;
    r->retry_ms = RETRY_MIN_MS;
    if (ac) redisAsyncFree(ac); /* on_reply with NULL for each sent command */
    connect_start(r);
}

static void on_conn_timer(uv_timer_t *h) {
    struct gw_redis *r = h->data;
    if (r->moved) {
        r->moved = 0;
        follow_master(r);
        return;
    }
    if (r->state == ST_DOWN) {
        connect_start(r);
        return;
    }
    if (r->state != ST_CONNECTING || !r->ac) return;
    /* Connecting or the handshake took too long: drop this attempt. Its
     * callbacks see r->ac != ac and do nothing. */
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    redisAsyncFree(ac);
    went_down(r, "cannot connect to", "timed out");
}

/* --- the client --------------------------------------------------------- */

/* Process-wide, as the config is: gw_redis_use_sentinel sets it at startup. */
static struct gw_sentinel *use_sentinel;

void gw_redis_use_sentinel(struct gw_sentinel *s) { use_sentinel = s; }

/* Find the master through 's' from now on: redis.url gives only the user,
 * password and db. */
static void sentinel_attach(struct gw_redis *r, struct gw_sentinel *s) {
    r->sentinel = s;
    r->url.host[0] = '\0';
    r->url.port = 0;
    gw_fmt(r->name, sizeof r->name, "master \"%s\" (through the sentinels)", gw_sentinel_master(s));
    r->watch = gw_sentinel_watch(s, on_master_named, r);
}

static void handle_closed(uv_handle_t *h) {
    struct gw_redis *r = h->data;
    if (--r->open_handles > 0) return;
    for (size_t i = 0; i < r->nchannels; i++) free(r->channels[i]);
    free(r->channels);
    free(r);
}

/* A client for 'url' on 'loop', not connecting yet; NULL for a bad URL. */
static struct gw_redis *client_new(uv_loop_t *loop, const char *url, int subscriber, char *err,
                                   size_t errlen) {
    struct gw_redis_url u;
    if (gw_redis_url_parse(url, &u, err, errlen) != GW_OK) return NULL;
    struct gw_redis *r = calloc(1, sizeof *r);
    if (!r) gw_panic("out of memory");
    r->loop = loop;
    r->url = u;
    r->subscriber = subscriber;
    gw_redis_url_describe(&u, r->name, sizeof r->name);
    r->max_pending = LONG_MAX;
    r->retry_ms = RETRY_MIN_MS;
    r->pending.next = r->pending.prev = &r->pending;
    r->cursor = &r->pending;
    uv_timer_init(loop, &r->conn_timer);
    uv_timer_init(loop, &r->cmd_timer);
    r->conn_timer.data = r->cmd_timer.data = r;
    r->open_handles = 2;
    if (use_sentinel) sentinel_attach(r, use_sentinel);
    /* A write to a Redis that just died must be an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    return r;
}

struct gw_redis *gw_redis_new(uv_loop_t *loop, const char *url, long command_timeout_ms,
                              long max_pending, char *err, size_t errlen) {
    struct gw_redis *r = client_new(loop, url, 0, err, errlen);
    if (!r) return NULL;
    r->timeout_ms = command_timeout_ms;
    if (max_pending > 0) r->max_pending = max_pending;
    gw_log(GW_LOG_INFO, "redis: connecting to %s", r->name);
    connect_start(r);
    return r;
}

void gw_redis_free(struct gw_redis *r) {
    if (!r) return;
    r->state = ST_STOPPED;
    set_connected(r, 0);
    uv_timer_stop(&r->conn_timer);
    uv_timer_stop(&r->cmd_timer);
    if (r->ask) gw_sentinel_cancel(r->ask);
    r->ask = NULL;
    gw_sentinel_unwatch(r->watch);
    r->watch = NULL;
    fail_queued(r);
    if (r->ac) {
        /* Runs on_reply with NULL for every sent command (their callers
         * get "redis unavailable"); on_disconnect sees r->ac != ac. */
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    if (r->pending.next != &r->pending) gw_panic("redis: commands left after stopping");
    uv_close((uv_handle_t *)&r->conn_timer, handle_closed);
    uv_close((uv_handle_t *)&r->cmd_timer, handle_closed);
}

int gw_redis_connected(const struct gw_redis *r) {
    return r && r->state == ST_READY && r->ac &&
           !(r->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

struct gw_redis_cmd *gw_redis_command(struct gw_redis *r, int argc, const char **argv,
                                      const size_t *argvlen, gw_redis_reply_fn fn, void *ud) {
    if (r->subscriber) gw_panic("redis: a command on the subscriber connection");
    if (r->state != ST_READY && r->state != ST_CONNECTING) {
        gw_metrics.redis_errors[GW_METRICS_REDIS_UNAVAILABLE]++;
        return NULL;
    }
    if (r->npending >= r->max_pending) {
        gw_metrics.redis_errors[GW_METRICS_REDIS_UNAVAILABLE]++;
        if (!r->full_logged)
            gw_log(GW_LOG_WARNING, "redis: %ld commands are waiting for %s (redis.maxPending); new "
                   "ones fail with \"redis unavailable\" until it answers", r->npending, r->name);
        r->full_logged = 1;
        return NULL;
    }
    if (r->full_logged && r->npending < r->max_pending / 2) r->full_logged = 0;
    struct gw_redis_cmd *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->r = r;
    c->fn = fn;
    c->ud = ud;
    c->sent_ms = gw_now_ms();
    if (r->timeout_ms > 0) {
        /* Lua may have run for a while since the loop last read the clock. */
        uv_update_time(r->loop);
        c->deadline = uv_now(r->loop) + (uint64_t)r->timeout_ms;
    }
    if (r->state == ST_CONNECTING) {
        int n = redisFormatCommandArgv(&c->queued, argc, argv, argvlen);
        if (n < 0) {
            free(c);
            return NULL;
        }
        c->queued_len = (size_t)n;
    } else if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        /* The context is going away: we are inside its last callbacks. */
        free(c);
        return NULL;
    }
    c->prev = r->pending.prev;
    c->next = &r->pending;
    r->pending.prev->next = c;
    r->pending.prev = c;
    r->npending++;
    if (r->cursor == &r->pending) r->cursor = c;
    arm_timer(r);
    return c;
}

void gw_redis_cancel(struct gw_redis_cmd *c) {
    c->fn = NULL;
    if (c->queued) { /* not sent: nothing will answer it */
        cmd_unlink(c->r, c);
        cmd_free(c);
    }
}

/* --- the subscriber -------------------------------------------------------- */

/* Every reply on a subscribed channel: "subscribe" confirmations and
 * "message"s. hiredis calls it with NULL when the context goes away. */
static void on_subscribed(redisAsyncContext *ac, void *reply, void *privdata) {
    struct gw_redis *r = privdata;
    redisReply *rep = reply;
    if (!rep || r->ac != ac || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    redisReply *kind = rep->element[0], *channel = rep->element[1], *payload = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || channel->type != REDIS_REPLY_STRING) return;
    if (strcasecmp(kind->str, "message") == 0 && payload->type == REDIS_REPLY_STRING) {
        r->on_message(r->message_ud, channel->str, channel->len, payload->str, payload->len);
    } else if (strcasecmp(kind->str, "subscribe") == 0 && r->subs_waiting > 0 && --r->subs_waiting == 0) {
        r->on_message(r->message_ud, NULL, 0, NULL, 0);
    }
}

static void send_subscribe(struct gw_redis *r, const char *channel) {
    const char *argv[2] = {"SUBSCRIBE", channel};
    size_t lens[2] = {9, strlen(channel)};
    redisAsyncCommandArgv(r->ac, on_subscribed, r, 2, argv, lens);
}

struct gw_redis *gw_redis_new_subscriber(uv_loop_t *loop, const char *url, gw_redis_message_fn fn,
                                         void *ud, char *err, size_t errlen) {
    struct gw_redis *r = client_new(loop, url, 1, err, errlen);
    if (!r) return NULL;
    r->on_message = fn;
    r->message_ud = ud;
    gw_log(GW_LOG_INFO, "redis subscriber: connecting to %s", r->name);
    connect_start(r);
    return r;
}

int gw_redis_subscribe(struct gw_redis *r, const char *channel) {
    if (!r->subscriber) gw_panic("redis: SUBSCRIBE on the command connection");
    for (size_t i = 0; i < r->nchannels; i++)
        if (strcmp(r->channels[i], channel) == 0) return GW_OK;
    char **grown = realloc(r->channels, (r->nchannels + 1) * sizeof *grown);
    char *copy = strdup(channel);
    if (!grown || !copy) {
        if (grown) r->channels = grown;
        free(copy);
        return GW_ERR;
    }
    r->channels = grown;
    r->channels[r->nchannels++] = copy;
    if (gw_redis_connected(r)) send_subscribe(r, copy);
    return GW_OK;
}
