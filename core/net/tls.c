/* See tls.h. Each connection's SSL reads from one memory BIO (the
 * ciphertext fed in) and writes to another (the ciphertext taken out), so
 * OpenSSL never touches a socket and the HTTP layer keeps its one loop.
 * The context is reference-counted by OpenSSL: a reload swaps in a new one
 * while open connections keep the old. */
#include "net/tls.h"
#include "base/gw.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALPN_MAX 256

struct gw_tls {
    SSL_CTX *ctx;
    unsigned char alpn[ALPN_MAX]; /* wire format: length-prefixed names */
    unsigned alpn_len;
};

struct gw_tls_conn {
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
    int failed, shut;
    char why[160];
};

/* An encrypted key would make OpenSSL ask for its passphrase on the
 * terminal: refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* OpenSSL's last reason, for a message. */
static const char *ssl_reason(char *buf, size_t len) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    gw_fmt(buf, len, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

/* Is 'path' a file this process can read? Else why not, into 'err'. */
static int readable(const char *key, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        gw_fmt(err, errlen, "%s: cannot read \"%s\": %s", key, path, strerror(errno));
        return GW_ERR;
    }
    fclose(f);
    return GW_OK;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg) {
    struct gw_tls *t = arg;
    unsigned char *sel;
    (void)ssl;
    /* The server's order (first argument), the first the client also offers. */
    if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *load_ctx(struct gw_tls *t, const char *cert, const char *key, const char *min_version,
                         char *err, size_t errlen) {
    char why[160];
    int version;
    if (strcmp(min_version, "1.2") == 0) version = TLS1_2_VERSION;
    else if (strcmp(min_version, "1.3") == 0) version = TLS1_3_VERSION;
    else {
        gw_fmt(err, errlen, "servers.web.tls.minVersion: must be \"1.2\" or \"1.3\", got \"%s\"", min_version);
        return NULL;
    }
    if (readable("servers.web.tls.cert", cert, err, errlen) != GW_OK ||
        readable("servers.web.tls.key", key, err, errlen) != GW_OK)
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        gw_fmt(err, errlen, "servers.web.tls: cannot make an OpenSSL context: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        gw_fmt(err, errlen, "servers.web.tls.cert: \"%s\" is not a PEM certificate (%s)", cert,
               ssl_reason(why, sizeof why));
        goto fail;
    }
    /* Read apart from its use, so that a key that does not parse and one
     * that does not match the certificate get messages of their own. */
    BIO *kb = BIO_new_file(key, "r");
    EVP_PKEY *pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
    BIO_free(kb);
    if (!pkey) {
        gw_fmt(err, errlen, "servers.web.tls.key: \"%s\" is not an unencrypted PEM private key (%s)", key,
               ssl_reason(why, sizeof why));
        goto fail;
    }
    int used = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    if (!used) {
        ERR_clear_error();
        gw_fmt(err, errlen, "servers.web.tls.key: \"%s\" does not match the certificate in \"%s\"", key, cert);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, version);
    /* A client-started renegotiation costs the server a handshake each
     * time and gains nothing here; buffers given back between records keep
     * an idle keep-alive connection small. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, t);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct gw_tls *gw_tls_new(const char *cert, const char *key, const char *min_version, char *err,
                          size_t errlen) {
    struct gw_tls *t = calloc(1, sizeof *t);
    if (!t) gw_panic("out of memory");
    gw_tls_set_alpn(t, "http/1.1");
    if (!(t->ctx = load_ctx(t, cert, key, min_version, err, errlen))) {
        free(t);
        return NULL;
    }
    return t;
}

int gw_tls_reload(struct gw_tls *t, const char *cert, const char *key, const char *min_version, char *err,
                  size_t errlen) {
    SSL_CTX *ctx = load_ctx(t, cert, key, min_version, err, errlen);
    if (!ctx) return GW_ERR;
    SSL_CTX_free(t->ctx); /* open connections hold their own reference */
    t->ctx = ctx;
    return GW_OK;
}

int gw_tls_set_alpn(struct gw_tls *t, const char *list) {
    unsigned char wire[ALPN_MAX];
    unsigned n = 0;
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 255 || n + 1 + len > sizeof wire) return GW_ERR;
        wire[n++] = (unsigned char)len;
        memcpy(wire + n, p, len);
        n += (unsigned)len;
        p += len + (comma ? 1 : 0);
    }
    if (n == 0) return GW_ERR;
    memcpy(t->alpn, wire, n);
    t->alpn_len = n;
    return GW_OK;
}

void gw_tls_free(struct gw_tls *t) {
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

struct gw_tls_conn *gw_tls_conn_new(struct gw_tls *t) {
    struct gw_tls_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (!(c->ssl = SSL_new(t->ctx)) || !(c->in = BIO_new(BIO_s_mem())) || !(c->out = BIO_new(BIO_s_mem()))) {
        BIO_free(c->in);
        BIO_free(c->out);
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    /* An empty memory BIO says "retry" rather than EOF. */
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_accept_state(c->ssl);
    return c;
}

void gw_tls_conn_free(struct gw_tls_conn *c) {
    if (!c) return;
    SSL_free(c->ssl); /* and its BIOs */
    free(c);
}

void gw_tls_feed(struct gw_tls_conn *c, const char *data, size_t len) {
    if (len && BIO_write(c->in, data, (int)len) != (int)len) c->failed = 1;
}

/* A failed SSL call: record why, and whether the bytes were plain HTTP. */
static long failure(struct gw_tls_conn *c, int code) {
    unsigned long e = ERR_peek_last_error();
    int plain = code == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
                (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST || ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST);
    if (code == SSL_ERROR_SYSCALL && !e) gw_fmt(c->why, sizeof c->why, "unexpected end of stream");
    else ssl_reason(c->why, sizeof c->why);
    c->failed = 1;
    return plain ? GW_TLS_PLAIN_HTTP : GW_TLS_ERROR;
}

long gw_tls_read(struct gw_tls_conn *c, char *buf, size_t cap) {
    if (c->failed) return GW_TLS_ERROR;
    size_t got = 0;
    int r = SSL_read_ex(c->ssl, buf, cap, &got);
    if (r == 1) return (long)got;
    int code = SSL_get_error(c->ssl, r);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return GW_TLS_AGAIN;
    if (code == SSL_ERROR_ZERO_RETURN) return GW_TLS_CLOSED;
    return failure(c, code);
}

int gw_tls_write(struct gw_tls_conn *c, const char *data, size_t len) {
    if (c->failed || c->shut) return GW_ERR;
    size_t done = 0;
    if (len == 0) return GW_OK;
    /* The output BIO grows, so a write completes unless the connection failed. */
    if (SSL_write_ex(c->ssl, data, len, &done) != 1 || done != len) {
        failure(c, SSL_get_error(c->ssl, 0));
        return GW_ERR;
    }
    return GW_OK;
}

void gw_tls_close_notify(struct gw_tls_conn *c) {
    if (c->shut || c->failed || !SSL_is_init_finished(c->ssl)) return;
    c->shut = 1;
    SSL_shutdown(c->ssl);
    ERR_clear_error();
}

size_t gw_tls_take(struct gw_tls_conn *c, char *buf, size_t cap) {
    size_t got = 0;
    if (BIO_ctrl_pending(c->out) == 0 || BIO_read_ex(c->out, buf, cap, &got) != 1) return 0;
    return got;
}

int gw_tls_ready(const struct gw_tls_conn *c) { return SSL_is_init_finished(c->ssl); }

const char *gw_tls_alpn(const struct gw_tls_conn *c) {
    static char name[256];
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    if (!p || !len) return NULL;
    memcpy(name, p, len);
    name[len] = '\0';
    return name;
}

const char *gw_tls_version(const struct gw_tls_conn *c) {
    return SSL_is_init_finished(c->ssl) ? SSL_get_version(c->ssl) : "";
}

const char *gw_tls_error(const struct gw_tls_conn *c) { return c->why[0] ? c->why : "no error"; }
