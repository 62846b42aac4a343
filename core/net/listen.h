/* Listening sockets the core owns: bound here (so errors are exact and
 * port 0 can be read back), one per worker in a SO_REUSEPORT group or one
 * shared by all, and polled on the loop; each accepted connection is handed
 * to its transport. */
#ifndef GW_LISTEN_H
#define GW_LISTEN_H

#include <stddef.h>
#include <uv.h>

/* Bind and listen on a numeric host and port (0: any free port).
 * Returns the non-blocking fd, or -1 with a reason in 'err'. */
int gw_listen_open(const char *host, int port, char *err, size_t errlen);

/* For a master about to fork workers: check that nobody listens on 'host'
 * and 'port' (0: any free port) and hold that address. When SO_REUSEPORT
 * works, sets *reuseport to 1 and returns a bound socket that does NOT
 * listen (so the kernel routes no connection to it): each worker then opens
 * its own with gw_listen_open_reuseport() on gw_listen_port() of it. Where
 * setsockopt(SO_REUSEPORT) fails, sets *reuseport to 0, writes why into
 * 'err' and returns a listening socket for the workers to share. Returns -1
 * with a reason in 'err' when the address cannot be had. */
int gw_listen_reserve(const char *host, int port, int *reuseport, char *err, size_t errlen);

/* A listening socket of this process's own in the SO_REUSEPORT group of
 * 'host' and 'port' (a real port, as gw_listen_reserve() read it back).
 * Returns the non-blocking fd, or -1 with a reason in 'err'. */
int gw_listen_open_reuseport(const char *host, int port, char *err, size_t errlen);

/* The port a bound fd is bound to. */
int gw_listen_port(int fd);

typedef void (*gw_accept_fn)(void *ud, int fd);

struct gw_listener {
    uv_poll_t poll;
    uv_timer_t pause; /* out of fds: accepting resumes when it fires */
    int fd;
    gw_accept_fn on_accept;
    void *ud;
};

/* Accept connections on 'fd' from the loop; on_accept owns each new fd. */
int gw_listener_start(struct gw_listener *l, uv_loop_t *loop, int fd, gw_accept_fn on_accept,
                      void *ud);

/* Stop accepting; closes the poll handle (and the fd with 'close_fd'). */
void gw_listener_stop(struct gw_listener *l, int close_fd);

#endif
