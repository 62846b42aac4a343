/* See socket.h. Reads go into one shared buffer (the loop is single
 * threaded and a read is consumed before the next) and are split into
 * lines by gw_lines: a line that arrives whole is handed over from there
 * without a copy, and only a line split across reads is collected per
 * connection. One timer per server sweeps the connections for
 * servers.socket.lineTimeout and idleTimeout, as Redis's clientsCron
 * does for its timeout. */
#include "net/socket.h"
#include "base/gw.h"
#include "runtime/conn.h"
#include "net/lines.h"
#include "net/listen.h"
#include "base/log.h"
#include "runtime/drain.h"
#include "net/conncap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUF 65536
#define TOO_LONG "line is longer than maxLineLength"
#define TOO_SLOW "line not completed within lineTimeout"
#define SWEEP_MIN_MS 10
#define SWEEP_MAX_MS 1000

struct sock_conn {
    uv_tcp_t tcp;
    struct gw_socket *server;
    struct sock_conn *prev, *next;
    struct gw_conn *conn;
    struct gw_conncap_peer *peer; /* its place under general.maxConnections */
    struct gw_lines lines;
    size_t queued;  /* bytes written and not yet sent */
    double line_started; /* when the pending line's first byte came (ms); 0: none */
    double last_active;  /* last read or answer sent (ms), for idleTimeout */
    int closing;
    int eof;        /* the client shut down its side; closing once answered */
};

struct gw_socket {
    uv_loop_t *loop;
    struct gw_runtime *rt;
    struct gw_listener listener;
    int listening;
    struct sock_conn *conns;
    uv_timer_t sweep; /* lineTimeout and idleTimeout; runs while there are connections */
    uint64_t sweep_ms; /* its period; 0: neither limit is set */
};

struct write_req {
    uv_write_t req;
    struct sock_conn *c;
    size_t len;
    char data[];
};

/* Shared by every connection of every server, not kept per server: the
 * process runs one loop, and each read is split into lines before the next. */
static char read_buf[READ_BUF];

static void on_closed(uv_handle_t *h) {
    struct sock_conn *c = h->data;
    struct gw_socket *s = c->server;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->conn) gw_conn_closed(c->conn);
    gw_conncap_leave(c->peer);
    gw_lines_close(&c->lines);
    free(c);
}

static void close_conn(struct sock_conn *c) {
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status) {
    struct write_req *w = (struct write_req *)req;
    /* A failed write shows up as a read error and closes, unless the
     * client has half-closed (we read no more): then it closes here. */
    if (status < 0 && w->c->eof) close_conn(w->c);
    w->c->queued -= w->len;
    gw_drain_release(GW_DRAIN_UNSENT);
    free(w);
}

static int sock_send(void *transport, const char *msg, size_t len) {
    struct sock_conn *c = transport;
    if (c->closing) return GW_ERR;
    long limit = gw_runtime_config(c->server->rt)->max_output_buffer;
    if (c->queued + len + 1 > (size_t)limit) {
        gw_log(GW_LOG_WARNING, "socket client not reading: %zu bytes queued, over maxOutputBuffer; disconnecting",
               c->queued + len + 1);
        close_conn(c);
        return GW_ERR;
    }
    struct write_req *w = malloc(sizeof *w + len + 1);
    if (!w) return GW_ERR;
    memcpy(w->data, msg, len);
    w->data[len] = '\n';
    w->c = c;
    w->len = len + 1;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned int)(len + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        free(w);
        close_conn(c);
        return GW_ERR;
    }
    c->queued += len + 1;
    c->last_active = gw_now_ms();
    gw_drain_hold(GW_DRAIN_UNSENT);
    return GW_OK;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    struct sock_conn *c = req->data;
    free(req);
    close_conn(c);
}

/* quit: close once the goodbye has been sent. */
static void sock_close(void *transport) {
    struct sock_conn *c = transport;
    if (c->closing) return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        c->closing = 0;
        close_conn(c);
        return;
    }
    req->data = c;
}

static const struct gw_conn_ops sock_ops = {sock_send, sock_close};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
}

/* A line, or (line NULL) a line over maxLineLength; stop once closing. */
static int on_line(void *ud, const char *line, size_t len) {
    struct sock_conn *c = ud;
    if (line) gw_conn_message(c->conn, line, len, 0);
    else gw_conn_reject(c->conn, 413, TOO_LONG, 0);
    return c->closing;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    struct sock_conn *c = stream->data;
    if (nread == UV_EOF && !c->closing) {
        /* A half-close: the client has sent all it will, and still reads
         * the answers. What it sent is answered, then we close. A line
         * left without its "\n" is dropped. */
        c->eof = 1;
        uv_read_stop(stream);
        gw_conn_finish(c->conn);
        return;
    }
    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (c->closing || nread == 0) return;
    double now = gw_now_ms();
    unsigned long ends = c->lines.ends;
    c->last_active = now;
    gw_lines_feed(&c->lines, buf->base, (size_t)nread);
    if (!gw_lines_pending(&c->lines)) c->line_started = 0;
    else if (c->line_started == 0 || c->lines.ends != ends) c->line_started = now;
}

/* A line begun more than lineTimeout ago gets a 408 envelope, then the
 * connection is closed; a client silent for idleTimeout (nothing in
 * flight for it) is closed without a word, as Redis closes its idle
 * clients. */
static void on_sweep(uv_timer_t *t) {
    struct gw_socket *s = t->data;
    const struct gw_config *cfg = gw_runtime_config(s->rt);
    double now = gw_now_ms();
    for (struct sock_conn *c = s->conns; c; c = c->next) {
        if (c->closing || c->eof || !c->conn) continue;
        if (cfg->line_timeout > 0 && c->line_started > 0 && now - c->line_started >= (double)cfg->line_timeout) {
            gw_log(GW_LOG_INFO, "socket line not completed within lineTimeout (%ld ms): closing", cfg->line_timeout);
            c->line_started = 0;
            uv_read_stop((uv_stream_t *)&c->tcp);
            gw_conn_reject(c->conn, 408, TOO_SLOW, 1);
        } else if (cfg->idle_timeout > 0 && now - c->last_active >= (double)cfg->idle_timeout &&
                   !gw_conn_busy(c->conn)) {
            gw_log(GW_LOG_INFO, "socket client idle for idleTimeout (%ld ms): closing", cfg->idle_timeout);
            sock_close(c);
        }
    }
    if (!s->conns) uv_timer_stop(t);
}

/* A tenth of the shorter limit, so a connection is closed at most 10%
 * late; 0 when there is no limit to check. */
static uint64_t sweep_period(const struct gw_config *cfg) {
    long t = cfg->line_timeout;
    if (cfg->idle_timeout > 0 && (t <= 0 || cfg->idle_timeout < t)) t = cfg->idle_timeout;
    if (t <= 0) return 0;
    t /= 10;
    return (uint64_t)(t < SWEEP_MIN_MS ? SWEEP_MIN_MS : t > SWEEP_MAX_MS ? SWEEP_MAX_MS : t);
}

static void on_accept(void *ud, int fd) {
    struct gw_socket *s = ud;
    struct gw_conncap_peer *peer;
    const char *why;
    if (gw_conncap_take(fd, 0, &peer, &why) != GW_OK) {
        char line[160]; /* the envelope of a refused message (messages.lua) */
        int n = snprintf(line, sizeof line, "{\"errors\":[\"%s\"],\"data\":null,\"action\":null,"
                         "\"route\":null,\"status\":503}\n", why);
        gw_conncap_refuse(s->loop, fd, line, (size_t)n);
        return;
    }
    struct sock_conn *c = calloc(1, sizeof *c);
    if (!c) gw_panic("out of memory");
    c->server = s;
    c->peer = peer;
    gw_lines_init(&c->lines, (size_t)gw_runtime_config(s->rt)->max_line_length, on_line, c);
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->next = s->conns;
    if (c->next) c->next->prev = c;
    s->conns = c;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_active = gw_now_ms();
    if (s->sweep_ms && !uv_is_active((uv_handle_t *)&s->sweep))
        uv_timer_start(&s->sweep, on_sweep, s->sweep_ms, s->sweep_ms);
    lua_State *L = gw_vm_state(gw_runtime_vm(s->rt));
    lua_createtable(L, 0, 2);
    gw_conn_push_peer(L, fd);
    c->conn = gw_conn_open(s->rt, "socket", &sock_ops, c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

struct gw_socket *gw_socket_new(struct gw_runtime *rt, uv_loop_t *loop, int fd) {
    struct gw_socket *s = calloc(1, sizeof *s);
    if (!s) gw_panic("out of memory");
    s->loop = loop;
    s->rt = rt;
    if (gw_listener_start(&s->listener, loop, fd, on_accept, s) != GW_OK) {
        free(s);
        return NULL;
    }
    s->listening = 1;
    s->sweep_ms = sweep_period(gw_runtime_config(rt));
    uv_timer_init(loop, &s->sweep);
    uv_unref((uv_handle_t *)&s->sweep);
    s->sweep.data = s;
    return s;
}

void gw_socket_stop_accepting(struct gw_socket *s) {
    if (!s->listening) return;
    gw_listener_stop(&s->listener, 0);
    s->listening = 0;
}

void gw_socket_close(struct gw_socket *s, int graceful) {
    gw_socket_stop_accepting(s);
    if (!graceful && !uv_is_closing((uv_handle_t *)&s->sweep)) uv_close((uv_handle_t *)&s->sweep, NULL);
    for (struct sock_conn *c = s->conns; c; c = c->next) {
        if (graceful) sock_close(c);
        else close_conn(c);
    }
}

void gw_socket_free(struct gw_socket *s) { free(s); }
