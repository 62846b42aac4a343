/* Static files: GET and HEAD under /<urlPathForFiles>/ served from
 * paths.public, with ETag/Last-Modified revalidation. Files are opened on
 * libuv's threadpool and streamed in chunks, one at a time, as the
 * connection's output drains; gw_http decides which requests come here
 * and owns the connection. */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

/* One file request on one connection. */
struct gw_static;

/* What gw_static_writable tells the connection. */
enum gw_static_step {
    GW_STATIC_MORE,  /* waiting for the disk or the socket */
    GW_STATIC_DONE,  /* answer complete: free it, go on with the next request */
    GW_STATIC_ERROR  /* cannot go on (write or read failed): free it, close */
};

/* How a file answer reaches its connection. */
struct gw_static_out {
    /* Queue bytes for the client (copying what the socket does not take
     * now); GW_ERR when the connection has failed. */
    int (*write)(void *conn, const char *data, size_t len);
    /* Call gw_static_writable() from the loop once the output has drained. */
    void (*wake)(void *conn);
};

/* The part of 'path' after "/<files>/", "" for "/<files>" itself, or NULL
 * when the path is not under 'files' (leading and trailing slashes of
 * 'files' are ignored; an empty 'files' claims nothing). The result
 * points into 'path'. */
const char *gw_static_rest(const char *files, const char *path);

/* Start answering a GET (head_only 0) or HEAD for 'rest' (from
 * gw_static_rest; 'len' is its length, so a NUL inside is seen and
 * answered 404) out of the folder 'root'; 'url_path' is only for the log
 * line; the conditional headers may be NULL; 'connection' is the
 * Connection header's value to send ("close", "keep-alive") or NULL. Copies what it keeps. The
 * file is opened on the threadpool and out->wake() is called when there
 * is something to write. Returns NULL when out of memory. */
struct gw_static *gw_static_new(const struct gw_static_out *out, void *conn, uv_loop_t *loop,
                                const char *root, const char *url_path, const char *rest,
                                size_t len, int head_only, const char *if_none_match,
                                const char *if_modified_since, const char *connection);

/* Write the headers or the next chunk (after out->wake()). */
enum gw_static_step gw_static_writable(struct gw_static *st);

/* The connection is done with 'st' (answer complete, or the client went
 * away): it may not be used again. Logs the request; the memory and the
 * file go when the disk operation in flight, if any, completes. Accepts
 * NULL. */
void gw_static_free(struct gw_static *st);

/* --- Pure helpers, exposed for the unit tests ------------------------- */

/* Resolve 'rest' (a %-decoded URL path relative to the folder) inside
 * 'root' (any path to the public folder): the real path, symlinks
 * resolved, of a regular file, or of index.html for a folder. Refuses a
 * ".." segment (split on '/' and '\'), and anything whose real path is
 * outside realpath(root). Blocking (realpath, stat): runs on the
 * threadpool. Returns GW_OK with the path in 'out', or GW_ERR. */
int gw_static_resolve(const char *root, const char *rest, char *out, size_t outlen);

/* Content-Type for a file name, by extension (case-insensitive); text
 * types carry "; charset=utf-8"; application/octet-stream when unknown. */
const char *gw_static_mime(const char *name);

/* A strong ETag (quotes included) from size and modification time. */
void gw_static_etag(char *buf, size_t len, uint64_t size, int64_t mtime_sec, long mtime_nsec);

/* 1 when an If-None-Match value matches 'etag': "*", or a list of tags
 * compared weakly (W/ ignored), as RFC 9110 §13.1.2 says; 0 otherwise. */
int gw_static_etag_match(const char *if_none_match, const char *etag);

/* Format 't' as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into
 * 'buf' (30 bytes are enough). Returns the length. */
size_t gw_static_http_date(char *buf, size_t len, time_t t);

/* Parse an HTTP date (IMF-fixdate, RFC 850 or asctime). Returns GW_OK and
 * sets *out, or GW_ERR. */
int gw_static_parse_http_date(const char *s, time_t *out);

#endif
