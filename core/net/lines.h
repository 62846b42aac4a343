/* The line framing of the TCP transport, as a parser fed bytes: splits
 * what the socket read into lines ending in "\n" or "\r\n", skips empty
 * ones and drops a line over the limit. No I/O: net/socket.c feeds it and
 * gets each line through a callback. */
#ifndef GW_LINES_H
#define GW_LINES_H

#include <stddef.h>

/* Called for each complete, non-empty line, without its "\n" or "\r\n"
 * ('line' is valid only during the call), and with 'line' NULL and 'len'
 * 0 once for a line longer than the limit, as soon as that is known (the
 * line is then dropped up to its end). Return 0 to go on, non-zero to
 * stop: the rest of what was fed is dropped. */
typedef int (*gw_lines_fn)(void *ud, const char *line, size_t len);

struct gw_lines {
    size_t max;       /* longest line accepted, without its terminator */
    gw_lines_fn fn;
    void *ud;
    char *buf;        /* the start of a line still waiting for its end */
    size_t len, cap;
    int discarding;   /* inside a line already reported too long */
    unsigned long ends; /* line ends ("\n") seen so far */
};

void gw_lines_init(struct gw_lines *r, size_t max, gw_lines_fn fn, void *ud);

/* Free the buffer of a partial line (the reader can be fed again). */
void gw_lines_close(struct gw_lines *r);

/* Feed 'n' bytes. A line that arrives whole is passed from 'p' without a
 * copy; only a line split across feeds is collected. Returns 1 when the
 * callback stopped it, else 0. */
int gw_lines_feed(struct gw_lines *r, const char *p, size_t n);

/* 1 when a line has begun and not ended: what was fed ends inside a line
 * (one being collected, or one too long being dropped). With 'ends', a
 * transport can time a line from its first byte: the line pending after
 * a feed began in that feed when 'ends' changed, or was pending before. */
int gw_lines_pending(const struct gw_lines *r);

#endif
