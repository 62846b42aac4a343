/* See http.h. A connection reads into one buffer shared by the whole
 * process; bytes that are not parsed at once (a request still arriving,
 * or pipelined behind one in flight) move to the connection's own
 * 'pending' buffer. One request is in flight at a time; the next is parsed
 * once its answer is written. Answers are assembled in a shared buffer
 * and written with one uv_try_write; what the socket does not take is
 * copied and queued. Deferred work (the next pipelined request, a file's
 * next chunk) runs from the loop's idle phase, never from inside a reply.
 * On a TLS listener (net/tls.h) the same path runs on the plaintext: reads
 * are decrypted before the parser, writes encrypted before the socket; a
 * wss:// upgrade keeps the connection as a tunnel to lws's socket pair.
 * An HTTP/2 connection (the section "HTTP/2" below) gives each stream an
 * http_conn without a socket whose writes go into the session. */
#include "net/http.h"
#include "base/gw.h"
#include "runtime/call.h"
#include "net/http1.h"
#include "net/h2.h"
#include "vm/libs.h"
#include "base/log.h"
#include "base/query.h"
#include "net/static.h"
#include "net/ws.h"
#include "runtime/drain.h"
#include "net/conncap.h"
#include "net/ops.h"
#include "net/tls.h"
#include "base/cidr.h"
#include "base/metrics.h"
#include "base/random.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define PENDING_MAX (256 * 1024) /* pipelined bytes held while a request runs: stop reading beyond */
#define SWEEP_MS 1000      /* how often the time limits (servers.web.*Timeout) are checked */
#define RATE_GRACE_MS 5000 /* a body's first seconds, before minBodyRate applies */
#define JSON_TYPE "application/json; charset=utf-8"
#define REQUEST_ID_MAX 200 /* a client's X-Request-Id longer than this is replaced */
#define H2_QUEUE_MAX (256 * 1024) /* HTTP/2 output queued on the socket: stop framing and reading beyond */
#define TLS_PLAIN_BUF (32 * 1024)  /* plaintext out of one SSL_read (a record is at most 16 KiB) */
#define TLS_CIPHER_BUF (64 * 1024) /* ciphertext moved to the socket at a time */
#define TUNNEL_MAX (256 * 1024)    /* a wss:// tunnel's queue, either way, before reading stops */

struct out_req {
    uv_write_t req;
    struct http_conn *c;
    size_t len;
    char data[];
};

struct http_conn {
    uv_tcp_t tcp;
    struct gw_http *server;
    struct http_conn *prev, *next;       /* every open connection */
    struct http_conn *rprev, *rnext;     /* the ready list (deferred work) */
    int ready;
    struct gw_http1 *parser;
    char *pending; /* read and not parsed */
    size_t pending_len, pending_cap;
    struct gw_call *call;                /* the request in flight */
    struct gw_static *file;              /* a file answer in progress */
    size_t queued;                       /* bytes handed to uv_write, not yet written */
    int nwrites;                         /* uv_write requests in flight */
    int in_flight;                       /* a request is being answered */
    int head_only, keep_alive, minor;
    int reading_stopped;
    int close_after;                     /* close once the queue is written */
    int closing;
    int dispatching;                     /* inside gw_call_run: reply is written after */
    double last_active;
    /* Time limits (sweep_tick): when the request's head began (accept for
     * the first); the body's rate mark, set by the sweep that first sees the
     * body arrive. */
    double started, body_mark;
    long long body_mark_len;
    int idle;                            /* between requests: keepAliveTimeout applies */
    int eof;                             /* the client shut its side: answer, then close */
    /* A WebSocket upgrade: the runtime's call decides (upgrading), then
     * pump() acts on its decision (upgrade_state) from the loop; an
     * accepted one holds the prepared connection object (upgrade_ref). */
    int upgrading, upgrade_state, upgrade_ref;
    struct gw_conncap_peer *peer;        /* its place under general.maxConnections */
    int counted;
    int open;                            /* counted in gw_metrics.conns */
    /* The request id of the request in flight (X-Request-Id, echoed). */
    char rid[REQUEST_ID_MAX + 1];
    size_t rid_len;
    char ip[INET6_ADDRSTRLEN];
    int port;
    /* HTTP/2 (net/h2.h). A connection that began with the preface holds the
     * session and its streams; each stream is an http_conn of its own with
     * no socket ('parent' set), answering one request through the same
     * code as HTTP/1.1, its bytes written into the session. */
    int fresh;                           /* nothing read yet: the preface is looked for */
    struct gw_h2 *h2;
    struct http_conn *streams;           /* the session's streams (sprev/snext) */
    int h2_unsent;                       /* holds GW_DRAIN_UNSENT for the socket's queue */
    struct http_conn *parent, *sprev, *snext;
    int32_t stream_id;                   /* 0 once the session has closed the stream */
    int delivered;                       /* the stream's request was handed over */
    long long h2_got;                    /* its body bytes so far */
    /* TLS (servers.web.tls): the connection's state, NULL on a plain
     * listener; after a WebSocket upgrade, the socket pair to lws. */
    struct gw_tls_conn *tls;
    struct tunnel *tunnel;
};

/* A wss:// connection after its upgrade: lws runs the WebSocket on one end
 * of a socket pair (as it would a plain socket), and the TLS connection
 * moves bytes between the other end and the client, decrypting one way and
 * encrypting the other. Its own struct: the pipe closes on its own time. */
struct tunnel {
    uv_pipe_t pipe;
    struct http_conn *c; /* NULL once the TLS connection has closed */
    size_t queued;       /* plaintext written to lws, not yet taken */
    int reading;         /* reading what lws writes */
};

struct tunnel_write {
    uv_write_t req;
    struct tunnel *t;
    size_t len;
    char data[];
};

enum { UPGRADE_ACCEPTED = 1, UPGRADE_PASS };

struct gw_http {
    struct gw_runtime *rt;
    uv_loop_t *loop;
    struct lws_vhost *ws_vhost;
    struct gw_ws *ws;
    struct http_conn *conns;      /* every open connection */
    struct http_conn *ready_head; /* connections with deferred work */
    uv_idle_t ready_idle;         /* runs the ready list */
    uv_timer_t sweep;
    int stopping;
    int probe_fixed;              /* GATEWAY_BENCH_PROBE=fixed: answer without Lua */
    int ops_only;                 /* the metrics listener: net/ops.h's paths, else 404 */
    struct gw_tls *tls;           /* servers.web.tls: connections speak TLS */
    int alpn_h2;                  /* ALPN offers "h2" (servers.web.http2.enabled, per accept) */
    int redirect_port;            /* the redirect listener: 308 to https on this port */
};

/* Buffers, not state: the process runs one loop, a read is parsed and an
 * answer assembled and handed to the socket before the next begins, so
 * every connection of every server in the process shares them. */
static char read_buf[READ_BUF];
static int read_buf_busy;
static char *obuf; /* answers are assembled here */
static size_t obuf_cap;
static char *tls_plain;  /* decrypted, about to be parsed (TLS_PLAIN_BUF) */
static char *tls_cipher; /* encrypted, about to be written (TLS_CIPHER_BUF) */

static void conn_close(struct http_conn *c);
static void process(struct http_conn *c, const char *data, size_t len);
static void pump(struct http_conn *c);
static void sweep_tick(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static int stream_write(struct http_conn *c, const char *data, size_t len);
static void stream_close(struct http_conn *c);
static void h2_flush(struct http_conn *c);
static int h2_sniff(struct http_conn *c, const char *data, size_t len);
static int is_h2c_upgrade(const struct http_conn *c);
static void start_h2c(struct http_conn *c, const char *rest, size_t rest_len);
static void tunnel_pump(struct http_conn *c);
static void tunnel_closed(uv_handle_t *h);

/* --- Deferred work -------------------------------------------------------- */

static void ready_idle_cb(uv_idle_t *idle) {
    struct gw_http *h = idle->data;
    while (h->ready_head) {
        struct http_conn *c = h->ready_head;
        h->ready_head = c->rnext;
        if (h->ready_head) h->ready_head->rprev = NULL;
        c->ready = 0;
        c->rnext = c->rprev = NULL;
        pump(c);
    }
    uv_idle_stop(&h->ready_idle);
}

static void schedule(struct http_conn *c) {
    if (c->ready || c->closing) return;
    struct gw_http *h = c->server;
    c->ready = 1;
    c->rprev = NULL;
    c->rnext = h->ready_head;
    if (h->ready_head) h->ready_head->rprev = c;
    h->ready_head = c;
    uv_idle_start(&h->ready_idle, ready_idle_cb);
}

static void unschedule(struct http_conn *c) {
    if (!c->ready) return;
    if (c->rprev) c->rprev->rnext = c->rnext;
    else c->server->ready_head = c->rnext;
    if (c->rnext) c->rnext->rprev = c->rprev;
    c->ready = 0;
    c->rnext = c->rprev = NULL;
}

struct gw_http *gw_http_new(struct gw_runtime *rt, uv_loop_t *loop, struct lws_vhost *vhost,
                            struct gw_ws *ws) {
    struct gw_http *h = calloc(1, sizeof *h);
    if (!h) gw_panic("out of memory");
    h->rt = rt;
    h->loop = loop;
    h->ws_vhost = vhost;
    h->ws = ws;
    const char *probe = getenv("GATEWAY_BENCH_PROBE");
    h->probe_fixed = probe && strcmp(probe, "fixed") == 0;
    uv_idle_init(loop, &h->ready_idle);
    h->ready_idle.data = h;
    uv_unref((uv_handle_t *)&h->ready_idle);
    uv_timer_init(loop, &h->sweep);
    h->sweep.data = h;
    uv_unref((uv_handle_t *)&h->sweep);
    uv_timer_start(&h->sweep, sweep_tick, SWEEP_MS, SWEEP_MS);
    return h;
}

void gw_http_serve_ops_only(struct gw_http *h) { h->ops_only = 1; }

void gw_http_use_tls(struct gw_http *h, struct gw_tls *tls) {
    h->tls = tls;
    if (!tls_plain && (!(tls_plain = malloc(TLS_PLAIN_BUF)) || !(tls_cipher = malloc(TLS_CIPHER_BUF))))
        gw_panic("out of memory");
}

void gw_http_serve_redirect(struct gw_http *h, int https_port) { h->redirect_port = https_port; }

/* --- Writing ---------------------------------------------------------- */

static char *out_reserve(size_t need) {
    if (need > obuf_cap) {
        size_t cap = obuf_cap ? obuf_cap : 16384;
        while (cap < need) cap *= 2;
        char *b = realloc(obuf, cap);
        if (!b) gw_panic("out of memory");
        obuf = b;
        obuf_cap = cap;
    }
    return obuf;
}

static void on_written(uv_write_t *w, int status) {
    struct out_req *o = (struct out_req *)w;
    struct http_conn *c = o->c;
    c->queued -= o->len;
    c->nwrites--;
    free(o);
    if (c->closing) return;
    c->last_active = uv_now(c->tcp.loop);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->nwrites == 0) schedule(c);
}

/* Hand bytes to the socket: what it does not take now is copied and
 * queued, in order. GW_ERR when the connection has failed. */
static inline __attribute__((always_inline)) int raw_write(struct http_conn *c, const char *data, size_t len) {
    if (c->closing) return GW_ERR;
    if (c->parent) return stream_write(c, data, len);
    size_t done = 0;
    if (c->nwrites == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) return GW_ERR;
        if (n > 0) done = (size_t)n;
        if (done == len) return GW_OK;
    }
    size_t rest = len - done;
    struct out_req *o = malloc(sizeof *o + rest);
    if (!o) return GW_ERR;
    o->c = c;
    o->len = rest;
    memcpy(o->data, data + done, rest);
    uv_buf_t b = uv_buf_init(o->data, (unsigned)rest);
    if (uv_write(&o->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(o);
        return GW_ERR;
    }
    c->nwrites++;
    c->queued += rest;
    return GW_OK;
}

/* Send the ciphertext TLS has produced (records, handshake messages). */
static int tls_flush(struct http_conn *c) {
    size_t n;
    while ((n = gw_tls_take(c->tls, tls_cipher, TLS_CIPHER_BUF)) > 0)
        if (raw_write(c, tls_cipher, n) != GW_OK) return GW_ERR;
    return GW_OK;
}

/* Plaintext out: encrypted on a TLS connection, as it is on a plain one. */
static int conn_write(struct http_conn *c, const char *data, size_t len) {
    if (!c->tls) return raw_write(c, data, len);
    if (c->closing || gw_tls_write(c->tls, data, len) != GW_OK) return GW_ERR;
    return tls_flush(c);
}

static const char *reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* "Date: ..." for this second, formatted once a second. */
static const char *date_line(void) {
    static char line[64];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        char d[40];
        gw_static_http_date(d, sizeof d, now);
        snprintf(line, sizeof line, "Date: %s\r\n", d);
        last = now;
    }
    return line;
}

/* Decimal digits of 'n' at 'p'; returns the end (printf costs more than the rest of a
 * small answer's head). */
static char *put_uint(char *p, size_t n) {
    char tmp[24];
    int i = 0;
    do tmp[i++] = (char)('0' + n % 10);
    while ((n /= 10));
    while (i) *p++ = tmp[--i];
    return p;
}

static char *put_str(char *p, const char *s) {
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* "name: value\r\n" at 'p'; returns the end. */
static char *put_field(char *p, const char *name, size_t nl, const char *value, size_t vl) {
    memcpy(p, name, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vl);
    p += vl;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* What the answer's Connection header says: "close" when the connection
 * ends after it, "keep-alive" to an HTTP/1.0 client that keeps it (it
 * would close otherwise), NULL for HTTP/1.1's default. */
static const char *connection_value(const struct http_conn *c) {
    if (!c->keep_alive || c->server->stopping) return "close";
    return c->minor == 0 ? "keep-alive" : NULL;
}

/* Status line and the headers every answer has, into 'p'; returns the end.
 * 'connection' is the Connection header's value, or NULL for none. */
static char *put_head(char *p, int status, const char *connection) {
    p = put_str(p, "HTTP/1.1 ");
    p = put_uint(p, (size_t)status);
    *p++ = ' ';
    p = put_str(p, reason(status));
    p = put_str(p, "\r\n");
    p = put_str(p, date_line());
    if (connection) {
        p = put_str(p, "Connection: ");
        p = put_str(p, connection);
        p = put_str(p, "\r\n");
    }
    return p;
}

/* Header names are tokens; values may not hold CR, LF or NUL. */
static int header_safe(const char *s, size_t len, int is_name) {
    if (is_name && !len) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0') return 0;
        if (is_name && (ch <= ' ' || ch == ':' || ch >= 0x7f)) return 0;
    }
    return 1;
}

/* Headers this layer writes itself, from the answer it frames. */
static int framing_header(const char *k, size_t kl) {
    return (kl == 14 && strcasecmp(k, "content-length") == 0) ||
           (kl == 17 && strcasecmp(k, "transfer-encoding") == 0) ||
           (kl == 10 && strcasecmp(k, "connection") == 0) || (kl == 4 && strcasecmp(k, "date") == 0);
}

/* The request's answer is on the wire (or queued): the connection may
 * read its next request. */
static void request_done(struct http_conn *c) {
    c->in_flight = 0;
    c->started = uv_now(c->server->loop); /* for a pipelined request already read */
    c->idle = 1;
    c->body_mark = 0;
    if (!c->keep_alive || c->server->stopping || (c->eof && !c->pending_len)) c->close_after = 1;
    if (c->close_after) {
        /* Nothing more is read; close once the queue is written. */
        if (c->nwrites == 0) conn_close(c);
        return;
    }
    if (c->pending_len || c->reading_stopped) schedule(c);
}

/* Answer with a JSON error and close (the request's framing is lost or
 * the connection should not go on). */
static void answer_error(struct http_conn *c, int status, const char *message) {
    char body[256];
    int blen = snprintf(body, sizeof body, "{\"error\":\"%s\",\"errors\":[\"%s\"]}", message, message);
    char *p = out_reserve(512 + (size_t)blen), *start = p;
    p = put_head(p, status, "close");
    p += sprintf(p, "Content-Type: " JSON_TYPE "\r\nContent-Length: %d\r\n"
                    "Access-Control-Allow-Origin: *\r\n\r\n", blen);
    memcpy(p, body, (size_t)blen);
    p += blen;
    c->close_after = 1;
    c->in_flight = 1;
    if (conn_write(c, start, (size_t)(p - start)) != GW_OK) {
        conn_close(c);
        return;
    }
    request_done(c);
}

/* runtime.handle's answer: (status, headers table, body string). */
static void http_reply(void *ud, lua_State *L, int base, int n) {
    struct http_conn *c = ud;
    c->call = NULL;
    size_t blen = 0;
    const char *body = n >= 3 ? lua_tolstring(L, base + 2, &blen) : NULL;
    if (!body) blen = 0;
    int status = n >= 1 && lua_isinteger(L, base) ? (int)lua_tointeger(L, base) : 500;
    if (status < 200 || status > 999) status = 500; /* 1xx are not final answers */
    int no_body = status == 204 || status == 304;
    int send_body = !no_body && !c->head_only;
    const char *connection = connection_value(c);
    int close = connection && strcmp(connection, "close") == 0;
    /* Headers first, sized as they go; the body is copied last. */
    size_t cap = 512, len;
    char *p, *start;
    const char *ctype = JSON_TYPE;
    size_t ctype_len = sizeof JSON_TYPE - 1;
    if (n >= 2 && lua_istable(L, base + 1)) {
        lua_pushnil(L);
        while (lua_next(L, base + 1)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
                size_t kl, vl;
                lua_tolstring(L, -2, &kl);
                lua_tolstring(L, -1, &vl);
                cap += kl + vl + 4;
            }
            lua_pop(L, 1);
        }
    }
    cap += c->rid_len;
    start = p = out_reserve(cap + (send_body ? blen : 0));
    p = put_head(p, status, connection);
    if (c->rid_len) p = put_field(p, "X-Request-Id", 12, c->rid, c->rid_len);
    if (n >= 2 && lua_istable(L, base + 1)) {
        lua_pushnil(L);
        while (lua_next(L, base + 1)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
                size_t kl, vl;
                const char *k = lua_tolstring(L, -2, &kl);
                const char *v = lua_tolstring(L, -1, &vl);
                if (!header_safe(k, kl, 1) || !header_safe(v, vl, 0)) {
                    /* A line break would let the value start a header of its own. */
                    gw_log(GW_LOG_ERROR, "dropped response header \"%.64s\": invalid characters", k);
                } else if (kl == 12 && strcasecmp(k, "content-type") == 0) {
                    p = put_field(p, "Content-Type", 12, v, vl);
                    ctype = NULL;
                } else if (kl == 12 && c->rid_len && strcasecmp(k, "x-request-id") == 0) {
                    /* the gateway's own, below */
                } else if (!framing_header(k, kl)) {
                    p = put_field(p, k, kl, v, vl);
                }
            }
            lua_pop(L, 1);
        }
    }
    if (ctype) p = put_field(p, "Content-Type", 12, ctype, ctype_len);
    if (no_body) {
        /* RFC 9110 §8.6: never on a 204; on a 304 only the length a 200 would
         * have, which an action's answer does not tell. */
        memcpy(p, "\r\n", 2);
        p += 2;
    } else {
        p = put_str(p, "Content-Length: ");
        p = put_uint(p, blen);
        p = put_str(p, "\r\n\r\n");
    }
    if (send_body && blen) {
        memcpy(p, body, blen);
        p += blen;
    }
    len = (size_t)(p - start);
    if (close) c->close_after = 1;
    if (c->closing || conn_write(c, start, len) != GW_OK) {
        if (!c->closing) conn_close(c);
        return;
    }
    if (c->nwrites) {
        gw_drain_hold(GW_DRAIN_UNSENT);
        c->in_flight = 2; /* written once the queue drains */
        return;
    }
    if (!c->dispatching) request_done(c);
}

/* --- Requests --------------------------------------------------------- */

/* ctx.query: '&'-separated pairs, '+' a space, keys without a name
 * skipped, a repeated key a list (as Node's querystring). */
static void push_query(lua_State *L, const char *q, size_t len) {
    lua_newtable(L);
    char small[1024];
    char *buf = len < sizeof small ? small : malloc(len + 1); /* decoding never grows */
    if (!buf) return;
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        if (ke > q) {
            /* key and value decoded one after the other into 'buf' */
            size_t kl = gw_url_decode(q, (size_t)(ke - q), buf, 1);
            size_t vl = eq ? gw_url_decode(eq + 1, (size_t)(pe - eq - 1), buf + kl, 1) : 0;
            gw_lib_add_pair(L, buf, kl, buf + kl, vl);
        }
        q = pe + 1;
    }
    if (buf != small) free(buf);
}

static void push_headers(lua_State *L, const struct gw_http1 *p) {
    int n = gw_http1_nfields(p);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        const char *name, *value;
        size_t nl, vl;
        gw_http1_field(p, i, &name, &nl, &value, &vl);
        lua_pushlstring(L, name, nl);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isstring(L, -1)) {
            /* A repeated field: its values joined as one (RFC 9110 §5.3). */
            lua_pushstring(L, ", ");
            lua_pushlstring(L, value, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, value, vl);
        }
        lua_rawset(L, -3);
    }
}

static int method_served(const char *m) {
    static const char *const served[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof served / sizeof served[0]; i++)
        if (strcmp(m, served[i]) == 0) return 1;
    return 0;
}

static const struct gw_static_out static_out;

/* A request id the gateway makes: 32 hex digits from a splitmix64 sequence
 * seeded from /dev/urandom once per process (a worker seeds its own after
 * the fork), so ids are unique within a process and unpredictable across
 * processes without a read per request. */
static void make_request_id(char out[32]) {
    static const char digits[] = "0123456789abcdef";
    static uint64_t state;
    static int seeded;
    if (!seeded) {
        char hex[32];
        if (gw_random_hex(hex) == GW_OK)
            for (int i = 0; i < 16; i++) state = state << 4 | (uint64_t)(strchr(digits, hex[i]) - digits);
        state ^= (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
        seeded = 1;
    }
    for (int half = 0; half < 2; half++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        for (int i = 0; i < 16; i++) out[half * 16 + i] = digits[(z >> (60 - 4 * i)) & 15];
    }
}

/* The request's id into c->rid: the client's X-Request-Id when it is 1 to
 * REQUEST_ID_MAX visible ASCII characters (33-126), else a new one. */
static void set_request_id(struct http_conn *c) {
    const char *given = gw_http1_header(c->parser, "x-request-id");
    if (given) {
        size_t n = 0;
        while (n <= REQUEST_ID_MAX && given[n] > 32 && given[n] < 127) n++;
        if (n > 0 && n <= REQUEST_ID_MAX && given[n] == '\0') {
            memcpy(c->rid, given, n);
            c->rid_len = n;
            return;
        }
    }
    make_request_id(c->rid);
    c->rid_len = 32;
}

/* The client's address into 'out': the peer's, or, when the peer is one
 * of servers.web.trustedProxies, the one its X-Forwarded-For names (every
 * such header, in order, as one list: RFC 9110 §5.3), read from the right
 * (base/cidr.h). Returns its length. */
static size_t client_ip(const struct http_conn *c, char out[INET6_ADDRSTRLEN]) {
    const struct gw_config *cfg = gw_runtime_config(c->server->rt);
    const struct gw_http1 *hp = c->parser;
    size_t len = strlen(c->ip);
    memcpy(out, c->ip, len + 1);
    if (!cfg->trusted_proxies.n || !gw_cidr_match_text(&cfg->trusted_proxies, c->ip, len)) return len;
    char small[1024], *list = small;
    size_t total = 0, cap = sizeof small;
    int nf = gw_http1_nfields(hp);
    for (int i = 0; i < nf; i++) {
        const char *name, *value;
        size_t nl, vl;
        gw_http1_field(hp, i, &name, &nl, &value, &vl);
        if (nl != 15 || memcmp(name, "x-forwarded-for", 15) != 0) continue;
        if (total + vl + 2 > cap) {
            while (total + vl + 2 > cap) cap *= 2;
            char *b = list == small ? malloc(cap) : realloc(list, cap);
            if (!b) break;
            if (list == small) memcpy(b, small, total);
            list = b;
        }
        if (total) {
            list[total++] = ',';
            list[total++] = ' ';
        }
        memcpy(list + total, value, vl);
        total += vl;
    }
    size_t flen;
    const char *found = gw_cidr_forwarded(&cfg->trusted_proxies, list, total, &flen);
    unsigned char a[16];
    if (found && gw_cidr_addr(found, flen, a) == GW_OK) {
        /* Written as inet_ntop writes a peer's, whatever the header's spelling. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        int v4 = memcmp(a, mapped, 12) == 0;
        if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? a + 12 : a, out, INET6_ADDRSTRLEN)) len = strlen(out);
        else memcpy(out, c->ip, len + 1);
    }
    if (list != small) free(list);
    return len;
}

/* [-0, +1, m] The request's ctx table for the runtime: method, path
 * (decoded), rawPath, query, headers, body, remoteIP, remotePort. */
static void push_ctx(struct http_conn *c, lua_State *L, const char *method, const char *path,
                     size_t path_len, const char *raw, size_t raw_len, const char *query,
                     size_t query_len) {
    struct gw_http1 *hp = c->parser;
    lua_createtable(L, 0, 16); /* and what transport/web.lua adds: connection, data, route... */
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, path, path_len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, raw, raw_len);
    lua_setfield(L, -2, "rawPath");
    push_query(L, query, query_len);
    lua_setfield(L, -2, "query");
    push_headers(L, hp);
    lua_setfield(L, -2, "headers");
    size_t body_len;
    const char *body = gw_http1_body(hp, &body_len);
    if (body) {
        lua_pushlstring(L, body, body_len);
        lua_setfield(L, -2, "body");
    }
    char ip[INET6_ADDRSTRLEN];
    size_t ip_len = client_ip(c, ip);
    lua_pushlstring(L, ip, ip_len);
    lua_setfield(L, -2, "remoteIP");
    lua_pushinteger(L, c->port);
    lua_setfield(L, -2, "remotePort");
    set_request_id(c);
    lua_pushlstring(L, c->rid, c->rid_len);
    lua_setfield(L, -2, "requestId");
    if (c->tls || (c->parent && c->parent->tls)) { /* an HTTP/2 stream: its connection's */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "secure");
    }
}

/* Write an answer the core made itself (not the runtime's), closing after it
 * when the connection is not kept alive or the server stops; the next
 * request is read once it is all sent. */
static void send_answer(struct http_conn *c, const char *start, size_t len) {
    if (!c->keep_alive || c->server->stopping) c->close_after = 1;
    if (conn_write(c, start, len) != GW_OK) {
        conn_close(c);
        return;
    }
    if (c->nwrites) {
        gw_drain_hold(GW_DRAIN_UNSENT);
        c->in_flight = 2; /* written once the queue drains */
        return;
    }
    request_done(c);
}

/* A fixed answer of the operations endpoints, the connection kept. */
static void answer_fixed(struct http_conn *c, int status, const char *body, size_t blen) {
    char *p = out_reserve(512 + blen), *start = p;
    p = put_head(p, status, connection_value(c));
    p = put_str(p, "Content-Type: " JSON_TYPE "\r\nCache-Control: no-store\r\nContent-Length: ");
    p = put_uint(p, blen);
    p = put_str(p, "\r\n\r\n");
    if (!c->head_only) {
        memcpy(p, body, blen);
        p += blen;
    }
    send_answer(c, start, (size_t)(p - start));
}

/* /health, /ready and /metrics (net/ops.h), before routes and middleware:
 * a load balancer's check is never refused by an action's API key. */
static void answer_ops(struct http_conn *c, enum gw_ops_kind kind, const char *method, const char *path,
                       size_t path_len, const char *raw, size_t raw_len) {
    struct gw_http *h = c->server;
    const struct gw_config *cfg = gw_runtime_config(h->rt);
    if (kind == GW_OPS_HEALTH) {
        static const char ok[] = "{\"status\":\"ok\"}";
        answer_fixed(c, 200, ok, sizeof ok - 1);
        return;
    }
    if (kind == GW_OPS_READY) {
        char body[256];
        size_t blen;
        int status = gw_ops_ready(h->stopping, body, sizeof body, &blen);
        answer_fixed(c, status, body, blen);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    size_t ip_len = client_ip(c, ip);
    if (!gw_cidr_match_text(&cfg->metrics_allow, ip, ip_len)) {
        static const char no[] = "{\"error\":\"metrics are not served to this address "
                                 "(servers.web.metrics.allow)\",\"errors\":[\"metrics are not served "
                                 "to this address (servers.web.metrics.allow)\"]}";
        answer_fixed(c, 403, no, sizeof no - 1);
        return;
    }
    lua_State *L = gw_vm_state(gw_runtime_vm(h->rt));
    push_ctx(c, L, method, path, path_len, raw, raw_len, "", 0);
    gw_ops_push_figures(L);
    lua_setfield(L, -2, "figures");
    c->dispatching = 1;
    c->call = gw_call_new(h->rt, "metrics", http_reply, c);
    gw_call_run(c->call);
    c->dispatching = 0;
    if (c->in_flight == 1 && !c->call && !c->closing) request_done(c);
}

/* The request's path and query (raw); GW_ERR once a 400 is answered: an
 * HTTP/1.1 request without Host (RFC 9112 §3.2), or a target that is not
 * one. */
static int request_target(struct http_conn *c, const char **raw, size_t *raw_len, const char **query,
                          size_t *query_len) {
    struct gw_http1 *hp = c->parser;
    if (c->minor >= 1 && !gw_http1_header(hp, "host")) {
        answer_error(c, 400, "missing Host header");
        return GW_ERR;
    }
    size_t url_len;
    const char *url = gw_http1_url(hp, &url_len);
    if (gw_http1_split_target(url, url_len, raw, raw_len, query, query_len) != GW_OK) {
        answer_error(c, 400, "invalid request target");
        return GW_ERR;
    }
    return GW_OK;
}

/* The percent-decoded path, NUL-terminated, in 'small' or (when longer) a
 * buffer to free; NULL once the error is answered (400 for a bad escape). */
static char *decode_path(struct http_conn *c, const char *raw, size_t raw_len, char *small,
                         size_t small_len, long *dlen) {
    char *decoded = raw_len < small_len ? small : malloc(raw_len + 1);
    if (!decoded) {
        answer_error(c, 500, "out of memory");
        return NULL;
    }
    *dlen = gw_url_decode_strict(raw, raw_len, decoded);
    if (*dlen < 0) {
        if (decoded != small) free(decoded);
        answer_error(c, 400, "invalid path");
        return NULL;
    }
    decoded[*dlen] = '\0';
    return decoded;
}

/* The host of a Host header, without its port, when it is a name or an
 * address (an IPv6 one in brackets); its length, or 0. */
static size_t redirect_host(const char *host) {
    size_t n = 0;
    if (host[0] == '[') {
        while (host[++n] && host[n] != ']')
            if (!isxdigit((unsigned char)host[n]) && host[n] != ':' && host[n] != '.') return 0;
        return host[n] == ']' && n > 1 ? n + 1 : 0;
    }
    for (; host[n] && host[n] != ':'; n++)
        if (!isalnum((unsigned char)host[n]) && host[n] != '-' && host[n] != '.' && host[n] != '_') return 0;
    return n;
}

/* The redirect listener (servers.web.tls.redirectPort): every request gets
 * 308 to the same host, path and query on the TLS listener's port. */
static void answer_redirect(struct http_conn *c) {
    const char *host = gw_http1_header(c->parser, "host");
    size_t host_len = host ? redirect_host(host) : 0, raw_len, query_len, url_len;
    const char *raw, *query, *url = gw_http1_url(c->parser, &url_len);
    if (!host_len) {
        answer_error(c, 400, host ? "invalid Host header" : "missing Host header");
        return;
    }
    if (gw_http1_split_target(url, url_len, &raw, &raw_len, &query, &query_len) != GW_OK) {
        answer_error(c, 400, "invalid request target");
        return;
    }
    size_t target_len = query_len ? (size_t)(query + query_len - raw) : raw_len;
    char *loc = malloc(host_len + target_len + 32), *l = loc;
    if (!loc) gw_panic("out of memory");
    l = put_str(l, "https://");
    memcpy(l, host, host_len);
    l += host_len;
    if (c->server->redirect_port != 443) {
        *l++ = ':';
        l = put_uint(l, (size_t)c->server->redirect_port);
    }
    memcpy(l, raw, target_len);
    l += target_len;
    size_t loc_len = (size_t)(l - loc);
    /* The body names the location too, escaped for JSON. */
    char *p = out_reserve(512 + loc_len * 7), *start = p;
    p = put_head(p, 308, connection_value(c));
    p = put_field(p, "Location", 8, loc, loc_len);
    char *body = p + 256; /* written behind the head, then moved up */
    char *b = body;
    b = put_str(b, "{\"location\":\"");
    for (size_t i = 0; i < loc_len; i++) {
        unsigned char ch = (unsigned char)loc[i];
        if (ch == '"' || ch == '\\') {
            *b++ = '\\';
            *b++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            b += sprintf(b, "\\u%04x", ch);
        } else {
            *b++ = (char)ch;
        }
    }
    b = put_str(b, "\"}");
    size_t blen = (size_t)(b - body);
    free(loc);
    p = put_str(p, "Content-Type: " JSON_TYPE "\r\nContent-Length: ");
    p = put_uint(p, blen);
    p = put_str(p, "\r\n\r\n");
    if (!c->head_only) {
        memmove(p, body, blen);
        p += blen;
    }
    send_answer(c, start, (size_t)(p - start));
}

/* A complete request: a file, the probe, or the runtime. */
static void dispatch(struct http_conn *c) {
    struct gw_http *h = c->server;
    struct gw_http1 *hp = c->parser;
    const struct gw_config *cfg = gw_runtime_config(h->rt);
    const char *method = gw_http1_method(hp);
    c->in_flight = 1;
    c->keep_alive = gw_http1_keep_alive(hp);
    c->minor = gw_http1_minor(hp);
    c->head_only = strcmp(method, "HEAD") == 0;
    c->rid_len = 0;
    if (h->redirect_port) {
        answer_redirect(c);
        return;
    }
    if (!method_served(method)) {
        answer_error(c, 501, "method not implemented");
        return;
    }
    size_t raw_len, query_len;
    const char *raw, *query;
    if (request_target(c, &raw, &raw_len, &query, &query_len) != GW_OK) return;
    if (h->probe_fixed) {
        static const char fixed[] = "{\"ok\":true}";
        lua_State *L = gw_vm_state(gw_runtime_vm(h->rt));
        int top = lua_gettop(L);
        lua_pushinteger(L, 200);
        lua_pushnil(L);
        lua_pushlstring(L, fixed, sizeof fixed - 1);
        c->dispatching = 1;
        http_reply(c, L, top + 1, 3);
        c->dispatching = 0;
        lua_settop(L, top);
        if (c->in_flight == 1 && !c->closing) request_done(c);
        return;
    }
    char small[1024];
    long dlen;
    char *decoded = decode_path(c, raw, raw_len, small, sizeof small, &dlen);
    if (!decoded) return;
    enum gw_ops_kind ops = gw_ops_route(cfg, decoded, (size_t)dlen, h->ops_only || cfg->metrics_port < 0);
    if (ops != GW_OPS_NONE && (c->head_only || strcmp(method, "GET") == 0)) {
        answer_ops(c, ops, method, decoded, (size_t)dlen, raw, raw_len);
        if (decoded != small) free(decoded);
        return;
    }
    if (h->ops_only) {
        static const char none[] = "{\"error\":\"not found\",\"errors\":[\"not found\"]}";
        if (decoded != small) free(decoded);
        answer_fixed(c, 404, none, sizeof none - 1);
        return;
    }
    const char *rest;
    if ((strcmp(method, "GET") == 0 || c->head_only) && (rest = gw_static_rest(cfg->files_path, decoded))) {
        c->file = gw_static_new(&static_out, c, h->loop, cfg->public_dir, decoded, rest,
                                (size_t)dlen - (size_t)(rest - decoded), c->head_only,
                                gw_http1_header(hp, "if-none-match"),
                                gw_http1_header(hp, "if-modified-since"),
                                connection_value(c));
        if (decoded != small) free(decoded);
        if (!c->file) conn_close(c);
        return;
    }
    lua_State *L = gw_vm_state(gw_runtime_vm(h->rt));
    push_ctx(c, L, method, decoded, (size_t)dlen, raw, raw_len, query, query_len);
    if (decoded != small) free(decoded);
    c->dispatching = 1;
    c->call = gw_call_new(h->rt, "web", http_reply, c);
    gw_call_run(c->call);
    c->dispatching = 0;
    /* Answered already (no wait in the action): go on with the next one. */
    if (c->in_flight == 1 && !c->call && !c->closing) request_done(c);
}

/* --- wss:// ------------------------------------------------------------ */

static void tunnel_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    buf->base = tls_plain;
    buf->len = TLS_PLAIN_BUF;
}

/* What lws wrote: encrypted to the client. The reading stops while the
 * client's queue is over TUNNEL_MAX (pump restarts it). */
static void tunnel_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct tunnel *t = s->data;
    struct http_conn *c = t->c;
    if (!c) return;
    if (nread < 0) { /* lws closed the WebSocket: the client's connection follows */
        uv_read_stop(s);
        t->reading = 0;
        c->close_after = 1;
        if (!c->nwrites) conn_close(c);
        return;
    }
    if (nread == 0) return;
    c->last_active = uv_now(c->tcp.loop);
    if (conn_write(c, buf->base, (size_t)nread) != GW_OK) {
        conn_close(c);
        return;
    }
    if (c->queued > TUNNEL_MAX) {
        uv_read_stop(s);
        t->reading = 0;
    }
}

static void tunnel_written(uv_write_t *w, int status) {
    struct tunnel_write *o = (struct tunnel_write *)w;
    struct tunnel *t = o->t;
    t->queued -= o->len;
    free(o);
    struct http_conn *c = t->c;
    if (!c) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->eof && !t->queued) {
        conn_close(c);
        return;
    }
    if (t->queued <= TUNNEL_MAX && c->reading_stopped && !c->eof) {
        c->reading_stopped = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* What the client sent, decrypted: written to lws. The client's reading
 * stops while lws has more than TUNNEL_MAX not taken. */
static void tunnel_send(struct http_conn *c, const char *data, size_t len) {
    struct tunnel *t = c->tunnel;
    size_t done = 0;
    if (!t->queued) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&t->pipe, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0) done = (size_t)n;
        if (done == len) return;
    }
    struct tunnel_write *o = malloc(sizeof *o + len - done);
    if (!o) gw_panic("out of memory");
    o->t = t;
    o->len = len - done;
    memcpy(o->data, data + done, o->len);
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    if (uv_write(&o->req, (uv_stream_t *)&t->pipe, &b, 1, tunnel_written) != 0) {
        free(o);
        conn_close(c);
        return;
    }
    t->queued += o->len;
    if (t->queued > TUNNEL_MAX && !c->reading_stopped) {
        c->reading_stopped = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* pump() of a tunnel: the client has taken some of its queue. */
static void tunnel_pump(struct http_conn *c) {
    struct tunnel *t = c->tunnel;
    if (c->close_after) {
        if (!c->nwrites) conn_close(c);
        return;
    }
    if (!t->reading && c->queued <= TUNNEL_MAX) {
        t->reading = 1;
        uv_read_start((uv_stream_t *)&t->pipe, tunnel_alloc, tunnel_read);
    }
}

/* The socket pair of a wss:// upgrade: returns lws's end, or -1. */
static int tunnel_open(struct http_conn *c) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    struct tunnel *t = calloc(1, sizeof *t);
    if (!t) gw_panic("out of memory");
    if (uv_pipe_init(c->tcp.loop, &t->pipe, 0) != 0) {
        free(t);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    t->pipe.data = t;
    t->c = c;
    if (uv_pipe_open(&t->pipe, sv[1]) != 0) {
        close(sv[1]);
        uv_close((uv_handle_t *)&t->pipe, tunnel_closed);
        close(sv[0]);
        return -1;
    }
    c->tunnel = t;
    t->reading = 1;
    uv_read_start((uv_stream_t *)&t->pipe, tunnel_alloc, tunnel_read);
    return sv[0];
}

/* Rebuild the upgrade request for libwebsockets, with what followed it,
 * and hand it the socket with the connection object the runtime prepared
 * ('ref'): lws parses the request again and runs the handshake. */
static void hand_to_lws(struct http_conn *c, const char *rest, size_t rest_len, int ref) {
    struct gw_http1 *hp = c->parser;
    size_t url_len, path_len, q_len;
    const char *url = gw_http1_url(hp, &url_len), *path, *q;
    /* lws takes the origin-form: an absolute-form target loses its authority. */
    if (gw_http1_split_target(url, url_len, &path, &path_len, &q, &q_len) == GW_OK) {
        url = path;
        url_len = q_len ? (size_t)(q + q_len - path) : path_len;
    }
    size_t need = url_len + 32 + rest_len;
    int nf = gw_http1_nfields(hp);
    for (int i = 0; i < nf; i++) {
        const char *name, *value;
        size_t nl, vl;
        gw_http1_field(hp, i, &name, &nl, &value, &vl);
        need += nl + vl + 4;
    }
    char *buf = malloc(need);
    int fd = -1;
    uv_os_fd_t ufd;
    if (!buf || (c->tls ? (fd = tunnel_open(c)) < 0
                        : uv_fileno((uv_handle_t *)&c->tcp, &ufd) != 0 || (fd = dup(ufd)) < 0)) {
        free(buf);
        luaL_unref(gw_vm_state(gw_runtime_vm(c->server->rt)), LUA_REGISTRYINDEX, ref);
        conn_close(c);
        return;
    }
    char *p = buf;
    p += sprintf(p, "GET ");
    memcpy(p, url, url_len);
    p += url_len;
    p += sprintf(p, " HTTP/1.%d\r\n", gw_http1_minor(hp));
    for (int i = 0; i < nf; i++) {
        const char *name, *value;
        size_t nl, vl;
        gw_http1_field(hp, i, &name, &nl, &value, &vl);
        memcpy(p, name, nl);
        p += nl;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, value, vl);
        p += vl;
        *p++ = '\r';
        *p++ = '\n';
    }
    *p++ = '\r';
    *p++ = '\n';
    if (rest_len) memcpy(p, rest, rest_len); /* 'rest' is NULL when nothing was read behind */
    p += rest_len;
    if (c->tls) {
        /* The TLS connection stays, as the tunnel's client side (it keeps
         * its place under the caps; the WebSocket takes one more). */
        c->pending_len = 0;
        c->in_flight = 0;
        c->open = 0;
        gw_metrics.conns[GW_METRICS_HTTP]--;
        if (c->reading_stopped && !c->eof) {
            c->reading_stopped = 0;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
    } else {
        /* The WebSocket takes its own place once open (ws.c). */
        gw_conncap_leave(c->peer);
        c->counted = 0;
        conn_close(c); /* closes our descriptor; lws owns the duplicate */
    }
    /* lws closes 'fd' itself when it refuses the handshake (later, from a
     * libuv close callback: closing it here too would close whatever
     * socket has taken its number by then). */
    if (gw_ws_adopt(c->server->ws, c->server->ws_vhost, fd, buf, (size_t)(p - buf), ref) != GW_OK)
        gw_log(GW_LOG_INFO, "libwebsockets refused a WebSocket upgrade");
    free(buf);
}

/* A GET asking to switch to WebSocket while WebSockets are on: the
 * runtime decides which consumer, if any, takes its path. */
static int is_ws_upgrade(const struct http_conn *c) {
    const struct gw_http1 *hp = c->parser;
    const char *up = gw_http1_header(hp, "upgrade");
    if (c->server->ops_only || c->server->redirect_port || !gw_runtime_config(c->server->rt)->ws_enabled || !up ||
        strcasecmp(up, "websocket") != 0)
        return 0;
    return strcmp(gw_http1_method(hp), "GET") == 0;
}

/* runtime.handle("upgrade")'s answer: 101 and the prepared connection
 * object (accepted), nothing (no consumer has the path: served as plain
 * HTTP), or an HTTP answer (status, headers, body) given before closing.
 * The first two are acted on from the loop (pump), never from inside the
 * call's completion. */
static void upgrade_reply(void *ud, lua_State *L, int base, int n) {
    struct http_conn *c = ud;
    c->call = NULL;
    int status = n >= 1 && lua_isinteger(L, base) ? (int)lua_tointeger(L, base) : 0;
    if (status == 101 && n >= 4 && lua_istable(L, base + 3)) {
        lua_pushvalue(L, base + 3);
        c->upgrade_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->upgrade_state = UPGRADE_ACCEPTED;
        schedule(c);
        return;
    }
    if (status == 0) {
        c->upgrade_state = UPGRADE_PASS;
        schedule(c);
        return;
    }
    c->upgrading = 0;
    http_reply(c, L, base, n); /* keep_alive is off: the connection closes after it */
}

/* Ask the runtime about the upgrade request the parser holds; the bytes
 * that followed it wait in 'pending' (frames a client sent behind it). */
static void start_upgrade(struct http_conn *c) {
    struct gw_http *h = c->server;
    struct gw_http1 *hp = c->parser;
    c->in_flight = 1;
    c->keep_alive = 0; /* a refused upgrade closes: what follows it may be frames */
    c->minor = gw_http1_minor(hp);
    c->head_only = 0;
    size_t raw_len, query_len;
    const char *raw, *query;
    if (request_target(c, &raw, &raw_len, &query, &query_len) != GW_OK) return;
    char small[1024];
    long dlen;
    char *decoded = decode_path(c, raw, raw_len, small, sizeof small, &dlen);
    if (!decoded) return;
    lua_State *L = gw_vm_state(gw_runtime_vm(h->rt));
    push_ctx(c, L, "GET", decoded, (size_t)dlen, raw, raw_len, query, query_len);
    if (decoded != small) free(decoded);
    /* RFC 6455 §4.2.1: what lws would refuse after the runtime said yes. */
    const char *key = gw_http1_header(hp, "sec-websocket-key");
    const char *version = gw_http1_header(hp, "sec-websocket-version");
    if (!key || !*key || !version || strcmp(version, "13") != 0) {
        lua_pushstring(L, !key || !*key ? "missing Sec-WebSocket-Key"
                                        : "unsupported Sec-WebSocket-Version (13 is)");
        lua_setfield(L, -2, "badHandshake");
    }
    c->upgrading = 1;
    c->dispatching = 1;
    c->call = gw_call_new(h->rt, "upgrade", upgrade_reply, c);
    gw_call_run(c->call);
    c->dispatching = 0;
    if (c->in_flight == 1 && !c->call && !c->closing && !c->upgrade_state) request_done(c);
}

/* pump(): act on the runtime's decision about an upgrade. */
static void finish_upgrade(struct http_conn *c) {
    int state = c->upgrade_state, ref = c->upgrade_ref;
    c->upgrade_state = 0;
    c->upgrade_ref = 0;
    c->upgrading = 0;
    if (state == UPGRADE_ACCEPTED) {
        hand_to_lws(c, c->pending, c->pending_len, ref);
        return;
    }
    /* Not ours to switch: answered as plain HTTP (RFC 9110 §7.8). */
    c->in_flight = 0;
    dispatch(c);
    gw_http1_next(c->parser);
}

/* Keep the bytes not parsed yet. */
static void keep_pending(struct http_conn *c, const char *data, size_t len) {
    if (data >= c->pending && data < c->pending + c->pending_cap) {
        memmove(c->pending, data, len);
        c->pending_len = len;
        return;
    }
    if (len > c->pending_cap) {
        size_t cap = c->pending_cap ? c->pending_cap : 4096;
        while (cap < len) cap *= 2;
        char *b = realloc(c->pending, cap);
        if (!b) gw_panic("out of memory");
        c->pending = b;
        c->pending_cap = cap;
    }
    memcpy(c->pending, data, len);
    c->pending_len = len;
}

/* Parse requests out of 'data' while the connection is free to answer
 * them; keep the rest for later. */
static void process(struct http_conn *c, const char *data, size_t len) {
    while (len && !c->closing) {
        if (c->in_flight || c->file || c->nwrites || c->close_after) {
            keep_pending(c, data, len);
            return;
        }
        enum gw_http1_event ev;
        size_t n = gw_http1_feed(c->parser, data, len, &ev);
        data += n;
        len -= n;
        switch (ev) {
        case GW_HTTP1_MORE:
            if (len) { /* the parser stopped without saying why */
                answer_error(c, 400, "malformed HTTP request");
                return;
            }
            break;
        case GW_HTTP1_CONTINUE:
            if (conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) != GW_OK) {
                conn_close(c);
                return;
            }
            break;
        case GW_HTTP1_ERROR:
            answer_error(c, gw_http1_status(c->parser), gw_http1_message(c->parser));
            return;
        case GW_HTTP1_UPGRADE:
            if (is_ws_upgrade(c)) {
                size_t blen;
                if (gw_http1_body(c->parser, &blen)) {
                    /* lws would read the body as frames: refuse rather than guess. */
                    answer_error(c, 400, "WebSocket upgrade request with a body");
                    return;
                }
                if (len) keep_pending(c, data, len);
                else c->pending_len = 0;
                start_upgrade(c);
                return;
            }
            if (is_h2c_upgrade(c)) {
                start_h2c(c, data, len);
                return;
            }
            /* Not ours to switch: answered as plain HTTP (RFC 9110 §7.8). */
            /* fall through */
        case GW_HTTP1_REQUEST:
            dispatch(c);
            gw_http1_next(c->parser);
            break;
        }
    }
    if (!c->closing && !len) c->pending_len = 0;
}

/* Deferred work for 'c': the next chunk of a file, or the next request. */
static void pump(struct http_conn *c) {
    if (c->closing) return;
    if (c->h2) {
        h2_flush(c);
        return;
    }
    if (c->tunnel) {
        tunnel_pump(c);
        return;
    }
    if (c->upgrade_state) {
        finish_upgrade(c);
        if (c->closing) return;
    }
    if (c->in_flight == 2 && c->nwrites == 0) {
        gw_drain_release(GW_DRAIN_UNSENT);
        request_done(c);
        if (c->closing) return;
    }
    if (c->close_after && !c->in_flight && !c->file && c->nwrites == 0) {
        conn_close(c); /* the last answer has left (an error's, written in parts) */
        return;
    }
    if (c->file) {
        if (c->nwrites) return;
        enum gw_static_step step = gw_static_writable(c->file);
        if (step == GW_STATIC_MORE) return;
        gw_static_free(c->file);
        c->file = NULL;
        if (step == GW_STATIC_ERROR) {
            conn_close(c);
            return;
        }
        request_done(c);
        if (c->closing) return;
    }
    if (c->in_flight || c->nwrites) return;
    if (c->pending_len) {
        /* 'process' may keep a tail of pending in pending: it moves it down. */
        process(c, c->pending, c->pending_len);
        if (c->closing) return;
    }
    if (c->eof && !c->in_flight && !c->file && !c->nwrites) {
        conn_close(c); /* every request the client sent before its EOF is answered */
        return;
    }
    if (c->reading_stopped && !c->eof && !c->in_flight && c->pending_len < PENDING_MAX) {
        c->reading_stopped = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* --- Files --------------------------------------------------------------- */

static int static_write(void *conn, const char *data, size_t len) {
    struct http_conn *c = conn;
    c->last_active = uv_now(c->server->loop);
    return conn_write(c, data, len);
}

static void static_wake(void *conn) { schedule(conn); }

static const struct gw_static_out static_out = {static_write, static_wake};

/* --- The socket ---------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    if (read_buf_busy) {
        /* Only while a callback reads again from inside another: never in practice. */
        buf->base = malloc(READ_BUF);
        buf->len = buf->base ? READ_BUF : 0;
        return;
    }
    read_buf_busy = 1;
    buf->base = read_buf;
    buf->len = READ_BUF;
}

/* Has the client reset the connection (it had closed it altogether)? */
static int peer_reset(struct http_conn *c) {
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof err;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 1;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0;
}

/* The client shut its write side (or closed). What it sent before is
 * still answered, then the connection closes: a client may half-close
 * after its request (shutdown(SHUT_WR)). One that closed altogether is
 * told apart only by writing to it: an action still running gets an
 * interim "100 Continue" (RFC 9110 §15.2: clients skip unexpected 1xx),
 * which a closed socket answers with a reset, seen below or by the sweep;
 * then its call is cancelled as before. */
static void half_closed(struct http_conn *c) {
    if (c->h2) { /* HTTP/2 has no half-close of its own: the client is gone */
        conn_close(c);
        return;
    }
    c->eof = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->tunnel) { /* closed once lws has taken what it was sent */
        if (!c->tunnel->queued) conn_close(c);
        return;
    }
    if (c->fresh || !(c->in_flight || c->file || c->nwrites || c->pending_len)) {
        conn_close(c); /* nothing asked (or part of a preface), or a request that can no longer complete */
        return;
    }
    if (c->call && c->in_flight == 1 && !c->nwrites && c->minor >= 1 && !c->upgrading) {
        if (conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) != GW_OK || peer_reset(c)) conn_close(c);
    }
}

/* Bytes of requests (plaintext) read: parsed now, or kept behind those
 * waiting. */
static inline __attribute__((always_inline)) void got_bytes(struct http_conn *c, const char *data, size_t nread) {
    if ((c->h2 || c->fresh) && h2_sniff(c, data, nread)) return; /* HTTP/2's, or the first bytes of its preface */
    if (c->pending_len) {
        /* Behind bytes already waiting: append, parse in order. */
        size_t len = c->pending_len;
        if (len + (size_t)nread > c->pending_cap) {
            size_t cap = c->pending_cap * 2;
            while (cap < len + (size_t)nread) cap *= 2;
            char *b = realloc(c->pending, cap);
            if (!b) gw_panic("out of memory");
            c->pending = b;
            c->pending_cap = cap;
        }
        memcpy(c->pending + len, data, (size_t)nread);
        c->pending_len = len + (size_t)nread;
        if (!(c->in_flight || c->file || c->nwrites)) process(c, c->pending, c->pending_len);
    } else {
        process(c, data, (size_t)nread);
    }
    if (!c->closing && c->pending_len >= PENDING_MAX && !c->reading_stopped) {
        c->reading_stopped = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void tunnel_send(struct http_conn *c, const char *data, size_t len);

/* Plain HTTP sent to the TLS listener: a plaintext 400 (as nginx does)
 * that a person trying http:// there can read, then close. */
static void refuse_plain_http(struct http_conn *c) {
    static const char body[] = "{\"error\":\"plain HTTP request sent to the HTTPS port\","
                               "\"errors\":[\"plain HTTP request sent to the HTTPS port\"]}";
    char *p = out_reserve(512 + sizeof body), *start = p;
    p = put_head(p, 400, "close");
    p = put_str(p, "Content-Type: " JSON_TYPE "\r\nContent-Length: ");
    p = put_uint(p, sizeof body - 1);
    p = put_str(p, "\r\n\r\n");
    memcpy(p, body, sizeof body - 1);
    p += sizeof body - 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading_stopped = 1;
    c->close_after = 1;
    if (raw_write(c, start, (size_t)(p - start)) != GW_OK || c->nwrites == 0) conn_close(c);
}

/* Ciphertext read on a TLS connection: the handshake, then plaintext for
 * the parser (or, once upgraded, for lws). */
static void tls_read(struct http_conn *c, const char *data, size_t len) {
    gw_tls_feed(c->tls, data, len);
    for (;;) {
        long n = gw_tls_read(c->tls, tls_plain, TLS_PLAIN_BUF);
        if (n > 0) {
            if (c->tunnel) tunnel_send(c, tls_plain, (size_t)n);
            else got_bytes(c, tls_plain, (size_t)n);
            if (c->closing) return;
            continue;
        }
        if (tls_flush(c) != GW_OK) { /* what the handshake wrote, an alert */
            conn_close(c);
            return;
        }
        if (n == GW_TLS_AGAIN) return;
        if (n == GW_TLS_CLOSED) {
            half_closed(c);
        } else if (n == GW_TLS_PLAIN_HTTP) {
            refuse_plain_http(c);
        } else {
            gw_log(GW_LOG_DEBUG, "TLS from %s: %s", c->ip, gw_tls_error(c->tls));
            conn_close(c);
        }
        return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct http_conn *c = s->data;
    int own = buf->base == read_buf;
    if (nread < 0) {
        if (own) read_buf_busy = 0;
        else free(buf->base);
        if (nread == UV_EOF) half_closed(c);
        else conn_close(c);
        return;
    }
    c->last_active = uv_now(c->tcp.loop);
    if (c->idle) { /* a request's first byte */
        c->idle = 0;
        c->started = c->last_active;
    }
    if (nread > 0) {
        if (c->tls) tls_read(c, buf->base, (size_t)nread);
        else got_bytes(c, buf->base, (size_t)nread);
    }
    if (own) read_buf_busy = 0;
    else free(buf->base);
}

static void on_closed(uv_handle_t *h) {
    struct http_conn *c = h->data;
    while (c->streams) {
        struct http_conn *s = c->streams;
        c->streams = s->snext;
        gw_http1_free(s->parser);
        free(s);
    }
    gw_h2_free(c->h2);
    if (c->open) gw_metrics.conns[GW_METRICS_HTTP]--;
    if (c->counted) gw_conncap_leave(c->peer);
    gw_tls_conn_free(c->tls);
    gw_http1_free(c->parser);
    free(c->pending);
    free(c);
}

static void tunnel_closed(uv_handle_t *h) { free(h->data); }

/* A closing connection or stream lets go of its request in flight: the
 * drain's hold on an unsent answer, the action (cancelled), a static file. */
static void drop_request(struct http_conn *c) {
    if (c->in_flight == 2) gw_drain_release(GW_DRAIN_UNSENT);
    if (c->call) {
        struct gw_call *call = c->call;
        c->call = NULL;
        gw_call_cancel(call);
    }
    if (c->file) {
        gw_static_free(c->file);
        c->file = NULL;
    }
}

static void conn_close(struct http_conn *c) {
    if (c->parent) {
        stream_close(c);
        return;
    }
    if (c->closing) return;
    c->closing = 1;
    unschedule(c);
    for (struct http_conn *s = c->streams; s; s = s->snext) stream_close(s);
    if (c->h2_unsent) gw_drain_release(GW_DRAIN_UNSENT);
    c->h2_unsent = 0;
    drop_request(c);
    if (c->upgrade_ref) {
        luaL_unref(gw_vm_state(gw_runtime_vm(c->server->rt)), LUA_REGISTRYINDEX, c->upgrade_ref);
        c->upgrade_ref = 0;
    }
    if (c->tunnel) {
        c->tunnel->c = NULL;
        uv_close((uv_handle_t *)&c->tunnel->pipe, tunnel_closed);
        c->tunnel = NULL;
    }
    if (c->tls && !c->nwrites) {
        /* A close_notify, if the socket takes it now: a client reading to
         * the end can tell the end from a cut. */
        gw_tls_close_notify(c->tls);
        size_t n = gw_tls_take(c->tls, tls_cipher, TLS_CIPHER_BUF);
        uv_buf_t b = uv_buf_init(tls_cipher, (unsigned)n);
        if (n) uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    if (c->prev) c->prev->next = c->next;
    else c->server->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Past a connection cap: a 503 written at once, without reading the
 * request (whatever it is, a WebSocket upgrade too), and the socket closed. */
static void refuse(struct gw_http *h, int fd, const char *message) {
    char body[160], answer[512];
    int blen = snprintf(body, sizeof body, "{\"error\":\"%s\",\"errors\":[\"%s\"]}", message, message);
    int n = snprintf(answer, sizeof answer, "HTTP/1.1 503 Service Unavailable\r\n%sConnection: close\r\n"
                     "Content-Type: " JSON_TYPE "\r\nContent-Length: %d\r\n"
                     "Access-Control-Allow-Origin: *\r\n\r\n%s", date_line(), blen, body);
    gw_conncap_refuse(h->loop, fd, answer, (size_t)n);
}

void gw_http_accept(struct gw_http *h, int fd) {
    struct gw_conncap_peer *peer;
    const char *why;
    if (gw_conncap_take(fd, 0, &peer, &why) != GW_OK) {
        if (h->tls) close(fd); /* a plaintext 503 would be noise to a TLS client */
        else refuse(h, fd, why);
        return;
    }
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c) {
        gw_conncap_leave(peer);
        close(fd);
        return;
    }
    c->server = h;
    c->peer = peer;
    c->counted = 1;
    if (h->tls && !(c->tls = gw_tls_conn_new(h->tls))) {
        gw_conncap_leave(peer);
        close(fd);
        free(c);
        return;
    }
    const struct gw_config *cfg = gw_runtime_config(h->rt);
    struct gw_http1_limits lim = {(uint32_t)cfg->max_header_size, cfg->max_headers, cfg->max_body_size};
    if (!(c->parser = gw_http1_new(&lim))) {
        gw_conncap_leave(peer);
        close(fd);
        gw_tls_conn_free(c->tls);
        free(c);
        return;
    }
    if (uv_tcp_init(h->loop, &c->tcp) != 0) {
        gw_conncap_leave(peer);
        close(fd);
        gw_tls_conn_free(c->tls);
        gw_http1_free(c->parser);
        free(c);
        return;
    }
    c->tcp.data = c;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    c->tcp.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, c->ip, sizeof c->ip);
            c->port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, c->ip, sizeof c->ip);
            c->port = ntohs(a->sin6_port);
        }
    }
    c->last_active = c->started = uv_now(h->loop);
    c->fresh = cfg->h2_enabled;
    if (h->tls && h->alpn_h2 != cfg->h2_enabled) {
        /* ALPN "h2": the client's first bytes are then the preface, which
         * h2_sniff finds in the plaintext as on a plain connection. */
        gw_tls_set_alpn(h->tls, cfg->h2_enabled ? "h2,http/1.1" : "http/1.1");
        h->alpn_h2 = cfg->h2_enabled;
    }
    c->open = 1;
    gw_metrics.conns[GW_METRICS_HTTP]++;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) conn_close(c);
}

/* A request body that stopped, or trickles below minBodyRate (averaged
 * from the first sweep that saw it, once RATE_GRACE_MS have passed)? */
static int body_too_slow(struct http_conn *c, const struct gw_config *cfg, double now, long long got) {
    if (now - c->last_active > (double)cfg->body_timeout) return 1;
    if (!c->body_mark) {
        c->body_mark = now;
        c->body_mark_len = got;
        return 0;
    }
    double elapsed = now - c->body_mark;
    return cfg->min_body_rate > 0 && elapsed >= RATE_GRACE_MS &&
           (double)(got - c->body_mark_len) * 1000.0 < (double)cfg->min_body_rate * elapsed;
}

/* --- HTTP/2 ------------------------------------------------------------- */

/* A stream's answer, as HTTP/1.1 text, into the session: framed when the
 * connection is next flushed. */
static int stream_write(struct http_conn *c, const char *data, size_t len) {
    struct http_conn *p = c->parent;
    int r = c->stream_id && !p->closing ? gw_h2_write(p->h2, c->stream_id, data, len) : GW_ERR;
    if (r < 0) return GW_ERR;
    c->nwrites = r; /* bytes wait in the session: h2_sent() says when they have gone */
    schedule(p);
    return GW_OK;
}

/* The stream is done with on our side (answered, failed, or its client
 * went away): its action is cancelled, its file closed. It is freed when
 * the session closes it (h2_closed) or with its connection. */
static void stream_close(struct http_conn *c) {
    if (c->closing) return;
    c->closing = 1;
    unschedule(c);
    drop_request(c);
    if (c->stream_id && !c->parent->closing) {
        gw_h2_reset(c->parent->h2, c->stream_id); /* nothing when its answer is whole */
        schedule(c->parent);
    }
}

static void *h2_open(void *conn, int32_t id) {
    struct http_conn *p = conn;
    struct gw_http *h = p->server;
    const struct gw_config *cfg = gw_runtime_config(h->rt);
    struct gw_http1_limits lim = {(uint32_t)cfg->max_header_size, cfg->max_headers, cfg->max_body_size};
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->parser = gw_http1_new(&lim))) {
        free(c);
        return NULL;
    }
    c->server = h;
    c->parent = p;
    c->stream_id = id;
    memcpy(c->ip, p->ip, sizeof c->ip);
    c->port = p->port;
    c->last_active = c->started = uv_now(h->loop);
    c->snext = p->streams;
    if (p->streams) p->streams->sprev = c;
    p->streams = c;
    return c;
}

/* A stream's whole request: parsed as the HTTP/1.1 text it was written
 * as, then answered as an HTTP/1.1 request is. */
static void h2_request(void *stream, const char *text, size_t len, int status, const char *message) {
    struct http_conn *c = stream;
    if (c->delivered || c->closing) return; /* answered already (a timeout) */
    c->delivered = 1;
    if (status) {
        answer_error(c, status, message);
        return;
    }
    while (len && !c->closing) {
        enum gw_http1_event ev;
        size_t n = gw_http1_feed(c->parser, text, len, &ev);
        text += n;
        len -= n;
        if (ev == GW_HTTP1_ERROR) {
            answer_error(c, gw_http1_status(c->parser), gw_http1_message(c->parser));
            return;
        }
        if (ev == GW_HTTP1_REQUEST || ev == GW_HTTP1_UPGRADE) {
            dispatch(c); /* CONNECT comes as an upgrade: 501 */
            return;
        }
    }
    if (!c->closing) answer_error(c, 400, "malformed HTTP request");
}

static void h2_received(void *stream, size_t len) {
    struct http_conn *c = stream;
    c->last_active = uv_now(c->server->loop);
    c->h2_got += (long long)len;
}

static void h2_sent(void *stream) {
    struct http_conn *c = stream;
    c->nwrites = 0;
    c->last_active = uv_now(c->server->loop);
    schedule(c);
}

/* The session closed the stream: after its answer, or on a reset (the
 * client cancelled it: its action is cancelled, as a closed HTTP/1.1
 * connection's is). */
static void h2_closed(void *stream, uint32_t error) {
    (void)error;
    struct http_conn *c = stream, *p = c->parent;
    c->stream_id = 0;
    stream_close(c);
    if (c->sprev) c->sprev->snext = c->snext;
    else p->streams = c->snext;
    if (c->snext) c->snext->sprev = c->sprev;
    gw_http1_free(c->parser);
    free(c);
}

static const struct gw_h2_ops h2_ops = {h2_open, h2_request, h2_received, h2_sent, h2_closed};

/* Frame what the session has for the client onto the socket, as far as
 * the socket's queue allows; close once the session is over. */
static void h2_flush(struct http_conn *c) {
    int over = 0;
    while (!c->closing) {
        if (c->queued >= H2_QUEUE_MAX) break; /* on_written comes back here */
        const char *data;
        ssize_t n = gw_h2_pull(c->h2, &data);
        if (n == 0) {
            over = 1;
            break;
        }
        if (n < 0 || conn_write(c, data, (size_t)n) != GW_OK) {
            conn_close(c);
            return;
        }
    }
    if (c->closing) return;
    int held = c->nwrites > 0;
    if (held != c->h2_unsent) {
        if (held) gw_drain_hold(GW_DRAIN_UNSENT);
        else gw_drain_release(GW_DRAIN_UNSENT);
        c->h2_unsent = held;
    }
    if (over && (c->close_after || gw_h2_done(c->h2))) {
        if (c->nwrites == 0) conn_close(c);
        return;
    }
    /* A client that sends but does not read (pings, resets) waits for its queue. */
    if (c->queued >= H2_QUEUE_MAX && !c->reading_stopped) {
        c->reading_stopped = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    } else if (c->queued < H2_QUEUE_MAX && c->reading_stopped && !c->close_after) {
        c->reading_stopped = 0;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* Bytes for the session; then what it answers goes out. */
static void h2_input(struct http_conn *c, const char *data, size_t len) {
    if (gw_h2_feed(c->h2, data, len) != GW_OK) {
        c->close_after = 1; /* the GOAWAY the session queued goes first */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading_stopped = 1;
    }
    if (!c->closing) h2_flush(c);
}

/* Serve HTTP/2 on 'c', whose first bytes (the client's preface, then
 * whatever followed it) are 'data'. */
static void start_h2(struct http_conn *c, const char *data, size_t len) {
    const struct gw_config *cfg = gw_runtime_config(c->server->rt);
    struct gw_h2_limits lim = {(uint32_t)cfg->max_header_size, cfg->max_headers, cfg->max_body_size,
                               (uint32_t)cfg->h2_max_streams, (uint32_t)cfg->h2_window};
    c->fresh = 0;
    c->idle = 0;
    if (!(c->h2 = gw_h2_new(&lim, &h2_ops, c))) {
        conn_close(c);
        return;
    }
    h2_input(c, data, len);
}

/* "Upgrade: h2c" with HTTP2-Settings on a request without a body (RFC 7540
 * §3.2; a body would have to be read before the switch): served. */
static int is_h2c_upgrade(const struct http_conn *c) {
    const struct gw_http1 *hp = c->parser;
    const char *up = gw_http1_header(hp, "upgrade");
    size_t blen;
    return !c->tls && up && strcasecmp(up, "h2c") == 0 && gw_http1_header(hp, "http2-settings") &&
           !gw_http1_body(hp, &blen) && gw_runtime_config(c->server->rt)->h2_enabled;
}

/* Switch to HTTP/2 after the request the parser holds: 101, then that
 * request answered on stream 1, then the client's preface and frames
 * ('rest' is what followed the request). */
static void start_h2c(struct http_conn *c, const char *rest, size_t rest_len) {
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    const struct gw_config *cfg = gw_runtime_config(c->server->rt);
    struct gw_h2_limits lim = {(uint32_t)cfg->max_header_size, cfg->max_headers, cfg->max_body_size,
                               (uint32_t)cfg->h2_max_streams, (uint32_t)cfg->h2_window};
    char *tail = rest_len ? malloc(rest_len) : NULL; /* 'rest' may lie in 'pending' */
    if (rest_len && !tail) gw_panic("out of memory");
    if (rest_len) memcpy(tail, rest, rest_len);
    c->pending_len = 0;
    c->fresh = 0;
    struct http_conn *s = NULL;
    if (conn_write(c, ok, sizeof ok - 1) != GW_OK || !(c->h2 = gw_h2_new(&lim, &h2_ops, c)) ||
        !(s = h2_open(c, 1))) {
        conn_close(c);
        free(tail);
        return;
    }
    struct gw_http1 *request = c->parser; /* the stream takes the request read */
    c->parser = s->parser;
    s->parser = request;
    s->delivered = 1;
    if (gw_h2_upgrade(c->h2, gw_http1_header(request, "http2-settings"),
                      strcmp(gw_http1_method(request), "HEAD") == 0, s) != GW_OK) {
        c->close_after = 1; /* after the GOAWAY; the stream goes with the connection */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading_stopped = 1;
        stream_close(s);
        h2_flush(c);
        free(tail);
        return;
    }
    dispatch(s);
    if (!c->closing) {
        if (tail) h2_input(c, tail, rest_len);
        else h2_flush(c);
    }
    free(tail);
}

/* A read on a connection that may speak HTTP/2: its bytes go to the
 * session, or (the first bytes) are matched against the preface. Returns
 * 0 when the connection speaks HTTP/1.1 and 'data' is still to be read
 * as such. */
static int h2_sniff(struct http_conn *c, const char *data, size_t len) {
    if (c->h2) {
        if (!c->close_after) h2_input(c, data, len);
        return 1;
    }
    size_t have = c->pending_len, n = have + len;
    size_t cmp = n < GW_H2_PREFACE_LEN ? len : GW_H2_PREFACE_LEN - have;
    if (memcmp(data, GW_H2_PREFACE + have, cmp) != 0) {
        c->fresh = 0;
        return 0;
    }
    if (n > c->pending_cap) { /* once per connection: the bytes that came before are kept */
        char *p = realloc(c->pending, n);
        if (!p) gw_panic("out of memory");
        c->pending = p;
        c->pending_cap = n;
    }
    memcpy(c->pending + have, data, len);
    c->pending_len = n;
    if (n < GW_H2_PREFACE_LEN) return 1;
    /* 'pending' is moved out first: the session may schedule work on it. */
    char *bytes = c->pending;
    c->pending = NULL;
    c->pending_len = c->pending_cap = 0;
    start_h2(c, bytes, n);
    free(bytes);
    return 1;
}

/* The time limits of an HTTP/2 connection, once a second: a stream whose
 * body stalls or trickles gets 408, one whose answer the client lets no
 * byte of through its window for sendTimeout is reset; a connection
 * without streams closes after keepAliveTimeout (GOAWAY first), one that
 * takes none of its output for sendTimeout is dropped. */
static void h2_sweep(struct http_conn *c, const struct gw_config *cfg, double now) {
    if (c->nwrites) {
        if (now - c->last_active > (double)cfg->send_timeout) conn_close(c);
        return;
    }
    if (!gw_h2_streams(c->h2)) {
        if (now - c->last_active > (double)cfg->keep_alive_timeout && !c->close_after) {
            gw_h2_shutdown(c->h2);
            c->close_after = 1;
            schedule(c);
        }
        return;
    }
    for (struct http_conn *s = c->streams, *next; s; s = next) {
        next = s->snext;
        if (s->closing) continue;
        if (!s->delivered && body_too_slow(s, cfg, now, s->h2_got)) {
            s->delivered = 1;
            answer_error(s, 408, "request body timeout");
        } else if (s->nwrites && now - s->last_active > (double)cfg->send_timeout) {
            conn_close(s); /* its window stays shut: RST_STREAM */
        }
    }
}

/* The time limits, once a second: a head that does not arrive within
 * headerTimeout and a body that stalls or trickles get 408 and close; an
 * idle keep-alive connection (or a new one that sent nothing) closes
 * silently; so does a client that takes none of its answer for
 * sendTimeout. A request in an action is bounded by actionTimeout. */
static void sweep_tick(uv_timer_t *t) {
    struct gw_http *h = t->data;
    const struct gw_config *cfg = gw_runtime_config(h->rt);
    double now = uv_now(h->loop);
    for (struct http_conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->tunnel) continue; /* a WebSocket: lws's pings and limits */
        if (c->tls && !gw_tls_ready(c->tls)) {
            /* A handshake, whatever it waits for, within headerTimeout of accept. */
            if (now - c->started > (double)cfg->header_timeout) conn_close(c);
            continue;
        }
        if (c->h2) {
            h2_sweep(c, cfg, now);
            continue;
        }
        if (c->call) {
            if (c->eof && peer_reset(c)) conn_close(c); /* see half_closed */
            continue;
        }
        if (c->nwrites || c->file) {
            if (now - c->last_active > (double)cfg->send_timeout) conn_close(c);
        } else if (c->in_flight || c->close_after) {
            continue;
        } else if (gw_http1_busy(c->parser)) {
            long long got = gw_http1_body_received(c->parser);
            if (got < 0 ? now - c->started > (double)cfg->header_timeout : body_too_slow(c, cfg, now, got))
                answer_error(c, 408, got < 0 ? "request header timeout" : "request body timeout");
        } else if (c->idle ? now - c->last_active > (double)cfg->keep_alive_timeout
                           : now - c->started > (double)cfg->header_timeout) {
            conn_close(c);
        }
    }
}

void gw_http_stop(struct gw_http *h) {
    /* Open connections are still answered (the runtime says 503 to new
     * actions), each answer with "Connection: close". */
    h->stopping = 1;
    /* HTTP/2 says so at once (GOAWAY): its streams are answered, no new one is taken. */
    for (struct http_conn *c = h->conns; c; c = c->next) {
        if (c->h2 && !c->closing) {
            gw_h2_shutdown(c->h2);
            schedule(c);
        }
    }
}

void gw_http_close_all(struct gw_http *h) {
    for (struct http_conn *c = h->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_timer_stop(&h->sweep);
    uv_close((uv_handle_t *)&h->sweep, NULL);
    uv_idle_stop(&h->ready_idle);
    uv_close((uv_handle_t *)&h->ready_idle, NULL);
    free(obuf);
    obuf = NULL;
    obuf_cap = 0;
    if (h->tls) {
        free(tls_plain);
        free(tls_cipher);
        tls_plain = tls_cipher = NULL;
    }
}

void gw_http_free(struct gw_http *h) { free(h); }
