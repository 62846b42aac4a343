/* wsload: a small WebSocket load generator for bench/ws.sh. libc only, one thread, epoll,
 * non-blocking sockets.
 *
 *   wsload load HOST PORT PATH CONNS SECONDS [INFLIGHT]
 *       Opens CONNS WebSocket connections, then on each one keeps INFLIGHT requests
 *       outstanding for SECONDS (default 1: strict request/response): masked text frames
 *       {"action":"randomNumber","route":"","request_id":K}; each answer is matched to its
 *       request by request_id (answers may come out of order), its round trip recorded, and
 *       the next request sent. Requests queued while reading one batch of answers go out in
 *       one write. Prints
 *       WSLOAD_RESULT mode=load conns=… inflight=… open=… seconds=… messages=… rate=… p50_us=…
 *       p90_us=… p99_us=… p999_us=… max_us=… errors=… bad_answers=… conn_errors=… failed=…
 *       unexpected=… open_s=… cpu_us=… cpu_us_per_msg=…
 *       where cpu_us is wsload's own user+system CPU time over the measured window.
 *   wsload idle HOST PORT PATH CONNS HOLD_SECONDS
 *       Opens CONNS upgraded connections, prints "open N failed M" once the opening phase is
 *       over, then holds them for HOLD_SECONDS or until SIGTERM/SIGINT, and prints
 *       WSLOAD_RESULT mode=idle conns=… open=… failed=… closed_during_hold=… held_s=…
 *
 *   wsload room HOST PORT PATH CONNS MESSAGES [SECONDS]
 *       Opens CONNS connections and has each join one room ({"action":"roomAdd"}); then
 *       connection 0 says MESSAGES messages one at a time ({"action":"say","data":{"room":
 *       R,"message":K}}), each as soon as every member (itself included) received the one
 *       before, recording the time from sending the say to its last delivery; then, for
 *       SECONDS (default 5), keeps WSLOAD_WINDOW (default 4) broadcasts in flight and counts
 *       those delivered to every member. Prints
 *       WSLOAD_RESULT mode=room conns=… open=… joined=… messages=… p50_us=… p90_us=… p99_us=…
 *       max_us=… seconds=… broadcasts=… broadcast_rate=… delivery_rate=… duplicates=…
 *       errors=… bad_answers=… conn_errors=… failed=… unexpected=… open_s=… join_s=…
 *       server_cpu_us=… server_cpu_us_per_broadcast=… server_cpu_ns_per_delivery=…
 *       (a duplicate is a delivery beyond one per member; the server's CPU time is that of
 *       the pids in WSLOAD_SERVER_PIDS over the rate run). WSLOAD_ROOM names the room
 *       (default "bench"); WSLOAD_HOLD=S keeps the members connected S seconds after the
 *       report (printing WSLOAD_HOLDING), for the caller to read the server's memory.
 *
 * Environment: WSLOAD_ACTION (default randomNumber), WSLOAD_ROUTE (a handler route to send
 * with it, default none), WSLOAD_ECHO=N (print the first N answers as "WSLOAD_ANSWER <text>"
 * lines), WSLOAD_OPEN_BATCH (connections being
 * opened at once, default 200), WSLOAD_OPEN_TIMEOUT (seconds for the opening phase, default
 * 60). The exit status is 0 when every connection opened and (load mode) no error was seen,
 * 1 otherwise, 2 on a usage error.
 *
 * Results go to stdout, diagnostics (the first few bad answers, verbatim) to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 §1.3 example */
#define MAX_FRAME (64u << 20)                  /* refuse absurd frame lengths */
#define MAX_HANDSHAKE 16384
#define MAX_DIAG 5
#define MAX_INFLIGHT 1024
#define REQ_MAX 320                            /* longest request payload */

enum { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };
enum { MODE_LOAD, MODE_IDLE, MODE_ROOM };

typedef struct {
    uint64_t id;       /* request_id sent */
    uint64_t t_send;   /* ns, CLOCK_MONOTONIC */
} slot_t;

typedef struct {
    int fd;
    int state;
    slot_t *slots;     /* requests sent and not yet answered: slots[0 .. nout) */
    int nout;
    uint64_t t_open;   /* when the connect started (for the per-connection timeout) */
    char *rbuf;        /* bytes read, not yet consumed: rbuf[rpos .. rlen) */
    size_t rpos, rlen, rcap;
    char *mbuf;        /* a fragmented message being reassembled */
    size_t mlen, mcap;
    int in_fragment;
    char *wbuf;        /* bytes to write: wbuf[woff .. wlen) */
    size_t woff, wlen, wcap;
    int want_out;      /* EPOLLOUT currently registered */
} conn_t;

static volatile sig_atomic_t g_stop;
static int g_mode;
static int g_epfd;
static conn_t *g_conns;
static int g_nconns;
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static char g_hostport[300];
static const char *g_path;
static const char *g_action = "randomNumber";
static const char *g_route = ""; /* WSLOAD_ROUTE: a message route for handlers */
static long g_echo;              /* WSLOAD_ECHO: answers still to print verbatim */
static int g_running;            /* load mode: measurement window open, keep sending */
static int g_inflight = 1;       /* requests kept outstanding per connection */
static uint64_t g_next_id = 1;
static uint32_t g_rng = 0x9e3779b9u;

/* room mode: message K's send time and deliveries; phase 0 join, 1 latency, 2 rate */
#define ROOM_MAX_MSGS 4000000u
static const char *g_room = "bench";
static uint64_t *g_say_sent;
static uint32_t *g_say_got;
static uint64_t g_say_next = 1;  /* the next message number to say */
static uint64_t g_say_done;      /* messages delivered to every member */
static long g_joined, g_dupes, g_members, g_window = 4, g_room_inflight;
static int g_phase;

/* counters */
static long g_open, g_failed, g_closed_hold, g_conn_errors, g_bad, g_unexpected, g_diag;
static uint64_t *g_samples;
static size_t g_nsamples, g_capsamples;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void diag(conn_t *c, const char *what, const char *data, size_t len) {
    if (g_diag >= MAX_DIAG) return;
    g_diag++;
    fprintf(stderr, "wsload: conn %d: %s", (int)(c - g_conns), what);
    if (data) {
        size_t n = len > 400 ? 400 : len;
        fputs(": ", stderr);
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)data[i];
            if (ch == '\r') fputs("\\r", stderr);
            else if (ch == '\n') fputs("\\n", stderr);
            else if (ch < 32 || ch > 126) fprintf(stderr, "\\x%02x", ch);
            else fputc(ch, stderr);
        }
        if (n < len) fprintf(stderr, "... (%zu bytes)", len);
    }
    fputc('\n', stderr);
    if (g_diag == MAX_DIAG) fputs("wsload: (further diagnostics suppressed)\n", stderr);
}

static uint32_t rng(void) { /* xorshift32, for mask keys */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

static void record(uint64_t ns) {
    if (g_nsamples == g_capsamples) {
        g_capsamples = g_capsamples ? g_capsamples * 2 : 1 << 16;
        g_samples = realloc(g_samples, g_capsamples * sizeof *g_samples);
        if (!g_samples) die("out of memory");
    }
    g_samples[g_nsamples++] = ns;
}

static void ep_set(conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl MOD: %s", strerror(errno));
    c->want_out = out;
}

static void conn_close(conn_t *c, int count_error) {
    if (c->fd >= 0) {
        epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
        g_failed++;
    } else if (c->state == ST_OPEN) {
        g_open--;
        if (count_error) {
            g_conn_errors++;
            if (g_mode == MODE_IDLE) g_closed_hold++;
        }
    }
    c->state = ST_DEAD;
    free(c->rbuf);
    free(c->mbuf);
    free(c->wbuf);
    free(c->slots);
    c->rbuf = c->mbuf = c->wbuf = NULL;
    c->slots = NULL;
    c->nout = 0;
    c->wcap = c->woff = c->wlen = 0;
    c->rpos = c->rlen = c->rcap = c->mlen = c->mcap = 0;
}

/* Write what is pending; 0 = fine (maybe partial, EPOLLOUT armed), -1 = connection failed. */
static int flush(conn_t *c) {
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) { c->woff += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) ep_set(c, 1);
            return 0;
        }
        return -1;
    }
    c->woff = c->wlen = 0;
    if (c->want_out) ep_set(c, 0);
    return 0;
}

/* Queue one masked client frame. */
static int queue_frame(conn_t *c, int opcode, const char *payload, size_t len) {
    if (c->wlen + len + 14 > c->wcap) {
        if (c->woff > 0) { /* reuse the part already written */
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + len + 14 > c->wcap) {
            size_t cap = c->wcap ? c->wcap : 1024;
            while (cap < c->wlen + len + 14) cap *= 2;
            char *nb = realloc(c->wbuf, cap);
            if (!nb) die("out of memory");
            c->wbuf = nb;
            c->wcap = cap;
        }
    }
    unsigned char *p = (unsigned char *)c->wbuf + c->wlen;
    size_t h = 0;
    p[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        p[h++] = (unsigned char)(0x80 | len);
    } else {
        p[h++] = 0x80 | 126;
        p[h++] = (unsigned char)(len >> 8);
        p[h++] = (unsigned char)len;
    }
    uint32_t key = rng();
    unsigned char mask[4] = {(unsigned char)(key >> 24), (unsigned char)(key >> 16),
                             (unsigned char)(key >> 8), (unsigned char)key};
    memcpy(p + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) p[h + i] = (unsigned char)payload[i] ^ mask[i & 3];
    c->wlen += h + len;
    return 0;
}

/* Queue one request (written by the caller's flush). 0 = queued, -1 = failed. */
static int queue_request(conn_t *c) {
    char msg[REQ_MAX];
    uint64_t id = g_next_id++;
    int n = snprintf(msg, sizeof msg, "{\"action\":\"%s\",\"route\":\"%s\",\"request_id\":%" PRIu64 "}",
                     g_action, g_route, id);
    if (n < 0 || (size_t)n >= sizeof msg || c->nout >= g_inflight || queue_frame(c, 1, msg, (size_t)n) < 0)
        return -1;
    c->slots[c->nout].id = id;
    c->slots[c->nout].t_send = now_ns();
    c->nout++;
    return 0;
}

/* Fill the connection up to g_inflight outstanding requests and write them. */
static int top_up(conn_t *c) {
    while (c->nout < g_inflight)
        if (queue_request(c) < 0) return -1;
    return flush(c);
}

/* The outstanding request this answer is for: the slot whose id follows a
 * "request_id": in the answer (with no further digit), or -1. */
static int find_slot(const conn_t *c, const char *s, size_t len) {
    static const char pat[] = "\"request_id\":";
    const size_t plen = sizeof pat - 1;
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), pat, plen);
        if (!m) return -1;
        const char *d = m + plen;
        uint64_t id = 0;
        int digits = 0;
        while (d < end && *d >= '0' && *d <= '9') { id = id * 10 + (uint64_t)(*d - '0'); d++; digits++; }
        if (digits)
            for (int i = 0; i < c->nout; i++)
                if (c->slots[i].id == id) return i;
        p = m + 1;
    }
    return -1;
}

/* One answer: match it to its request, record the round trip, queue the next request
 * (flushed by on_readable once the whole read is parsed). */
static void room_message(conn_t *c, const char *data, size_t len);

static void on_message(conn_t *c, const char *data, size_t len) {
    uint64_t t = now_ns();
    if (g_mode == MODE_ROOM) {
        room_message(c, data, len);
        return;
    }
    if (c->nout == 0) {
        g_unexpected++;
        diag(c, "message with no request outstanding", data, len);
        return;
    }
    if (g_echo > 0) {
        g_echo--;
        printf("WSLOAD_ANSWER %.*s\n", (int)len, data);
    }
    int i = find_slot(c, data, len);
    int ok = i >= 0 && memmem(data, len, "\"status\":200", 12) != NULL;
    if (i < 0) i = 0; /* a bad answer still retires the oldest request, so the load goes on */
    uint64_t sent = c->slots[i].t_send;
    c->slots[i] = c->slots[--c->nout];
    if (g_running) {
        if (ok) record(t - sent);
        else {
            g_bad++;
            diag(c, "bad answer", data, len);
        }
        if (queue_request(c) < 0) conn_close(c, 1);
    }
}

/* Room mode: connection 0 says message K. 0 = sent, -1 = failed. */
static int room_say(void) {
    conn_t *c = &g_conns[0];
    char msg[REQ_MAX];
    if (c->state != ST_OPEN || g_say_next >= ROOM_MAX_MSGS) return -1;
    uint64_t k = g_say_next++;
    int n = snprintf(msg, sizeof msg,
                     "{\"action\":\"say\",\"data\":{\"room\":\"%s\",\"message\":%" PRIu64
                     "},\"request_id\":%" PRIu64 "}", g_room, k, k);
    if (n < 0 || (size_t)n >= sizeof msg) return -1;
    g_say_sent[k] = now_ns();
    g_room_inflight++;
    if (queue_frame(c, 1, msg, (size_t)n) < 0 || flush(c) < 0) {
        conn_close(c, 1);
        return -1;
    }
    return 0;
}

/* Room mode: a say event (count the delivery; the last one completes the message) or an
 * answer (roomAdd joins; any status but 200 is a bad answer). */
static void room_message(conn_t *c, const char *data, size_t len) {
    if (memmem(data, len, "\"event\":\"say\"", 13)) {
        const char *m = memmem(data, len, "\"message\":", 10);
        uint64_t k = 0;
        if (m) {
            for (m += 10; m < data + len && *m >= '0' && *m <= '9'; m++) k = k * 10 + (uint64_t)(*m - '0');
        }
        if (k == 0 || k >= g_say_next) {
            g_unexpected++;
            diag(c, "say event for no message sent", data, len);
            return;
        }
        uint32_t got = ++g_say_got[k];
        if (got > (uint32_t)g_members) {
            g_dupes++;
            return;
        }
        if (got < (uint32_t)g_members) return;
        g_say_done++;
        g_room_inflight--;
        if (g_phase == 1) {
            record(now_ns() - g_say_sent[k]);
        } else if (g_phase == 2 && g_running) {
            while (g_room_inflight < g_window && room_say() == 0) {}
        }
        return;
    }
    if (!memmem(data, len, "\"status\":200", 12)) {
        g_bad++;
        diag(c, "bad answer", data, len);
        return;
    }
    if (memmem(data, len, "\"action\":\"roomAdd\"", 18)) g_joined++;
}

/* Parse complete frames out of rbuf. 0 = fine, -1 = connection closed. */
static int parse_frames(conn_t *c) {
    for (;;) {
        size_t avail = c->rlen - c->rpos;
        const unsigned char *b = (const unsigned char *)c->rbuf + c->rpos;
        if (avail < 2) break;
        int fin = b[0] & 0x80, op = b[0] & 0x0f, masked = b[1] & 0x80;
        uint64_t len = b[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = ((uint64_t)b[2] << 8) | b[3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | b[2 + i];
            h = 10;
        }
        if (len > MAX_FRAME) {
            diag(c, "frame too long", NULL, 0);
            conn_close(c, 1);
            return -1;
        }
        if (masked) h += 4;
        if (avail < h + len) break;
        char *payload = c->rbuf + c->rpos + h;
        if (masked) { /* servers must not mask; tolerate it anyway */
            const unsigned char *k = b + h - 4;
            for (uint64_t i = 0; i < len; i++) payload[i] ^= (char)k[i & 3];
        }
        c->rpos += h + (size_t)len;

        if (op == 8) { /* close */
            if (g_mode == MODE_LOAD || g_diag < MAX_DIAG) {
                int code = len >= 2 ? ((unsigned char)payload[0] << 8 | (unsigned char)payload[1]) : 0;
                char what[64];
                snprintf(what, sizeof what, "close frame from the server, code %d", code);
                diag(c, what, len > 2 ? payload + 2 : NULL, len > 2 ? (size_t)len - 2 : 0);
            }
            conn_close(c, 1);
            return -1;
        } else if (op == 9) { /* ping -> pong */
            if (len > 125 || queue_frame(c, 10, payload, (size_t)len) < 0 || flush(c) < 0) {
                conn_close(c, 1);
                return -1;
            }
        } else if (op == 10) { /* pong: ignore */
        } else if (op == 1 || op == 2 || op == 0) {
            if (op == 0 && !c->in_fragment) {
                diag(c, "continuation frame without a start", NULL, 0);
                conn_close(c, 1);
                return -1;
            }
            if (op != 0 && fin && !c->in_fragment) {
                on_message(c, payload, (size_t)len);
            } else {
                if (op != 0) { c->in_fragment = 1; c->mlen = 0; }
                if (c->mlen + len > c->mcap) {
                    size_t cap = c->mcap ? c->mcap : 1024;
                    while (cap < c->mlen + len) cap *= 2;
                    char *nb = realloc(c->mbuf, cap);
                    if (!nb) die("out of memory");
                    c->mbuf = nb;
                    c->mcap = cap;
                }
                memcpy(c->mbuf + c->mlen, payload, (size_t)len);
                c->mlen += (size_t)len;
                if (fin) {
                    c->in_fragment = 0;
                    on_message(c, c->mbuf, c->mlen);
                }
            }
            if (c->state != ST_OPEN) return -1; /* closed while answering */
        } else {
            diag(c, "unknown opcode", NULL, 0);
            conn_close(c, 1);
            return -1;
        }
    }
    /* compact */
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0 && c->rpos > c->rcap / 2) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    return 0;
}

static void on_opened(conn_t *c) {
    c->state = ST_OPEN;
    g_open++;
    if (g_mode == MODE_LOAD && g_running && top_up(c) < 0) conn_close(c, 1);
}

/* The handshake answer is in rbuf. 1 = done, 0 = need more, -1 = failed (closed). */
static int check_handshake(conn_t *c) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > MAX_HANDSHAKE) {
            diag(c, "handshake answer too long", c->rbuf, c->rlen);
            conn_close(c, 0);
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - c->rbuf) + 4;
    int ok = hlen > 12 && (memcmp(c->rbuf, "HTTP/1.1 101", 12) == 0);
    if (ok) {
        /* Sec-WebSocket-Accept must be the one for our fixed key */
        char *acc = memmem(c->rbuf, hlen, WS_ACCEPT, sizeof WS_ACCEPT - 1);
        if (!acc) ok = 0;
    }
    if (!ok) {
        diag(c, "upgrade refused or wrong Sec-WebSocket-Accept", c->rbuf, c->rlen);
        conn_close(c, 0);
        return -1;
    }
    c->rpos = hlen; /* any bytes after the headers are frames */
    on_opened(c);
    if (c->state != ST_OPEN) return -1;
    return parse_frames(c) < 0 ? -1 : 1;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->rcap - c->rlen < 1024) {
            size_t cap = c->rcap ? c->rcap * 2 : 2048;
            char *nb = realloc(c->rbuf, cap);
            if (!nb) die("out of memory");
            c->rbuf = nb;
            c->rcap = cap;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            if (c->state == ST_HANDSHAKE)
                diag(c, n == 0 ? "closed during the handshake" : strerror(errno),
                     c->rlen ? c->rbuf : NULL, c->rlen);
            else if (c->state == ST_OPEN && (g_mode == MODE_LOAD ? g_running : 1))
                diag(c, n == 0 ? "closed by the server" : strerror(errno), NULL, 0);
            conn_close(c, 1);
            return;
        }
        c->rlen += (size_t)n;
        if (c->state == ST_HANDSHAKE) {
            if (check_handshake(c) < 0) return;
        } else if (c->state == ST_OPEN) {
            if (parse_frames(c) < 0) return;
        }
        if (c->wlen > c->woff && !c->want_out && flush(c) < 0) {
            conn_close(c, 1);
            return;
        }
        if ((size_t)n < 1024) return; /* probably drained; level-triggered epoll calls again */
    }
}

static int start_connect(conn_t *c) {
    int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the fd limit: ulimit -n)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->wcap = 1024 + (size_t)g_inflight * (REQ_MAX + 14);
    c->wbuf = malloc(c->wcap);
    c->slots = g_mode == MODE_LOAD ? calloc((size_t)g_inflight, sizeof *c->slots) : NULL;
    if (!c->wbuf || (g_mode == MODE_LOAD && !c->slots)) die("out of memory");
    c->t_open = now_ns();
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1;
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl ADD: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&g_addr, g_addrlen) < 0 && errno != EINPROGRESS) {
        diag(c, strerror(errno), NULL, 0);
        conn_close(c, 0);
        return -1;
    }
    return 0;
}

static void on_writable(conn_t *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            diag(c, strerror(err), NULL, 0);
            conn_close(c, 0);
            return;
        }
        int n = snprintf(c->wbuf, c->wcap,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                         g_path, g_hostport);
        if (n < 0 || (size_t)n >= c->wcap) die("path too long");
        c->woff = 0;
        c->wlen = (size_t)n;
        c->state = ST_HANDSHAKE;
    }
    if (flush(c) < 0) conn_close(c, 1);
}

static uint64_t cpu_us(void) { /* this process's user + system CPU time */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void on_signal(int sig) { (void)sig; g_stop = 1; }

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) { /* nearest-rank percentile in µs */
    if (!g_nsamples) return 0;
    size_t r = (size_t)(q * (double)g_nsamples + 0.999999);
    if (r < 1) r = 1;
    if (r > g_nsamples) r = g_nsamples;
    return (double)g_samples[r - 1] / 1000.0;
}

static void handle_events(int timeout_ms) {
    struct epoll_event evs[256];
    int n = epoll_wait(g_epfd, evs, 256, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->fd < 0) continue;
        uint32_t e = evs[i].events;
        if (e & (EPOLLOUT | EPOLLERR)) {
            on_writable(c);
            if (c->fd < 0) continue;
        }
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
}

static double parse_num(const char *s, const char *what);

/* Wait, handling events, until *done says so or `secs` pass; 0 when done. */
static int wait_for(int (*done)(void), double secs) {
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
    while (!done()) {
        if (g_stop || now_ns() >= end || g_conns[0].state != ST_OPEN) return -1;
        handle_events(100);
    }
    return 0;
}

/* User + system CPU time (µs) of the processes listed in WSLOAD_SERVER_PIDS (the server's
 * workers), from /proc/<pid>/stat; 0 when unset or unreadable. */
static uint64_t server_cpu_us(void) {
    const char *list = getenv("WSLOAD_SERVER_PIDS");
    if (!list) return 0;
    uint64_t ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    char path[64], buf[1024];
    for (const char *p = list; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        p = end;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *q = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            ticks += ut + st;
    }
    return hz > 0 ? ticks * 1000000u / (uint64_t)hz : 0;
}

static int all_joined(void) { return g_joined >= g_open; }
static int say_idle(void) { return g_room_inflight == 0; }

/* Room mode after the opening phase: join, the latency run, the rate run, the report. */
static int room_run(long opened, uint64_t messages, double seconds, double open_s, int rc) {
    uint64_t t0 = now_ns();
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        if (c->state != ST_OPEN) continue;
        char msg[REQ_MAX];
        int n = snprintf(msg, sizeof msg, "{\"action\":\"roomAdd\",\"data\":{\"room\":\"%s\"},"
                         "\"request_id\":0}", g_room);
        if (n < 0 || (size_t)n >= sizeof msg || queue_frame(c, 1, msg, (size_t)n) < 0 || flush(c) < 0)
            conn_close(c, 1);
        if ((i & 255) == 255) handle_events(0);
    }
    if (wait_for(all_joined, 120) < 0) {
        fprintf(stderr, "wsload: %ld of %ld joined the room\n", g_joined, g_open);
        rc = 1;
    }
    double join_s = (double)(now_ns() - t0) / 1e9;
    g_members = g_joined;
    g_phase = 1;
    for (uint64_t i = 0; i < messages && rc == 0; i++) {
        if (room_say() < 0 || wait_for(say_idle, 60) < 0) {
            fprintf(stderr, "wsload: message %" PRIu64 " reached %u of %ld members\n", g_say_next - 1,
                    g_say_got[g_say_next - 1], g_members);
            rc = 1;
        }
    }
    uint64_t latency_done = g_say_done;
    g_phase = 2;
    g_running = 1;
    uint64_t scpu0 = server_cpu_us();
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
    while (rc == 0 && g_room_inflight < g_window && room_say() == 0) {}
    while (rc == 0 && !g_stop && now_ns() < end && g_conns[0].state == ST_OPEN) handle_events(100);
    g_running = 0;
    double elapsed = (double)(now_ns() - start) / 1e9;
    uint64_t rated = g_say_done - latency_done;
    uint64_t scpu = server_cpu_us() - scpu0;
    if (rc == 0 && wait_for(say_idle, 60) < 0) rc = 1; /* the last ones must arrive too */
    qsort(g_samples, g_nsamples, sizeof *g_samples, cmp_u64);
    long errors = g_bad + g_conn_errors + g_unexpected + g_failed + g_dupes;
    printf("WSLOAD_RESULT mode=room conns=%d open=%ld joined=%ld messages=%zu p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f max_us=%.1f seconds=%.3f window=%ld broadcasts=%" PRIu64
           " broadcast_rate=%.1f delivery_rate=%.0f duplicates=%ld errors=%ld bad_answers=%ld "
           "conn_errors=%ld failed=%ld unexpected=%ld open_s=%.2f join_s=%.2f server_cpu_us=%" PRIu64
           " server_cpu_us_per_broadcast=%.1f server_cpu_ns_per_delivery=%.0f\n",
           g_nconns, opened, g_joined, g_nsamples, pct_us(0.50), pct_us(0.90), pct_us(0.99),
           g_nsamples ? (double)g_samples[g_nsamples - 1] / 1000.0 : 0, elapsed, g_window, rated,
           elapsed > 0 ? (double)rated / elapsed : 0,
           elapsed > 0 ? (double)rated * (double)g_members / elapsed : 0, g_dupes, errors, g_bad,
           g_conn_errors, g_failed, g_unexpected, open_s, join_s, scpu,
           rated ? (double)scpu / (double)rated : 0,
           rated && g_members ? (double)scpu * 1000.0 / ((double)rated * (double)g_members) : 0);
    if (errors) rc = 1;
    fflush(stdout);
    /* WSLOAD_HOLD=S: keep the members connected S seconds more (or until SIGTERM), so the
     * caller can read the server's memory with the room full. */
    const char *hold = getenv("WSLOAD_HOLD");
    if (hold && *hold) {
        uint64_t until = now_ns() + (uint64_t)(parse_num(hold, "WSLOAD_HOLD") * 1e9);
        puts("WSLOAD_HOLDING");
        fflush(stdout);
        while (!g_stop && now_ns() < until) handle_events(200);
    }
    free(g_say_sent);
    free(g_say_got);
    return rc;
}

static double parse_num(const char *s, const char *what) {
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "wsload: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static void usage(void) {
    fputs("usage: wsload load HOST PORT PATH CONNS SECONDS [INFLIGHT]\n"
          "       wsload idle HOST PORT PATH CONNS HOLD_SECONDS\n"
          "       wsload room HOST PORT PATH CONNS MESSAGES [SECONDS]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 7) usage();
    if (strcmp(argv[1], "load") == 0) g_mode = MODE_LOAD;
    else if (strcmp(argv[1], "idle") == 0) g_mode = MODE_IDLE;
    else if (strcmp(argv[1], "room") == 0) g_mode = MODE_ROOM;
    else usage();
    if (argc > (g_mode == MODE_IDLE ? 7 : 8)) usage();
    if (argc == 8 && g_mode == MODE_LOAD) {
        double k = parse_num(argv[7], "INFLIGHT");
        if (k < 1 || k > MAX_INFLIGHT || k != (int)k) {
            fprintf(stderr, "wsload: INFLIGHT must be a whole number from 1 to %d\n", MAX_INFLIGHT);
            return 2;
        }
        g_inflight = (int)k;
    }
    const char *host = argv[2], *port = argv[3];
    g_path = argv[4];
    g_nconns = (int)parse_num(argv[5], "CONNS");
    double seconds = parse_num(argv[6], "SECONDS");
    if (g_nconns < 1) usage();
    if (g_path[0] != '/') { fputs("wsload: PATH must start with '/'\n", stderr); return 2; }
    const char *s;
    if ((s = getenv("WSLOAD_ACTION")) && *s) g_action = s;
    if ((s = getenv("WSLOAD_ROUTE")) && *s) g_route = s;
    if ((s = getenv("WSLOAD_ECHO")) && *s) g_echo = (long)parse_num(s, "WSLOAD_ECHO");
    if ((s = getenv("WSLOAD_ROOM")) && *s) g_room = s;
    if ((s = getenv("WSLOAD_WINDOW")) && *s) g_window = (long)parse_num(s, "WSLOAD_WINDOW");
    if (g_window < 1) g_window = 1;
    double room_seconds = 5;
    if (g_mode == MODE_ROOM) {
        if (argc == 8) room_seconds = parse_num(argv[7], "SECONDS");
        if (seconds < 1 || seconds > 1000000) { fputs("wsload: MESSAGES must be 1 to 1000000\n", stderr); return 2; }
        g_say_sent = calloc(ROOM_MAX_MSGS, sizeof *g_say_sent);
        g_say_got = calloc(ROOM_MAX_MSGS, sizeof *g_say_got);
        if (!g_say_sent || !g_say_got) die("out of memory");
    }
    int batch = 200;
    if ((s = getenv("WSLOAD_OPEN_BATCH")) && *s) batch = (int)parse_num(s, "WSLOAD_OPEN_BATCH");
    if (batch < 1) batch = 1;
    double open_timeout = 60;
    if ((s = getenv("WSLOAD_OPEN_TIMEOUT")) && *s) open_timeout = parse_num(s, "WSLOAD_OPEN_TIMEOUT");
    g_rng ^= (uint32_t)getpid() ^ (uint32_t)now_ns();
    if (!g_rng) g_rng = 1;

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai) die("%s:%s: %s", host, port, gai_strerror(gai));
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(g_hostport, sizeof g_hostport, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)g_nconns + 16 > rl.rlim_cur)
        die("%d connections need more file descriptors than the limit %llu (ulimit -n)", g_nconns,
            (unsigned long long)rl.rlim_cur);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g_epfd < 0) die("epoll_create1: %s", strerror(errno));
    g_conns = calloc((size_t)g_nconns, sizeof *g_conns);
    if (!g_conns) die("out of memory");
    for (int i = 0; i < g_nconns; i++) g_conns[i].fd = -1;

    /* Opening phase: at most `batch` connections connecting or handshaking at once, so
     * the server's listen backlog is not overrun. */
    uint64_t t0 = now_ns(), open_deadline = t0 + (uint64_t)(open_timeout * 1e9);
    int next = 0;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < next; i++)
            if (g_conns[i].state == ST_CONNECTING || g_conns[i].state == ST_HANDSHAKE) pending++;
        while (next < g_nconns && pending < batch) {
            if (start_connect(&g_conns[next++]) == 0) pending++;
        }
        if (next == g_nconns && pending == 0) break;
        if (g_stop || now_ns() >= open_deadline) break;
        handle_events(50);
    }
    /* whatever is still connecting now has failed */
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
            if (g_diag < MAX_DIAG) diag(c, "not upgraded before WSLOAD_OPEN_TIMEOUT", NULL, 0);
            conn_close(c, 0);
        } else if (c->state == ST_FREE) {
            c->state = ST_DEAD;
            g_failed++;
        }
    }
    double open_s = (double)(now_ns() - t0) / 1e9;
    long opened = g_open;
    int rc = g_failed ? 1 : 0;

    if (g_mode == MODE_IDLE) {
        printf("open %ld failed %ld\n", opened, g_failed);
        fflush(stdout);
        uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
        while (!g_stop) {
            uint64_t t = now_ns();
            if (t >= end) break;
            uint64_t left_ms = (end - t) / 1000000u + 1;
            handle_events(left_ms > 1000 ? 1000 : (int)left_ms);
        }
        double held = (double)(now_ns() - start) / 1e9;
        printf("WSLOAD_RESULT mode=idle conns=%d open=%ld failed=%ld closed_during_hold=%ld "
               "open_s=%.2f held_s=%.2f\n",
               g_nconns, opened, g_failed, g_closed_hold, open_s, held);
        if (g_closed_hold) rc = 1;
    } else if (g_mode == MODE_ROOM) {
        rc = room_run(opened, (uint64_t)seconds, room_seconds, open_s, rc);
    } else {
        uint64_t cpu0 = cpu_us(), start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
        g_running = 1;
        for (int i = 0; i < g_nconns; i++)
            if (g_conns[i].state == ST_OPEN && top_up(&g_conns[i]) < 0) conn_close(&g_conns[i], 1);
        while (!g_stop && g_open > 0) {
            uint64_t t = now_ns();
            if (t >= end) break;
            uint64_t left_ms = (end - t + 999999u) / 1000000u;
            handle_events(left_ms > 1000 ? 1000 : (int)left_ms);
        }
        uint64_t stop = now_ns(), cpu = cpu_us() - cpu0;
        g_running = 0;
        double elapsed = (double)(stop - start) / 1e9;
        qsort(g_samples, g_nsamples, sizeof *g_samples, cmp_u64);
        long errors = g_bad + g_conn_errors + g_unexpected + g_failed;
        printf("WSLOAD_RESULT mode=load conns=%d inflight=%d open=%ld seconds=%.3f messages=%zu "
               "rate=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%ld "
               "bad_answers=%ld conn_errors=%ld failed=%ld unexpected=%ld open_s=%.2f cpu_us=%" PRIu64
               " cpu_us_per_msg=%.2f\n",
               g_nconns, g_inflight, opened, elapsed, g_nsamples,
               elapsed > 0 ? (double)g_nsamples / elapsed : 0, pct_us(0.50), pct_us(0.90),
               pct_us(0.99), pct_us(0.999), g_nsamples ? (double)g_samples[g_nsamples - 1] / 1000.0 : 0,
               errors, g_bad, g_conn_errors, g_failed, g_unexpected, open_s, cpu,
               g_nsamples ? (double)cpu / (double)g_nsamples : 0);
        if (errors) rc = 1;
    }
    fflush(stdout);

    /* Say goodbye: a close frame (1000) on each open connection, best effort, then close. */
    for (int i = 0; i < g_nconns; i++) {
        conn_t *c = &g_conns[i];
        if (c->state != ST_OPEN) continue;
        c->woff = c->wlen = 0;
        const char code[2] = {0x03, (char)0xe8};
        if (queue_frame(c, 8, code, 2) == 0)
            (void)!send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        g_open++; /* conn_close decrements; keep counts meaningful */
        conn_close(c, 0);
    }
    close(g_epfd);
    free(g_samples);
    free(g_conns);
    return rc;
}
