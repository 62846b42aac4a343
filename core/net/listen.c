/* See listen.h. Workers either listen on sockets of their own in one
 * SO_REUSEPORT group (the kernel spreads connections over them) or poll one
 * inherited socket (the kernel gives each connection to one accept(); the
 * others get EAGAIN). */
#include "net/listen.h"
#include "base/gw.h"
#include "base/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_PAUSE_MS 100

#define BACKLOG 4096
#define OPT_REUSEPORT 1 /* join the port's SO_REUSEPORT group */
#define OPT_LISTEN 2
#define NO_REUSEPORT (-2) /* bind_socket: setsockopt(SO_REUSEPORT) failed */

static int bind_socket(const char *host, int port, int opts, char *err, size_t errlen) {
    struct addrinfo hints, *ai = NULL;
    char ps[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0) {
        gw_fmt(err, errlen, "cannot listen on \"%s\": not a numeric IP address", host);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        gw_fmt(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if ((opts & OPT_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        gw_fmt(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return NO_REUSEPORT;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ((opts & OPT_LISTEN) && listen(fd, BACKLOG) != 0)) {
        gw_fmt(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int gw_listen_open(const char *host, int port, char *err, size_t errlen) {
    return bind_socket(host, port, OPT_LISTEN, err, errlen);
}

int gw_listen_reserve(const char *host, int port, int *reuseport, char *err, size_t errlen) {
    /* A plain bind first: it fails when anyone listens on the port, even
     * another SO_REUSEPORT group of ours that a reuseport bind would join,
     * and it turns port 0 into a real one. Both sockets have SO_REUSEADDR
     * and neither listens, so the second bind may share the port. */
    int probe = bind_socket(host, port, 0, err, errlen);
    if (probe < 0) return -1;
    int fd = bind_socket(host, gw_listen_port(probe), OPT_REUSEPORT, err, errlen);
    if (fd == NO_REUSEPORT) { /* the probe becomes the one socket the workers share */
        *reuseport = 0;
        if (listen(probe, BACKLOG) != 0) {
            gw_fmt(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
            close(probe);
            return -1;
        }
        return probe;
    }
    close(probe);
    if (fd < 0) return -1;
    *reuseport = 1;
    return fd;
}

int gw_listen_open_reuseport(const char *host, int port, char *err, size_t errlen) {
    int fd = bind_socket(host, port, OPT_REUSEPORT | OPT_LISTEN, err, errlen);
    return fd < 0 ? -1 : fd;
}

int gw_listen_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void resume_accepting(uv_timer_t *t) {
    struct gw_listener *l = t->data;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_readable(uv_poll_t *h, int status, int events) {
    struct gw_listener *l = h->data;
    (void)events;
    if (status < 0) return;
    /* A bounded batch keeps one busy listener from starving the loop. */
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* The pending connection stays readable: polling on would
                 * spin. Pause, and let closing connections free fds. */
                gw_log(GW_LOG_ERROR, "accept: %s (raise the open files limit); pausing accepts for %d ms",
                       strerror(errno), ACCEPT_PAUSE_MS);
                uv_poll_stop(&l->poll);
                uv_timer_start(&l->pause, resume_accepting, ACCEPT_PAUSE_MS, 0);
            }
            return;
        }
        l->on_accept(l->ud, cfd);
    }
}

int gw_listener_start(struct gw_listener *l, uv_loop_t *loop, int fd, gw_accept_fn on_accept,
                      void *ud) {
    l->fd = fd;
    l->on_accept = on_accept;
    l->ud = ud;
    if (uv_poll_init_socket(loop, &l->poll, fd) != 0) return GW_ERR;
    l->poll.data = l;
    uv_timer_init(loop, &l->pause);
    l->pause.data = l;
    return uv_poll_start(&l->poll, UV_READABLE, on_readable) == 0 ? GW_OK : GW_ERR;
}

void gw_listener_stop(struct gw_listener *l, int close_fd) {
    if (uv_is_closing((uv_handle_t *)&l->poll)) return;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, NULL);
    uv_close((uv_handle_t *)&l->pause, NULL);
    if (close_fd && l->fd >= 0) close(l->fd);
    l->fd = -1;
}
