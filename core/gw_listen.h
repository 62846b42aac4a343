/* Listening sockets the core owns: bound here (so errors are exact and
 * port 0 can be read back), shared by forked workers, and polled on the
 * loop; each accepted connection is handed to its transport. */
#ifndef GW_LISTEN_H
#define GW_LISTEN_H

#include <stddef.h>
#include <uv.h>

/* Bind and listen on a numeric host and port (0: any free port).
 * Returns the non-blocking fd, or -1 with a reason in 'err'. */
int gw_listen_open(const char *host, int port, char *err, size_t errlen);

/* The port a listening fd is bound to. */
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
