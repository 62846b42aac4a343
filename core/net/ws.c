/* See gw_ws.h. lws runs the upgrade, framing, ping/pong and the close
 * handshake; this file feeds what lws receives to gw_wsmsg, which
 * reassembles messages, hands them to gw_conn, and writes answers: at once
 * when nothing is waiting to go out, else queued, one per writable
 * callback. A connection finds its gw_ws in the lws protocol's 'user'
 * when it opens and keeps a pointer to it. */
#include "net/ws.h"
#include "base/gw.h"
#include "runtime/conn.h"
#include "base/log.h"
#include "runtime/drain.h"
#include "net/wsmsg.h"
#include "net/conncap.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct out_msg {
    struct out_msg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes for lws, then the payload */
};

struct ws_conn {
    struct gw_ws *server;
    struct ws_conn *prev, *next; /* every open WebSocket, for shutdown */
    struct lws *wsi;
    struct gw_conn *conn;
    struct gw_wsmsg in; /* the message being reassembled */
    /* answers waiting for the socket */
    struct out_msg *out_head, *out_tail;
    size_t out_bytes;
    double msg_started; /* when the message being reassembled began (ms) */
    int closing;    /* close once the queue is sent */
    int going_away; /* ... with 1001: the server is shutting down */
    int killed;     /* dropped for falling behind: send nothing more */
    struct gw_conncap_peer *peer; /* its place under general.maxConnections */
};

struct gw_ws_session {
    struct ws_conn *c;
};

struct gw_ws {
    struct gw_runtime *rt;
    struct ws_conn *conns; /* every open WebSocket, for shutdown */
    int handoff;           /* see gw_ws_adopt */
};

struct gw_ws *gw_ws_new(struct gw_runtime *rt) {
    struct gw_ws *ws = calloc(1, sizeof *ws);
    if (!ws) gw_panic("out of memory");
    ws->rt = rt;
    return ws;
}

void gw_ws_free(struct gw_ws *ws) { free(ws); }

size_t gw_ws_session_size(void) { return sizeof(struct gw_ws_session); }

int gw_ws_handles(enum lws_callback_reasons reason) {
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WS_SERVER_BIND_PROTOCOL:
    case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:
    case LWS_CALLBACK_TIMER:
    case LWS_CALLBACK_WSI_DESTROY:
        return 1;
    default:
        return 0;
    }
}

#define DIRECT_MAX 8192 /* answers up to this size are sent from a stack buffer */

/* Send an answer now: nothing of ours is queued and lws holds nothing back
 * from an earlier write. Asking for a writable callback instead costs a
 * loop iteration and, on libuv, four epoll_ctl calls per answer (lws adds
 * POLLOUT, then takes it off, and uv_poll_start removes and re-adds the
 * watcher each time). What the socket does not take, lws keeps and sends
 * itself; the next answers then wait in the queue. Returns GW_ERR when the
 * connection failed (it is dropped). */
static int send_now(struct ws_conn *c, const char *msg, size_t len) {
    unsigned char small[LWS_PRE + DIRECT_MAX];
    unsigned char *buf = len <= DIRECT_MAX ? small : malloc(LWS_PRE + len);
    if (!buf) return GW_ERR;
    memcpy(buf + LWS_PRE, msg, len);
    int w = lws_write(c->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
    if (buf != small) free(buf);
    if (w < 0) {
        c->killed = 1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return GW_ERR;
    }
    return GW_OK;
}

static int ws_send(void *transport, const char *msg, size_t len) {
    struct ws_conn *c = transport;
    if (c->killed || c->closing) return GW_ERR;
    if (!c->out_head && !lws_partial_buffered(c->wsi)) return send_now(c, msg, len);
    long limit = gw_runtime_config(c->server->rt)->max_output_buffer;
    if (c->out_bytes + len > (size_t)limit) {
        gw_log(GW_LOG_WARNING, "websocket client not reading: %zu bytes queued, over maxOutputBuffer; disconnecting",
               c->out_bytes + len);
        c->killed = 1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return GW_ERR;
    }
    struct out_msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) return GW_ERR;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, msg, len);
    if (c->out_tail) c->out_tail->next = m;
    else c->out_head = m;
    c->out_tail = m;
    c->out_bytes += len;
    gw_drain_hold(GW_DRAIN_UNSENT);
    lws_callback_on_writable(c->wsi);
    return GW_OK;
}

static void ws_close(void *transport) {
    struct ws_conn *c = transport;
    c->closing = 1;
    lws_callback_on_writable(c->wsi);
}

static const struct gw_conn_ops ws_ops = {ws_send, ws_close};

void gw_ws_close_all(struct gw_ws *ws) {
    for (struct ws_conn *c = ws->conns; c; c = c->next) {
        c->going_away = 1;
        ws_close(c);
    }
}

/* The connection object prepared for a handshake lws runs now: within
 * gw_ws_adopt (ws->handoff), or later when lws deferred it (the wsi's
 * opaque user data). 0 when there is none. */
static int handoff_of(struct gw_ws *ws, struct lws *wsi) {
    if (ws->handoff) return ws->handoff;
    return (int)(intptr_t)lws_get_opaque_user_data(wsi);
}

int gw_ws_adopt(struct gw_ws *ws, struct lws_vhost *vhost, int fd, const char *buf, size_t len, int ref) {
    ws->handoff = ref;
    struct lws *wsi = lws_adopt_socket_vhost_readbuf(vhost, fd, buf, len);
    int pending = ws->handoff != 0; /* not taken by an ESTABLISHED inside the call */
    ws->handoff = 0;
    if (!wsi) {
        if (pending) luaL_unref(gw_vm_state(gw_runtime_vm(ws->rt)), LUA_REGISTRYINDEX, ref);
        return GW_ERR;
    }
    if (pending) lws_set_opaque_user_data(wsi, (void *)(intptr_t)ref);
    return GW_OK;
}

/* Only upgrades the runtime accepted (a consumer took the path) become
 * WebSockets. */
static int upgrade_allowed(struct gw_ws *ws, struct lws *wsi) {
    return gw_runtime_config(ws->rt)->ws_enabled && handoff_of(ws, wsi) != 0;
}

static void on_message(void *ud, const char *msg, size_t len, int binary) {
    struct ws_conn *c = ud;
    gw_conn_message(c->conn, msg, len, binary);
}

static void open_conn(struct gw_ws *ws, struct gw_ws_session *s, struct lws *wsi, int ref) {
    struct ws_conn *c = calloc(1, sizeof *c);
    if (!c) gw_panic("out of memory");
    c->server = ws;
    c->wsi = wsi;
    /* The upgrade request's HTTP connection passed the caps and gave its place to this one. */
    const char *unused;
    gw_conncap_take(lws_get_socket_fd(wsi), 1, &c->peer, &unused);
    gw_wsmsg_init(&c->in, (size_t)gw_runtime_config(ws->rt)->ws_max_message, on_message, c);
    s->c = c;
    c->next = ws->conns;
    if (c->next) c->next->prev = c;
    ws->conns = c;
    /* The connection object the runtime prepared on the upgrade request
     * (transport/websocket.lua): its consumer, URL kwargs, user, headers. */
    lua_State *L = gw_vm_state(gw_runtime_vm(ws->rt));
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    /* The upgrade request named the client already (remoteIP: the peer, or
     * the client behind a trusted proxy, net/http.c); else the peer's. */
    int named = lua_getfield(L, -1, "remoteIP") == LUA_TSTRING;
    lua_pop(L, 1);
    if (!named) gw_conn_push_peer(L, lws_get_socket_fd(wsi));
    c->conn = gw_conn_open(ws->rt, "websocket", &ws_ops, c);
}

static void free_conn(struct ws_conn *c) {
    if (c->prev) c->prev->next = c->next;
    else c->server->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    while (c->out_head) {
        struct out_msg *m = c->out_head;
        c->out_head = m->next;
        gw_drain_release(GW_DRAIN_UNSENT);
        free(m);
    }
    gw_wsmsg_close(&c->in);
    gw_conncap_leave(c->peer);
    free(c);
}

/* Arm the lws timer to check the message begun now against
 * fragmentTimeout. The timer is the connection's one lws timer, also used
 * to close (write_next): once closing, it is left alone. */
static void message_started(struct ws_conn *c) {
    long limit = gw_runtime_config(c->server->rt)->ws_fragment_timeout;
    c->msg_started = gw_now_ms();
    if (limit > 0 && !c->closing) lws_set_timer_usecs(c->wsi, (lws_usec_t)limit * 1000);
}

/* The timer fired outside a close: 1 when the message in progress is past
 * fragmentTimeout (the close reason is set), else 0 (re-armed for what is
 * left when a later message is in progress). */
static int message_too_slow(struct ws_conn *c) {
    long limit = gw_runtime_config(c->server->rt)->ws_fragment_timeout;
    if (!c->in.in_progress || limit <= 0) return 0;
    double left = c->msg_started + (double)limit - gw_now_ms();
    if (left > 1) {
        lws_set_timer_usecs(c->wsi, (lws_usec_t)(left * 1000));
        return 0;
    }
    static const char reason[] = "message not completed within fragmentTimeout";
    gw_log(GW_LOG_INFO, "websocket message not completed within fragmentTimeout (%ld ms): closing with 1008",
           limit);
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)reason, sizeof reason - 1);
    return 1;
}

/* Feed one chunk of a message; it is delivered when it is complete. */
static int receive(struct ws_conn *c, const char *in, size_t len) {
    struct lws *wsi = c->wsi;
    size_t remaining = lws_remaining_packet_payload(wsi);
    int last = lws_is_final_fragment(wsi) && remaining == 0;
    int was_in_progress = c->in.in_progress;
    int rc = gw_wsmsg_feed(&c->in, in, len, lws_frame_is_binary(wsi), last, remaining);
    if (rc == GW_WSMSG_TOO_BIG) {
        static const char reason[] = "message larger than maxMessageSize";
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason, sizeof reason - 1);
        return -1;
    }
    if (rc == GW_WSMSG_OK && c->in.in_progress && !was_in_progress) message_started(c);
    return rc == GW_WSMSG_OK ? 0 : -1;
}

/* One queued answer per writable callback. */
static int write_next(struct ws_conn *c) {
    if (c->killed) return -1;
    struct out_msg *m = c->out_head;
    if (m) {
        c->out_head = m->next;
        if (!c->out_head) c->out_tail = NULL;
        c->out_bytes -= m->len;
        gw_drain_release(GW_DRAIN_UNSENT);
        int w = lws_write(c->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        free(m);
        if (w < 0) return -1;
        if (c->out_head || c->closing) lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->closing) {
        /* Returning -1 here would drop the socket without a close frame
         * (lws treats a failed writable callback as a dead socket); from
         * a timer callback lws sends the close and awaits the answer. */
        static const char bye[] = "the server is shutting down";
        if (c->going_away)
            lws_close_reason(c->wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)bye, sizeof bye - 1);
        else
            lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        lws_set_timer_usecs(c->wsi, 1);
    }
    return 0;
}

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len) {
    struct gw_ws_session *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return upgrade_allowed(lws_get_protocol(wsi)->user, wsi) ? 0 : 1;
    case LWS_CALLBACK_ESTABLISHED: {
        struct gw_ws *ws = lws_get_protocol(wsi)->user;
        int ref = handoff_of(ws, wsi);
        if (!s || !ref) return -1; /* upgrade_allowed let it through: never */
        ws->handoff = 0;
        lws_set_opaque_user_data(wsi, NULL);
        open_conn(ws, s, wsi, ref);
        return 0;
    }
    case LWS_CALLBACK_WSI_DESTROY: {
        /* A deferred handshake that never completed: its object is let go. */
        int ref = (int)(intptr_t)lws_get_opaque_user_data(wsi);
        if (ref) {
            lws_set_opaque_user_data(wsi, NULL);
            luaL_unref(gw_vm_state(gw_runtime_vm(((struct gw_ws *)lws_get_protocol(wsi)->user)->rt)),
                       LUA_REGISTRYINDEX, ref);
        }
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
    case LWS_CALLBACK_RECEIVE:
        if (!s || !s->c) return -1;
        return receive(s->c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!s || !s->c) return 0;
        return write_next(s->c);
    case LWS_CALLBACK_TIMER:
        /* Set by write_next (close with the reason given), or by
         * message_started. */
        if (!s || !s->c || s->c->closing || s->c->killed) return -1;
        return message_too_slow(s->c) ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (s && s->c) {
            struct ws_conn *c = s->c;
            s->c = NULL;
            gw_conn_closed(c->conn);
            free_conn(c);
        }
        return 0;
    default:
        return 0;
    }
}
