/* See conncap.h. The counts are per process: a worker runs one loop, and
 * every transport of it shares the caps. Addresses are counted in a small
 * chained hash table, only when maxConnectionsPerIP is set. */
#include "net/conncap.h"
#include "base/gw.h"
#include "base/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 4096
#define LINGER_MS 2000  /* a refused client has this long to read its answer and close */
#define LINGER_MAX 1024 /* refused sockets lingering at once; past it they close at once */

struct gw_conncap_peer {
    struct gw_conncap_peer *next; /* in its bucket */
    unsigned char addr[16];       /* IPv4 in its first 4 bytes */
    int family;
    long count;
};

struct lingerer {
    uv_poll_t poll;
    uv_timer_t timer;
    struct lingerer *prev, *next;
    int fd, handles;
};

static long cap_max = 16384, cap_per_ip;
static long count;
static struct gw_conncap_peer **buckets;
static struct lingerer *lingering;
static int nlingering;

void gw_conncap_init(long max, long per_ip) {
    cap_max = max;
    cap_per_ip = per_ip;
}

long gw_conncap_count(void) { return count; }

static unsigned bucket_of(const unsigned char *addr) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++) h = (h ^ addr[i]) * 16777619u;
    return h % BUCKETS;
}

/* The entry of the peer of 'fd', made when missing; NULL when the address
 * cannot be read. */
static struct gw_conncap_peer *peer_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    unsigned char addr[16] = {0};
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return NULL;
    if (ss.ss_family == AF_INET) memcpy(addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6) memcpy(addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    else return NULL;
    if (!buckets && !(buckets = calloc(BUCKETS, sizeof *buckets))) gw_panic("out of memory");
    unsigned b = bucket_of(addr);
    for (struct gw_conncap_peer *p = buckets[b]; p; p = p->next)
        if (p->family == ss.ss_family && memcmp(p->addr, addr, 16) == 0) return p;
    struct gw_conncap_peer *p = calloc(1, sizeof *p);
    if (!p) gw_panic("out of memory");
    memcpy(p->addr, addr, 16);
    p->family = ss.ss_family;
    p->next = buckets[b];
    buckets[b] = p;
    return p;
}

static void peer_drop(struct gw_conncap_peer *peer) {
    struct gw_conncap_peer **pp = &buckets[bucket_of(peer->addr)];
    while (*pp != peer) pp = &(*pp)->next;
    *pp = peer->next;
    free(peer);
}

/* A refusal, logged at most once a second: a flood must not flood the log too. */
static int refused(const char *message, const char *key, long cap) {
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        gw_log(GW_LOG_WARNING, "refused a connection: %s (%s is %ld)", message, key, cap);
        last = now;
    }
    return GW_ERR;
}

int gw_conncap_take(int fd, int force, struct gw_conncap_peer **peer, const char **message) {
    *peer = NULL;
    if (!force && count >= cap_max) {
        *message = "too many connections";
        return refused(*message, "general.maxConnections", cap_max);
    }
    if (cap_per_ip > 0 && (*peer = peer_of(fd))) {
        if (!force && (*peer)->count >= cap_per_ip) {
            *peer = NULL;
            *message = "too many connections from this address";
            return refused(*message, "general.maxConnectionsPerIP", cap_per_ip);
        }
        (*peer)->count++;
    }
    count++;
    return GW_OK;
}

void gw_conncap_leave(struct gw_conncap_peer *peer) {
    count--;
    if (peer && --peer->count == 0) peer_drop(peer);
}

/* --- Refused sockets ------------------------------------------------------ */

static void linger_closed(uv_handle_t *h) {
    struct lingerer *l = h->data;
    if (--l->handles) return;
    close(l->fd);
    free(l);
}

static void linger_end(struct lingerer *l) {
    if (uv_is_closing((uv_handle_t *)&l->poll)) return;
    if (l->prev) l->prev->next = l->next;
    else lingering = l->next;
    if (l->next) l->next->prev = l->prev;
    nlingering--;
    uv_close((uv_handle_t *)&l->poll, linger_closed);
    uv_close((uv_handle_t *)&l->timer, linger_closed);
}

/* Read and drop what the client sends, so that closing does not reset the
 * connection (and the answer with it) while its request is unread. */
static void linger_readable(uv_poll_t *h, int status, int events) {
    (void)events;
    struct lingerer *l = h->data;
    char buf[4096];
    for (int i = 0; status == 0 && i < 16; i++) {
        ssize_t n = recv(l->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        break; /* the client closed, or the socket failed */
    }
    linger_end(l);
}

static void linger_timeout(uv_timer_t *t) { linger_end(t->data); }

void gw_conncap_refuse(uv_loop_t *loop, int fd, const char *answer, size_t len) {
    /* A few bytes into an empty socket buffer: they fit, or the client is lost anyway. */
    (void)!send(fd, answer, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    struct lingerer *l = nlingering < LINGER_MAX ? calloc(1, sizeof *l) : NULL;
    if (!l || uv_poll_init_socket(loop, &l->poll, fd) != 0) {
        free(l);
        close(fd);
        return;
    }
    l->fd = fd;
    l->handles = 2;
    l->poll.data = l->timer.data = l;
    uv_timer_init(loop, &l->timer);
    l->next = lingering;
    if (lingering) lingering->prev = l;
    lingering = l;
    nlingering++;
    uv_poll_start(&l->poll, UV_READABLE, linger_readable);
    uv_timer_start(&l->timer, linger_timeout, LINGER_MS, 0);
}

void gw_conncap_close_all(void) {
    while (lingering) linger_end(lingering);
}
