/* Connection caps: how many client connections a worker holds, in all and
 * per client address (general.maxConnections, maxConnectionsPerIP). Each
 * transport takes a place when it accepts a connection and gives it back
 * when the connection ends; a connection past a cap is refused here: its
 * one-line answer is written, the write side shut, and the socket drained
 * briefly before it closes, so the client reads the answer. */
#ifndef GW_CONNCAP_H
#define GW_CONNCAP_H

#include <stddef.h>
#include <uv.h>

/* The place a connection holds; NULL when addresses are not counted. */
struct gw_conncap_peer;

/* Set the caps for this process (per_ip 0: none); before any connection. */
void gw_conncap_init(long max, long per_ip);

/* Take a place for the connection on 'fd' (its peer address is read here).
 * Returns GW_OK and sets *peer, or GW_ERR past a cap (nothing taken; the
 * message says which). With 'force' the place is always taken: for a
 * connection counted already under another transport (a WebSocket upgrade). */
int gw_conncap_take(int fd, int force, struct gw_conncap_peer **peer, const char **message);

/* Give back the place taken with gw_conncap_take. */
void gw_conncap_leave(struct gw_conncap_peer *peer);

/* Connections counted now. */
long gw_conncap_count(void);

/* Answer 'fd' with 'len' bytes of 'answer', shut its write side and close
 * it once the client closes too (or after a short linger). Takes ownership
 * of 'fd'. */
void gw_conncap_refuse(uv_loop_t *loop, int fd, const char *answer, size_t len);

/* Shutdown: close the refused sockets still lingering. */
void gw_conncap_close_all(void);

#endif
