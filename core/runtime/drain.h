/* The drain registry: what graceful shutdown waits for. Work that must
 * end before the process may exit holds one count of its kind while it
 * lasts, and the server asks only these counts. One loop runs per process,
 * so the counts are plain integers of the process. */
#ifndef GW_DRAIN_H
#define GW_DRAIN_H

enum gw_drain_kind {
    /* An action in flight: held by gw_call from gw_call_new until the call
     * has replied, failed or been cancelled. */
    GW_DRAIN_CALLS,
    /* An answer not yet handed to the socket: a web answer queued behind a
     * partial write (gw_http), a file answer still streaming (gw_static),
     * a WebSocket message queued (gw_ws), a TCP line being written
     * (gw_socket). One hold per answer, released once it has gone. */
    GW_DRAIN_UNSENT,
    /* A persistent connection (WebSocket or TCP) open: held by gw_conn
     * from gw_conn_open to gw_conn_closed. */
    GW_DRAIN_CONNS,
    GW_DRAIN_KINDS
};

void gw_drain_hold(enum gw_drain_kind kind);

/* Give back one count taken with gw_drain_hold. */
void gw_drain_release(enum gw_drain_kind kind);

/* Counts of 'kind' held now. */
int gw_drain_count(enum gw_drain_kind kind);

#endif
