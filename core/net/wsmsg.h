/* WebSocket message assembly, as a parser fed bytes: joins the chunks lws
 * hands over (parts of frames, fragments of a message) into whole
 * messages up to a size limit. No I/O and no lws: net/ws.c feeds it what
 * lws reports about each chunk. */
#ifndef GW_WSMSG_H
#define GW_WSMSG_H

#include <stddef.h>

/* A whole message: 'msg' is valid only during the call; 'binary' is the
 * type of the message's first frame. */
typedef void (*gw_wsmsg_fn)(void *ud, const char *msg, size_t len, int binary);

struct gw_wsmsg {
    size_t max;       /* largest message accepted */
    gw_wsmsg_fn fn;
    void *ud;
    char *buf;        /* the message being reassembled */
    size_t len, cap;
    int in_progress, binary;
};

enum {
    GW_WSMSG_OK = 0,        /* consumed; a message may have been delivered */
    GW_WSMSG_TOO_BIG = -1,  /* the message is over max: close with 1009 */
    GW_WSMSG_NOMEM = -2     /* no memory for the message: drop the connection */
};

void gw_wsmsg_init(struct gw_wsmsg *m, size_t max, gw_wsmsg_fn fn, void *ud);

/* Free the buffer (the assembler can be fed again). */
void gw_wsmsg_close(struct gw_wsmsg *m);

/* Feed one chunk. 'binary' is the frame type (read at the start of a
 * message), 'last' whether the chunk ends the message (final fragment,
 * nothing left of its frame), 'remaining' how many bytes of the chunk's
 * frame are still to come. A message that arrives in one chunk is passed
 * from 'in' without a copy. Returns one of the codes above; after an
 * error the message is dropped. */
int gw_wsmsg_feed(struct gw_wsmsg *m, const char *in, size_t len, int binary, int last,
                  size_t remaining);

#endif
