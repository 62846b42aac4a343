/* TLS as a byte-stream layer (OpenSSL 3, memory BIOs): the web listener's
 * connections feed it the ciphertext they read and send the ciphertext it
 * produces; in between, plaintext goes to and from the HTTP parser as on a
 * plain connection. No sockets here: the caller moves the bytes. One
 * context per process (certificate, key, versions, the ALPN list offered);
 * one state per connection. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>

struct gw_tls;      /* a server context: certificate chain, key, versions, ALPN */
struct gw_tls_conn; /* one connection's TLS state */

/* A server context from the PEM files 'cert' (the certificate, then any
 * intermediates) and 'key' (an unencrypted private key), accepting
 * 'min_version' ("1.2" or "1.3") and up. OpenSSL's default cipher list
 * and groups apply; renegotiation is refused. ALPN offers "http/1.1"
 * until gw_tls_set_alpn says otherwise. Returns NULL with one line in
 * 'err' naming the config key and the file at fault: unreadable, not PEM,
 * an encrypted key, a key that does not match the certificate. */
struct gw_tls *gw_tls_new(const char *cert, const char *key, const char *min_version, char *err,
                          size_t errlen);

/* Load 'cert' and 'key' again (certificate rotation, SIGHUP). New
 * connections get the new pair; open ones keep theirs. On error 'tls' is
 * unchanged and 'err' says why (as gw_tls_new). GW_OK or GW_ERR. */
int gw_tls_reload(struct gw_tls *tls, const char *cert, const char *key, const char *min_version,
                  char *err, size_t errlen);

/* The protocols ALPN may select, in the server's order of preference, as
 * a comma-separated list ("h2,http/1.1"; each name 1 to 255 bytes). A
 * client offering none of them gets no ALPN answer (it speaks HTTP/1.1).
 * Applies to handshakes that start after the call. GW_ERR on a bad list. */
int gw_tls_set_alpn(struct gw_tls *tls, const char *list);

/* Free 'tls' (NULL is fine); connections made from it may outlive it. */
void gw_tls_free(struct gw_tls *tls);

/* A connection's state, server side, from the context as it is now; NULL
 * when out of memory. */
struct gw_tls_conn *gw_tls_conn_new(struct gw_tls *tls);
void gw_tls_conn_free(struct gw_tls_conn *c);

/* Ciphertext read from the socket, copied in. */
void gw_tls_feed(struct gw_tls_conn *c, const char *data, size_t len);

/* What gw_tls_read returns besides a byte count. */
enum {
    GW_TLS_AGAIN = 0,     /* nothing more until more ciphertext is fed */
    GW_TLS_CLOSED = -1,   /* the peer sent close_notify */
    GW_TLS_ERROR = -2,    /* a handshake or record error: close (see gw_tls_error) */
    GW_TLS_PLAIN_HTTP = -3 /* the first bytes were a plain HTTP request, not TLS */
};

/* Run the handshake as far as the fed bytes allow, then decrypt into
 * 'buf' (up to 'cap' bytes). Returns the number of plaintext bytes (> 0)
 * or one of the values above. Call until it returns <= 0, then send what
 * gw_tls_take gives (the handshake writes too). */
long gw_tls_read(struct gw_tls_conn *c, char *buf, size_t cap);

/* Encrypt 'len' bytes of plaintext (all of them: the output buffer grows);
 * GW_OK, or GW_ERR once the connection has failed. */
int gw_tls_write(struct gw_tls_conn *c, const char *data, size_t len);

/* Queue a close_notify alert (once; after it nothing more is written). */
void gw_tls_close_notify(struct gw_tls_conn *c);

/* Move up to 'cap' bytes of the ciphertext waiting to be sent (records,
 * alerts, handshake messages) into 'buf'; returns how many (0: none). */
size_t gw_tls_take(struct gw_tls_conn *c, char *buf, size_t cap);

/* Has the handshake completed? */
int gw_tls_ready(const struct gw_tls_conn *c);

/* The protocol ALPN selected ("h2", "http/1.1"), NUL-terminated, or NULL
 * when none was (the client asked for none, or for none offered, or the
 * handshake has not completed). The string is valid until the next call. */
const char *gw_tls_alpn(const struct gw_tls_conn *c);

/* The negotiated version ("TLSv1.3") or "" before the handshake. */
const char *gw_tls_version(const struct gw_tls_conn *c);

/* Why the last call failed, for the log (OpenSSL's reason). */
const char *gw_tls_error(const struct gw_tls_conn *c);

#endif
