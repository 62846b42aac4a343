/* The process's event loop and listeners: one libuv loop drives lws (as a
 * foreign loop), timers and signals. SIGTERM/SIGINT drain in-flight
 * actions then exit; SIGHUP reloads actions, middleware and routes. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stddef.h>

#include "runtime/runtime.h"

struct gw_server;

/* Serve as the config says, on 'web_fd', 'socket_fd', 'metrics_fd' (the
 * metrics listener of its own, servers.web.metrics.port) and 'redirect_fd'
 * (the plain one redirecting to TLS, servers.web.tls.redirectPort) when the caller
 * opened them (a worker's own SO_REUSEPORT sockets, or sockets shared by all
 * workers; -1: open them here). 'print_listening' makes
 * this process print the "listening ..." lines. On error returns NULL with
 * a one-line reason in 'err'. */
struct gw_server *gw_server_new(uv_loop_t *loop, struct gw_runtime *rt, int web_fd, int socket_fd,
                                int metrics_fd, int redirect_fd, int print_listening, char *err,
                                size_t errlen);

/* Run until shut down; returns the exit status (0 after a clean stop).
 * Frees the server. */
int gw_server_run(struct gw_server *s);

#endif
