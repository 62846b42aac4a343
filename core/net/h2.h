/* HTTP/2 (RFC 9113) on one connection, through libnghttp2: bytes in,
 * bytes out, one HTTP/1.1 exchange per stream. Each stream's request is
 * handed over as HTTP/1.1 text (request line, headers, body), and its
 * answer is taken back as HTTP/1.1 text, so the connection's owner (net/
 * http.c) parses, limits and answers it with the same code as an HTTP/1.1
 * request. Knows nothing of sockets or Lua: the unit tests and the fuzzer
 * feed it bytes. */
#ifndef GW_H2_H
#define GW_H2_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GW_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define GW_H2_PREFACE_LEN 24
/* The request bodies a connection's streams may hold at once, waiting for
 * their END_STREAM: this many times max_body (at least GW_H2_BODY_MIN);
 * a stream whose DATA would pass it is reset with REFUSED_STREAM. */
#define GW_H2_BODY_STREAMS 4
#define GW_H2_BODY_MIN (1024 * 1024)

struct gw_h2_limits {
    uint32_t max_header_size;        /* request line and headers as HTTP/1.1 text (431; 414 in the path) */
    int max_headers;                 /* header fields (431) */
    long long max_body;              /* body bytes, announced or received (413) */
    uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint32_t initial_window;         /* SETTINGS_INITIAL_WINDOW_SIZE, per stream */
};

/* What the owner does for its streams. 'conn' is gw_h2_new's; 'stream' is
 * what open() returned. None of them may call gw_h2_feed or gw_h2_pull;
 * gw_h2_write and gw_h2_reset are allowed. */
struct gw_h2_ops {
    /* A client opened stream 'id': the owner's object for it, or NULL to
     * refuse it (RST_STREAM REFUSED_STREAM). */
    void *(*open)(void *conn, int32_t id);
    /* The stream's request, whole, as HTTP/1.1 text (valid during the
     * call; a Host line from :authority when the client sent none, the
     * cookie fields joined, a Content-Length for the body). When 'status'
     * is not 0 the request broke a limit: text is NULL, answer 'status'
     * with 'message'. Called once per stream, or never (reset before). */
    void (*request)(void *stream, const char *text, size_t len, int status, const char *message);
    /* 'len' body bytes arrived (for the body timeouts). */
    void (*received)(void *stream, size_t len);
    /* Everything gw_h2_write took for the stream has gone into frames:
     * write more. */
    void (*sent)(void *stream);
    /* The stream is closed (answered, or reset by either side: 'error' is
     * the RST_STREAM/GOAWAY code, 0 for a normal end). No call on it after. */
    void (*closed)(void *stream, uint32_t error);
};

struct gw_h2;

/* A server session whose first bytes are the client's connection preface
 * (prior knowledge, or ALPN "h2" after a TLS handshake): feed them with
 * gw_h2_feed. Queues the server's SETTINGS. NULL when out of memory. */
struct gw_h2 *gw_h2_new(const struct gw_h2_limits *lim, const struct gw_h2_ops *ops, void *conn);

/* Free without calling ops (the owner drops its streams itself). Accepts NULL. */
void gw_h2_free(struct gw_h2 *h2);

/* HTTP/1.1 "Upgrade: h2c" (RFC 7540 §3.2, cleartext only): after the
 * 101 is written, make the request already read stream 1, with the
 * client's HTTP2-Settings header value 'settings' (base64url). 'stream' is
 * the owner's object for it (as ops->open returns; no ops->request
 * follows: the owner answers the request it has). 'head_only' for HEAD.
 * Then feed the client's preface and frames as usual. GW_ERR when the
 * settings do not decode: a GOAWAY PROTOCOL_ERROR is queued (pull it,
 * then close). */
int gw_h2_upgrade(struct gw_h2 *h2, const char *settings, int head_only, void *stream);

/* Take bytes from the client. GW_ERR when the connection cannot go on
 * (a GOAWAY may be queued: pull it, then close). */
int gw_h2_feed(struct gw_h2 *h2, const char *data, size_t len);

/* Bytes for the client, in order: sets *data (valid until the next call)
 * and returns their length, 0 when there is nothing to send now, or -1
 * on a fatal error (close). */
ssize_t gw_h2_pull(struct gw_h2 *h2, const char **data);

/* Write stream 'id''s answer as HTTP/1.1 text, in as many pieces as
 * wanted: the status line and headers (connection-specific ones dropped,
 * names lower-cased), then Content-Length body bytes (none for HEAD, 1xx,
 * 204, 304). Copies what it keeps. Returns 1 when bytes wait to be framed
 * (ops->sent follows), 0 when none do, GW_ERR when the stream is gone or
 * the answer is not HTTP/1.1 text. */
int gw_h2_write(struct gw_h2 *h2, int32_t id, const char *data, size_t len);

/* Reset stream 'id' (RST_STREAM INTERNAL_ERROR) unless its answer is
 * complete: the owner cannot finish it. */
void gw_h2_reset(struct gw_h2 *h2, int32_t id);

/* Shutdown: GOAWAY (NO_ERROR) naming the last stream taken; streams
 * already open are still answered, no new one is. */
void gw_h2_shutdown(struct gw_h2 *h2);

/* 1 when the session has nothing more to read or write (after a GOAWAY,
 * and every stream closed): close the connection once its output left. */
int gw_h2_done(const struct gw_h2 *h2);

/* Streams open now. */
int gw_h2_streams(const struct gw_h2 *h2);

#endif
