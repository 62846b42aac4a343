/* Unit tests for gw_tls.h, fed bytes: a client SSL (OpenSSL over memory
 * BIOs) and a gw_tls_conn pass records by hand. The handshake, ALPN (the
 * server's order, none in common), plaintext both ways, close_notify, and
 * what a server sees from plain HTTP, noise and a cut ClientHello; the
 * file errors of gw_tls_new. The certificate is made here, in C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/gw.h"
#include "net/tls.h"

static char cert_path[64], key_path[64], other_key_path[64];

static void write_key(EVP_PKEY *k, const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* A self-signed P-256 certificate for CN=localhost, and a key of another pair. */
static int make_files(void **state) {
    (void)state;
    snprintf(cert_path, sizeof cert_path, "/tmp/gw-test-tls-%d-cert.pem", (int)getpid());
    snprintf(key_path, sizeof key_path, "/tmp/gw-test-tls-%d-key.pem", (int)getpid());
    snprintf(other_key_path, sizeof other_key_path, "/tmp/gw-test-tls-%d-other.pem", (int)getpid());
    EVP_PKEY *k = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, k, EVP_sha256());
    FILE *f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    write_key(k, key_path);
    write_key(other, other_key_path);
    X509_free(x);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    return 0;
}

static int remove_files(void **state) {
    (void)state;
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    return 0;
}

/* A client (no verification: the server side is under test). */
struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
};

static void client_init(struct client *c, const unsigned char *alpn, unsigned alpn_len) {
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->ssl = SSL_new(c->ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
    if (alpn) SSL_set_alpn_protos(c->ssl, alpn, alpn_len);
}

static void client_close(struct client *c) {
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Move what each side wrote to the other until neither has more; the
 * server's plaintext lands in 'got'. Returns the server's last gw_tls_read. */
static long shuttle(struct client *c, struct gw_tls_conn *s, char *got, size_t cap, size_t *got_len) {
    char buf[65536];
    long last = GW_TLS_AGAIN;
    for (int round = 0; round < 20; round++) {
        int moved = 0, n;
        while ((n = BIO_read(c->out, buf, sizeof buf)) > 0) {
            gw_tls_feed(s, buf, (size_t)n);
            moved = 1;
        }
        for (;;) {
            last = gw_tls_read(s, buf, sizeof buf);
            if (last <= 0) break;
            assert_true(*got_len + (size_t)last <= cap);
            memcpy(got + *got_len, buf, (size_t)last);
            *got_len += (size_t)last;
        }
        size_t m;
        while ((m = gw_tls_take(s, buf, sizeof buf)) > 0) {
            BIO_write(c->in, buf, (int)m);
            moved = 1;
        }
        SSL_do_handshake(c->ssl);
        if (!moved || last < 0) break;
    }
    return last;
}

static void test_handshake_alpn_and_data(void **state) {
    (void)state;
    char err[512];
    struct gw_tls *t = gw_tls_new(cert_path, key_path, "1.2", err, sizeof err);
    assert_non_null(t);
    static const struct {
        const char *offer; /* the server's list */
        const char *client; unsigned client_len;
        const char *want;
    } cases[] = {
        {"http/1.1", "\x02h2\x08http/1.1", 12, "http/1.1"},
        {"h2,http/1.1", "\x08http/1.1\x02h2", 12, "h2"}, /* the server's order wins */
        {"h2,http/1.1", "\x08http/1.1", 9, "http/1.1"},
        {"h2", "\x08http/1.1", 9, NULL},                   /* none in common: no ALPN */
        {"http/1.1", NULL, 0, NULL},                      /* the client asked for none */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(gw_tls_set_alpn(t, cases[i].offer), GW_OK);
        struct gw_tls_conn *s = gw_tls_conn_new(t);
        struct client c;
        client_init(&c, (const unsigned char *)cases[i].client, cases[i].client_len);
        SSL_do_handshake(c.ssl);
        char got[1024];
        size_t got_len = 0;
        assert_int_equal(shuttle(&c, s, got, sizeof got, &got_len), GW_TLS_AGAIN);
        assert_true(gw_tls_ready(s));
        assert_true(SSL_is_init_finished(c.ssl));
        if (cases[i].want) assert_string_equal(gw_tls_alpn(s), cases[i].want);
        else assert_null(gw_tls_alpn(s));
        assert_string_equal(gw_tls_version(s), "TLSv1.3");
        /* Plaintext both ways. */
        assert_int_equal(SSL_write(c.ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
        assert_int_equal(shuttle(&c, s, got, sizeof got, &got_len), GW_TLS_AGAIN);
        assert_int_equal(got_len, 18);
        assert_memory_equal(got, "GET / HTTP/1.1\r\n\r\n", 18);
        assert_int_equal(gw_tls_write(s, "HTTP/1.1 200 OK\r\n", 17), GW_OK);
        got_len = 0;
        shuttle(&c, s, got, sizeof got, &got_len);
        char back[64];
        assert_int_equal(SSL_read(c.ssl, back, sizeof back), 17);
        assert_memory_equal(back, "HTTP/1.1 200 OK\r\n", 17);
        /* close_notify: the client sees a clean end. */
        gw_tls_close_notify(s);
        assert_int_equal(gw_tls_write(s, "x", 1), GW_ERR);
        shuttle(&c, s, got, sizeof got, &got_len);
        assert_int_equal(SSL_read(c.ssl, back, sizeof back), 0);
        assert_int_equal(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
        client_close(&c);
        gw_tls_conn_free(s);
    }
    assert_int_equal(gw_tls_set_alpn(t, ""), GW_ERR);
    assert_int_equal(gw_tls_set_alpn(t, "h2,,x"), GW_ERR);
    gw_tls_free(t);
}

static void test_client_close_notify_is_closed(void **state) {
    (void)state;
    char err[512], got[64];
    size_t got_len = 0;
    struct gw_tls *t = gw_tls_new(cert_path, key_path, "1.3", err, sizeof err);
    struct gw_tls_conn *s = gw_tls_conn_new(t);
    struct client c;
    client_init(&c, NULL, 0);
    SSL_do_handshake(c.ssl);
    shuttle(&c, s, got, sizeof got, &got_len);
    SSL_shutdown(c.ssl);
    assert_int_equal(shuttle(&c, s, got, sizeof got, &got_len), GW_TLS_CLOSED);
    client_close(&c);
    gw_tls_conn_free(s);
    gw_tls_free(t);
}

/* What the server makes of bytes that are not a TLS client's. */
static long server_sees(struct gw_tls *t, const char *data, size_t len) {
    struct gw_tls_conn *s = gw_tls_conn_new(t);
    char buf[4096];
    gw_tls_feed(s, data, len);
    long r = gw_tls_read(s, buf, sizeof buf);
    while (gw_tls_take(s, buf, sizeof buf) > 0) {
    }
    if (r < 0) assert_true(strlen(gw_tls_error(s)) > 0);
    gw_tls_conn_free(s);
    return r;
}

static void test_not_tls(void **state) {
    (void)state;
    char err[512];
    struct gw_tls *t = gw_tls_new(cert_path, key_path, "1.2", err, sizeof err);
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char post[] = "POST /api/x HTTP/1.1\r\n";
    static const char noise[] = "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00";
    static const char alert[] = "\x15\x03\x03\x00\x02\x02\x28";
    static const char cut[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    assert_int_equal(server_sees(t, get, sizeof get - 1), GW_TLS_PLAIN_HTTP);
    assert_int_equal(server_sees(t, post, sizeof post - 1), GW_TLS_PLAIN_HTTP);
    assert_int_equal(server_sees(t, noise, sizeof noise - 1), GW_TLS_ERROR);
    assert_int_equal(server_sees(t, alert, sizeof alert - 1), GW_TLS_ERROR);
    assert_int_equal(server_sees(t, cut, sizeof cut - 1), GW_TLS_AGAIN); /* waits: the sweep's to end */
    char junk[3000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 7 + 3);
    assert_true(server_sees(t, junk, sizeof junk) < 0);
    gw_tls_free(t);
}

static void test_file_errors(void **state) {
    (void)state;
    char err[512];
    assert_null(gw_tls_new("/nonexistent/cert.pem", key_path, "1.2", err, sizeof err));
    assert_non_null(strstr(err, "servers.web.tls.cert: cannot read \"/nonexistent/cert.pem\""));
    assert_null(gw_tls_new(cert_path, "/nonexistent/key.pem", "1.2", err, sizeof err));
    assert_non_null(strstr(err, "servers.web.tls.key: cannot read"));
    assert_null(gw_tls_new(key_path, key_path, "1.2", err, sizeof err));
    assert_non_null(strstr(err, "is not a PEM certificate"));
    assert_null(gw_tls_new(cert_path, cert_path, "1.2", err, sizeof err));
    assert_non_null(strstr(err, "is not an unencrypted PEM private key"));
    assert_null(gw_tls_new(cert_path, other_key_path, "1.2", err, sizeof err));
    assert_non_null(strstr(err, "does not match the certificate"));
    assert_null(gw_tls_new(cert_path, key_path, "1.1", err, sizeof err));
    assert_non_null(strstr(err, "servers.web.tls.minVersion"));
    /* A reload that fails keeps the context in use. */
    struct gw_tls *t = gw_tls_new(cert_path, key_path, "1.2", err, sizeof err);
    assert_non_null(t);
    assert_int_equal(gw_tls_reload(t, cert_path, other_key_path, "1.2", err, sizeof err), GW_ERR);
    assert_int_equal(gw_tls_reload(t, cert_path, key_path, "1.3", err, sizeof err), GW_OK);
    gw_tls_free(t);
    gw_tls_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_alpn_and_data),
        cmocka_unit_test(test_client_close_notify_is_closed),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, make_files, remove_files);
}
