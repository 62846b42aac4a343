/* See sentinel.h. Two hiredis contexts at most: one to the sentinel being
 * asked (a round asks them one at a time until one names the master; the
 * connection to the one that answered is kept for the next round), and the
 * listener subscribed to +switch-master on one sentinel. Every answer and
 * every notification is handed on from the 'step' timer, outside any
 * hiredis callback, so a caller may connect, free or run Lua from its
 * callback. */
#include "base/sentinel.h"
#include "base/gw.h"
#include "base/log.h"
#include "base/redis_poll.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_CONNECT_MS 2000 /* connect, AUTH and SUBSCRIBE of the listener */

struct gw_sentinel_ask {
    struct gw_sentinel_ask *next;
    gw_sentinel_fn fn; /* NULL once cancelled: freed when the round ends */
    void *ud;
};

struct gw_sentinel_watch {
    struct gw_sentinel_watch *prev, *next;
    struct gw_sentinel *s;
    gw_sentinel_fn fn;
    void *ud;
};

struct gw_sentinel {
    uv_loop_t *loop;
    struct gw_sentinel_conf conf;
    char names[GW_SENTINEL_MAX][300]; /* each sentinel as logs show it */
    int stopped;
    int open_handles;

    /* The master as last named ('known' once a sentinel has named it). */
    int known;
    char host[256];
    int port;
    unsigned long switches;   /* +switch-master messages seen */
    int failing;              /* the last round failed (logged once per streak) */

    /* The round: asks waiting, the sentinel being asked and its context. */
    int round;                /* a round is under way */
    int again;                /* start another round when this one ends */
    int tried;                /* sentinels asked in this round */
    int idx;                  /* the one being asked */
    int first;                /* the one to ask first: the last that answered */
    unsigned long round_switches; /* 'switches' when the round began */
    redisAsyncContext *qac;   /* to sentinel 'qidx', kept between rounds */
    int qidx;
    int waiting;              /* a question is on qac */
    int found;                /* qac's sentinel named the master: found_host:found_port */
    char found_host[256];
    int found_port;
    char why[512];            /* the last sentinel's failure, for the round's error */
    struct gw_sentinel_ask *asks;
    uv_timer_t step;          /* the asked sentinel's deadline, or 0 ms: hand the result on */
    int notify;               /* 'step' also tells the watches (after a +switch-master) */

    /* The +switch-master listener. */
    redisAsyncContext *wac;
    int widx;                 /* the sentinel it listens to */
    int subscribed;
    uv_timer_t wtimer;        /* connect deadline, or the next try */

    uv_timer_t poll;
    struct gw_sentinel_watch watches; /* list head */
};

static void round_start(struct gw_sentinel *s);
static void on_step(uv_timer_t *h);
static void on_wtimer(uv_timer_t *h);

/* --- addresses ---------------------------------------------------------- */

static int addr_fail(char *err, size_t errlen, const char *s, const char *why) {
    gw_fmt(err, errlen, "\"%s\": %s (host:port, [IPv6]:port or /path/to/sentinel.sock)", s, why);
    return GW_ERR;
}

int gw_sentinel_addr_parse(const char *s, struct gw_sentinel_addr *out, char *err, size_t errlen) {
    struct gw_sentinel_addr a;
    memset(&a, 0, sizeof a);
    a.port = GW_SENTINEL_PORT;
    if (s[0] == '/') {
        if (strlen(s) >= sizeof a.path) return addr_fail(err, errlen, s, "the socket path is too long");
        a.is_unix = 1;
        memcpy(a.path, s, strlen(s) + 1);
        *out = a;
        return GW_OK;
    }
    const char *host = s, *host_end, *p;
    if (s[0] == '[') {
        host = s + 1;
        if (!(host_end = strchr(host, ']'))) return addr_fail(err, errlen, s, "missing ']'");
        p = host_end + 1;
    } else {
        host_end = host + strcspn(host, ":");
        p = host_end;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0) return addr_fail(err, errlen, s, "no host");
    if (hlen >= sizeof a.host) return addr_fail(err, errlen, s, "host name too long");
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)host[i] <= ' ' || host[i] == '/' || host[i] == '@')
            return addr_fail(err, errlen, s, "not a host name or address");
    memcpy(a.host, host, hlen);
    if (*p == ':') {
        long port = 0;
        size_t n = strlen(++p);
        if (n == 0 || n > 5 || strspn(p, "0123456789") != n || (port = strtol(p, NULL, 10)) < 1 ||
            port > 65535)
            return addr_fail(err, errlen, s, "the port must be a number from 1 to 65535");
        a.port = (int)port;
    } else if (*p) {
        return addr_fail(err, errlen, s, "unexpected text after the host");
    }
    *out = a;
    return GW_OK;
}

void gw_sentinel_addr_describe(const struct gw_sentinel_addr *a, char *buf, size_t len) {
    if (a->is_unix) gw_fmt(buf, len, "%s", a->path);
    else if (strchr(a->host, ':')) gw_fmt(buf, len, "[%s]:%d", a->host, a->port);
    else gw_fmt(buf, len, "%s:%d", a->host, a->port);
}

/* A context to sentinel 'i', on the loop, with AUTH sent when the
 * sentinels have a password; NULL with the reason in 'why'. */
static redisAsyncContext *open_sentinel(struct gw_sentinel *s, int i, redisCallbackFn *auth_cb,
                                        char *why, size_t whylen) {
    const struct gw_sentinel_addr *a = &s->conf.addr[i];
    redisAsyncContext *ac = a->is_unix ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->host, a->port);
    if (!ac) {
        gw_fmt(why, whylen, "out of memory");
        return NULL;
    }
    if (ac->err || gw_redis_poll_attach(ac, s->loop) != GW_OK) {
        gw_fmt(why, whylen, "%s", ac->err ? ac->c.errstr : "cannot poll the socket");
        redisAsyncFree(ac);
        return NULL;
    }
    if (!a->is_unix) redisEnableKeepAlive(&ac->c);
    ac->data = s;
    if (s->conf.password[0]) {
        const char *argv[2] = {"AUTH", s->conf.password};
        size_t lens[2] = {4, strlen(s->conf.password)};
        redisAsyncCommandArgv(ac, auth_cb, NULL, 2, argv, lens);
    }
    return ac;
}

/* --- the master and the watches ----------------------------------------- */

/* Record the master a sentinel named, with one log line when it is new. */
static void set_master(struct gw_sentinel *s, const char *host, int port, const char *from) {
    if (!s->known)
        gw_log(GW_LOG_NOTICE, "redis: sentinel %s: master \"%s\" is at %s:%d", from, s->conf.master, host, port);
    else if (strcmp(s->host, host) != 0 || s->port != port)
        gw_log(GW_LOG_NOTICE, "redis: master \"%s\" switched: %s:%d -> %s:%d (from sentinel %s)",
               s->conf.master, s->host, s->port, host, port, from);
    else
        gw_log(GW_LOG_DEBUG, "redis: sentinel %s: master \"%s\" is still at %s:%d", from, s->conf.master,
               host, port);
    s->known = 1;
    gw_fmt(s->host, sizeof s->host, "%s", host);
    s->port = port;
}

/* Tell every watch where the master is. A callback may unwatch another
 * watch (not its own), so the next one is read after each call through a
 * marker kept on the list. */
static void notify_watches(struct gw_sentinel *s) {
    struct gw_sentinel_watch mark = {0};
    struct gw_sentinel_watch *w = s->watches.next;
    while (w != &s->watches && s->known) {
        mark.prev = w;
        mark.next = w->next;
        w->next->prev = &mark;
        w->next = &mark;
        w->fn(w->ud, s->host, s->port, NULL);
        struct gw_sentinel_watch *next = mark.next;
        mark.prev->next = mark.next;
        mark.next->prev = mark.prev;
        w = next;
    }
}

/* --- a round of asks ------------------------------------------------------ */

static void step_now(struct gw_sentinel *s) { uv_timer_start(&s->step, on_step, 0, 0); }

static void query_failed(struct gw_sentinel *s, const char *why) {
    gw_fmt(s->why, sizeof s->why, "sentinel %s: %s", s->names[s->idx], why);
    gw_log(GW_LOG_DEBUG, "redis: %s", s->why);
    step_now(s);
}

/* qac is going away (hiredis frees it after this): a question on it failed. */
static void query_lost(struct gw_sentinel *s, const redisAsyncContext *ac, const char *why) {
    s->qac = NULL;
    if (!s->waiting) return;
    s->waiting = 0;
    query_failed(s, ac->c.errstr[0] ? ac->c.errstr : why);
}

/* Replies to AUTH and to SENTINEL get-master-addr-by-name; NULL when the
 * context goes away (refused, closed, or freed by us). */
static void on_query_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    struct gw_sentinel *s = ac->data;
    redisReply *rep = reply;
    int is_auth = privdata == NULL;
    if (!s || s->qac != ac) return;
    if (!rep) {
        query_lost(s, ac, "connection closed");
        return;
    }
    if (is_auth && rep->type != REDIS_REPLY_ERROR) return;
    char why[512] = "";
    if (rep->type == REDIS_REPLY_ERROR) {
        gw_fmt(why, sizeof why, "%s failed: %s", is_auth ? "AUTH" : "SENTINEL get-master-addr-by-name", rep->str);
    } else if (rep->type == REDIS_REPLY_NIL) {
        gw_fmt(why, sizeof why, "does not know a master named \"%s\"", s->conf.master);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
               rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
               rep->element[0]->len == 0 || rep->element[0]->len >= sizeof s->found_host ||
               atoi(rep->element[1]->str) < 1 || atoi(rep->element[1]->str) > 65535) {
        gw_fmt(why, sizeof why, "an answer that is not [host, port]");
    } else {
        memcpy(s->found_host, rep->element[0]->str, rep->element[0]->len);
        s->found_host[rep->element[0]->len] = '\0';
        s->found_port = atoi(rep->element[1]->str);
        s->found = 1;
    }
    s->waiting = 0;
    if (s->found) { /* the connection stays for the next round */
        step_now(s);
        return;
    }
    s->qac = NULL;
    redisAsyncFree(ac); /* inside its callback: hiredis frees it on return */
    query_failed(s, why);
}

static void on_query_connect(const redisAsyncContext *ac, int status) {
    struct gw_sentinel *s = ac->data;
    if (!s || s->qac != ac || status == REDIS_OK) return;
    query_lost(s, ac, "cannot connect");
}

/* An idle connection kept between rounds closed (a question on it was
 * answered NULL by on_query_reply first). */
static void on_query_disconnect(const redisAsyncContext *ac, int status) {
    struct gw_sentinel *s = ac->data;
    (void)status;
    if (s && s->qac == ac) query_lost(s, ac, "connection closed");
}

static void drop_query(struct gw_sentinel *s) {
    redisAsyncContext *ac = s->qac;
    s->qac = NULL; /* its callbacks see qac != ac */
    s->waiting = 0;
    if (ac) redisAsyncFree(ac);
}

/* Ask sentinel 'idx', on the connection kept from the last round when it
 * goes there (host names are resolved, on the loop, only to make one). */
static void query_start(struct gw_sentinel *s) {
    char why[256];
    if (s->qac && s->qidx != s->idx) drop_query(s);
    if (!s->qac) {
        redisAsyncContext *ac = open_sentinel(s, s->idx, on_query_reply, why, sizeof why);
        if (!ac) {
            query_failed(s, why);
            return;
        }
        s->qac = ac;
        s->qidx = s->idx;
        redisAsyncSetConnectCallback(ac, on_query_connect);
        redisAsyncSetDisconnectCallback(ac, on_query_disconnect);
    }
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", s->conf.master};
    size_t lens[3] = {8, 23, strlen(s->conf.master)};
    if (redisAsyncCommandArgv(s->qac, on_query_reply, (void *)"query", 3, argv, lens) != REDIS_OK) {
        drop_query(s);
        query_failed(s, "connection closing");
        return;
    }
    s->waiting = 1;
    uv_timer_start(&s->step, on_step, GW_SENTINEL_ASK_MS, 0);
}

static void round_start(struct gw_sentinel *s) {
    if (s->stopped) return;
    if (s->round) return;
    s->round = 1;
    s->again = 0;
    s->tried = 0;
    s->found = 0;
    s->idx = s->first;
    s->round_switches = s->switches;
    s->why[0] = '\0';
    query_start(s);
}

/* The round is over: hand the answer (or 'err') to every ask. */
static void round_end(struct gw_sentinel *s, const char *err) {
    struct gw_sentinel_ask *a = s->asks;
    s->asks = NULL;
    s->round = 0;
    while (a) {
        struct gw_sentinel_ask *next = a->next;
        if (a->fn) {
            if (err) a->fn(a->ud, NULL, 0, err);
            else a->fn(a->ud, s->host, s->port, NULL);
        }
        free(a);
        a = next;
    }
    if (!err || s->notify) notify_watches(s);
    s->notify = 0;
    if (s->again) round_start(s);
}

/* The asked sentinel answered, failed, or ran out of time ('waiting'
 * still set); or a +switch-master asks for the watches to be told. */
static void on_step(uv_timer_t *h) {
    struct gw_sentinel *s = h->data;
    if (s->notify && !s->round) {
        s->notify = 0;
        notify_watches(s);
        return;
    }
    if (!s->round) return;
    if (s->waiting) { /* no answer in time */
        drop_query(s);
        gw_fmt(s->why, sizeof s->why, "sentinel %s: no answer within %d ms", s->names[s->idx],
               GW_SENTINEL_ASK_MS);
        gw_log(GW_LOG_DEBUG, "redis: %s", s->why);
    }
    if (s->found) {
        s->found = 0;
        s->first = s->idx;
        s->failing = 0;
        /* A +switch-master during the round is newer than this answer. */
        if (s->switches == s->round_switches) set_master(s, s->found_host, s->found_port, s->names[s->idx]);
        round_end(s, NULL);
        return;
    }
    if (++s->tried < s->conf.n) {
        s->idx = (s->idx + 1) % s->conf.n;
        query_start(s);
        return;
    }
    char err[700];
    gw_fmt(err, sizeof err, "no sentinel named master \"%s\" (last: %s)", s->conf.master, s->why);
    gw_log(s->failing ? GW_LOG_DEBUG : GW_LOG_WARNING, "redis: %s", err);
    s->failing = 1;
    round_end(s, err);
}

/* --- the +switch-master listener ------------------------------------------ */

static void watch_retry(struct gw_sentinel *s) {
    s->subscribed = 0;
    if (s->stopped) return;
    s->widx = (s->widx + 1) % s->conf.n;
    uv_timer_start(&s->wtimer, on_wtimer, GW_SENTINEL_RETRY_MS, 0);
}

/* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
static void on_switch(struct gw_sentinel *s, const char *msg, size_t len) {
    char buf[1024], *f[5];
    if (len >= sizeof buf) return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    int n = 0;
    for (char *p = buf + len; p > buf && n < 4;) { /* the last four fields; the name is the rest */
        while (p > buf && p[-1] != ' ') p--;
        f[4 - n++] = p;
        if (p > buf) *--p = '\0';
    }
    f[0] = buf;
    if (n < 4 || strcmp(f[0], s->conf.master) != 0) return;
    int port = atoi(f[4]);
    if (!f[3][0] || port < 1 || port > 65535) return;
    s->switches++;
    s->first = s->widx; /* it knows the new master */
    set_master(s, f[3], port, s->names[s->widx]);
    s->notify = 1;
    if (s->round) s->again = 1; /* asks get this or a newer answer; the round's own is older */
    else step_now(s);
}

static void on_watch_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    struct gw_sentinel *s = ac->data;
    redisReply *rep = reply;
    (void)privdata;
    if (!s || s->wac != ac) return;
    if (!rep) {
        s->wac = NULL; /* hiredis is freeing it */
        gw_log(GW_LOG_INFO, "redis: sentinel %s: stopped listening for +switch-master: %s", s->names[s->widx],
               ac->c.errstr[0] ? ac->c.errstr : "connection closed");
        watch_retry(s);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        gw_log(GW_LOG_WARNING, "redis: sentinel %s: %s failed: %s", s->names[s->widx],
               privdata ? "SUBSCRIBE" : "AUTH", rep->str);
        s->wac = NULL;
        redisAsyncFree(ac);
        watch_retry(s);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        uv_timer_stop(&s->wtimer);
        s->subscribed = 1;
        gw_log(GW_LOG_INFO, "redis: sentinel %s: listening for +switch-master", s->names[s->widx]);
        /* A switch missed while no one listened is found by asking now. */
        gw_sentinel_check(s);
    } else if (strcmp(rep->element[0]->str, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        on_switch(s, rep->element[2]->str, rep->element[2]->len);
    }
}

static void on_watch_connect(const redisAsyncContext *ac, int status) {
    struct gw_sentinel *s = ac->data;
    if (!s || s->wac != ac || status == REDIS_OK) return;
    s->wac = NULL;
    gw_log(GW_LOG_DEBUG, "redis: sentinel %s: cannot listen for +switch-master: %s", s->names[s->widx],
           ac->c.errstr);
    watch_retry(s);
}

static void watch_start(struct gw_sentinel *s) {
    char why[256];
    redisAsyncContext *ac = open_sentinel(s, s->widx, on_watch_reply, why, sizeof why);
    if (!ac) {
        gw_log(GW_LOG_DEBUG, "redis: sentinel %s: cannot listen for +switch-master: %s", s->names[s->widx], why);
        watch_retry(s);
        return;
    }
    s->wac = ac;
    redisAsyncSetConnectCallback(ac, on_watch_connect);
    const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
    size_t lens[2] = {9, 14};
    redisAsyncCommandArgv(ac, on_watch_reply, (void *)"subscribe", 2, argv, lens);
    uv_timer_start(&s->wtimer, on_wtimer, WATCH_CONNECT_MS, 0);
}

/* Connecting or subscribing took too long (drop it and try the next
 * sentinel), or the wait before the next try is over. */
static void on_wtimer(uv_timer_t *h) {
    struct gw_sentinel *s = h->data;
    if (s->wac) {
        redisAsyncContext *ac = s->wac;
        s->wac = NULL;
        redisAsyncFree(ac);
        gw_log(GW_LOG_DEBUG, "redis: sentinel %s: no answer to SUBSCRIBE within %d ms", s->names[s->widx],
               WATCH_CONNECT_MS);
        watch_retry(s);
        return;
    }
    watch_start(s);
}

static void on_poll(uv_timer_t *h) { round_start(h->data); }

/* --- the object ------------------------------------------------------------ */

static void handle_closed(uv_handle_t *h) {
    struct gw_sentinel *s = h->data;
    if (--s->open_handles == 0) free(s);
}

struct gw_sentinel *gw_sentinel_new(uv_loop_t *loop, const struct gw_sentinel_conf *conf) {
    struct gw_sentinel *s = calloc(1, sizeof *s);
    if (!s) gw_panic("out of memory");
    s->loop = loop;
    s->conf = *conf;
    for (int i = 0; i < conf->n; i++) gw_sentinel_addr_describe(&conf->addr[i], s->names[i], sizeof s->names[i]);
    s->watches.next = s->watches.prev = &s->watches;
    uv_timer_init(loop, &s->step);
    uv_timer_init(loop, &s->wtimer);
    uv_timer_init(loop, &s->poll);
    s->step.data = s->wtimer.data = s->poll.data = s;
    s->open_handles = 3;
    uv_timer_start(&s->poll, on_poll, GW_SENTINEL_POLL_MS, GW_SENTINEL_POLL_MS);
    gw_log(GW_LOG_INFO, "redis: finding master \"%s\" through %d sentinel%s", conf->master, conf->n,
           conf->n == 1 ? "" : "s");
    watch_start(s);
    return s;
}

void gw_sentinel_free(struct gw_sentinel *s) {
    if (!s) return;
    if (s->watches.next != &s->watches) gw_panic("sentinel: freed while watched");
    s->stopped = 1;
    uv_timer_stop(&s->step);
    uv_timer_stop(&s->wtimer);
    uv_timer_stop(&s->poll);
    drop_query(s);
    if (s->wac) {
        redisAsyncContext *ac = s->wac;
        s->wac = NULL;
        redisAsyncFree(ac);
    }
    s->again = 0;
    round_end(s, "redis is stopping");
    uv_close((uv_handle_t *)&s->step, handle_closed);
    uv_close((uv_handle_t *)&s->wtimer, handle_closed);
    uv_close((uv_handle_t *)&s->poll, handle_closed);
}

const char *gw_sentinel_master(const struct gw_sentinel *s) { return s->conf.master; }

struct gw_sentinel_ask *gw_sentinel_ask(struct gw_sentinel *s, gw_sentinel_fn fn, void *ud) {
    struct gw_sentinel_ask *a = calloc(1, sizeof *a);
    if (!a) gw_panic("out of memory");
    a->fn = fn;
    a->ud = ud;
    a->next = s->asks;
    s->asks = a;
    round_start(s);
    return a;
}

void gw_sentinel_cancel(struct gw_sentinel_ask *a) { a->fn = NULL; }

struct gw_sentinel_watch *gw_sentinel_watch(struct gw_sentinel *s, gw_sentinel_fn fn, void *ud) {
    struct gw_sentinel_watch *w = calloc(1, sizeof *w);
    if (!w) gw_panic("out of memory");
    w->s = s;
    w->fn = fn;
    w->ud = ud;
    w->prev = s->watches.prev;
    w->next = &s->watches;
    s->watches.prev->next = w;
    s->watches.prev = w;
    return w;
}

void gw_sentinel_unwatch(struct gw_sentinel_watch *w) {
    if (!w) return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    free(w);
}

void gw_sentinel_check(struct gw_sentinel *s) { round_start(s); }
