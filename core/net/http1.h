/* HTTP/1.1 requests out of bytes: a wrapper round Node's http_parser
 * (Debian's libhttp-parser) that collects one request at a time, with the
 * limits a server needs and the status each kind of bad input deserves.
 * Takes bytes, knows nothing of sockets or Lua, so tests and the fuzzer
 * can feed it. */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <stddef.h>
#include <stdint.h>

struct gw_http1_limits {
    uint32_t max_header_size; /* request line and headers, bytes (431; 414 in the URL) */
    int max_headers;          /* header fields (431) */
    long long max_body;       /* body bytes, announced or received (413) */
};

enum gw_http1_event {
    GW_HTTP1_MORE,     /* every byte taken; the request is not complete yet */
    GW_HTTP1_CONTINUE, /* headers done, the client waits for "100 Continue" before its body */
    GW_HTTP1_REQUEST,  /* a whole request: read it, then gw_http1_next() */
    GW_HTTP1_UPGRADE,  /* a whole request asking to switch protocols: what follows is not HTTP */
    GW_HTTP1_ERROR     /* bad input: answer gw_http1_status()/message(), then close */
};

struct gw_http1;

/* NULL when out of memory. */
struct gw_http1 *gw_http1_new(const struct gw_http1_limits *lim);
void gw_http1_free(struct gw_http1 *p);

/* Why the input was refused (after GW_HTTP1_ERROR): an HTTP status and
 * a message for the JSON answer. */
int gw_http1_status(const struct gw_http1 *p);
const char *gw_http1_message(const struct gw_http1 *p);

/* Parse up to 'len' bytes; stops after an event other than MORE. Returns
 * the bytes taken and sets *ev. After GW_HTTP1_CONTINUE, feed the rest;
 * after REQUEST or UPGRADE, call gw_http1_next() first; after ERROR,
 * stop. */
size_t gw_http1_feed(struct gw_http1 *p, const char *data, size_t len, enum gw_http1_event *ev);

/* Forget the request read (keeping the buffers) to read the next one. */
void gw_http1_next(struct gw_http1 *p);

/* 1 while a request has begun and is not complete. */
int gw_http1_busy(const struct gw_http1 *p);

/* Body bytes received so far (decoded when chunked), or -1 while the head
 * is still arriving. */
long long gw_http1_body_received(const struct gw_http1 *p);

/* --- The request (valid until gw_http1_next) -------------------------- */

const char *gw_http1_method(const struct gw_http1 *p); /* "GET", ... */
const char *gw_http1_url(const struct gw_http1 *p, size_t *len);
/* The value of header 'name' (lower case), or NULL. */
const char *gw_http1_header(const struct gw_http1 *p, const char *name);
/* The i-th header field (0 <= i < gw_http1_nfields), NUL-terminated. */
int gw_http1_nfields(const struct gw_http1 *p);
void gw_http1_field(const struct gw_http1 *p, int i, const char **name, size_t *name_len,
                    const char **value, size_t *value_len);
/* The body (decoded when chunked); NULL when the request has none. */
const char *gw_http1_body(const struct gw_http1 *p, size_t *len);
int gw_http1_keep_alive(const struct gw_http1 *p);
int gw_http1_minor(const struct gw_http1 *p); /* HTTP/1.x */

/* --- URLs ------------------------------------------------------------- */

/* Split an origin-form target ("/...") or an absolute-form one
 * ("http://host/...") into path and query (after '?', without the
 * fragment). Returns GW_ERR for any other form. */
int gw_http1_split_target(const char *url, size_t len, const char **path, size_t *path_len,
                          const char **query, size_t *query_len);

#endif
