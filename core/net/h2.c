/* See h2.h. libnghttp2 does the framing, HPACK, flow control and the
 * protocol's own checks (pseudo-headers, connection-specific fields,
 * Content-Length against DATA, floods); this file turns each stream into
 * one HTTP/1.1 exchange: the request written out as HTTP/1.1 text once it
 * is whole, and the answer's HTTP/1.1 head parsed back into a HEADERS
 * frame, its body sent as DATA through a data provider. */
#include "net/h2.h"
#include "base/gw.h"

#include <limits.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEAD_MAX (64 * 1024) /* an answer's status line and headers */
#define TOO_LARGE "request body is larger than maxBodySize"

struct buf {
    char *p;
    size_t len, cap;
};

struct stream {
    struct gw_h2 *h2;
    struct stream *prev, *next; /* the session's open streams */
    int32_t id;
    void *user;
    /* The request, collected: the pseudo-headers, then the fields as
     * "name: value\r\n" lines, the cookies joined, the body. */
    struct buf method, path, authority, fields, cookie, body;
    int nfields, has_host, has_length;
    long long length; /* the client's Content-Length, or -1 */
    size_t head_size; /* the request line and fields, as HTTP/1.1 text */
    int status;       /* a limit broken: the answer to give */
    const char *message;
    int delivered;    /* the request (or its refusal) went to ops->request */
    int remote_done;  /* the client ended its side */
    int head_only;
    /* The answer: its head while it arrives, then the body to frame. */
    struct buf ahead, out;
    size_t out_off;
    int submitted;
    long long body_left; /* body bytes still to come from the owner */
    int deferred;        /* the data provider waits for gw_h2_write */
    int complete;        /* the last of the answer is framed */
};

struct gw_h2 {
    nghttp2_session *session;
    struct gw_h2_limits lim;
    const struct gw_h2_ops *ops;
    void *conn;
    struct stream *streams;
    int nstreams;
    /* Request bodies held by the streams not yet handed over, and how much
     * they may hold together: each stream may hold max_body, not all of
     * them at once. */
    long long body_held, body_budget;
};

/* --- Buffers ------------------------------------------------------------- */

static int buf_add(struct buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return GW_ERR;
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return GW_OK;
}

static void buf_free(struct buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static void drop_body(struct stream *s) {
    s->h2->body_held -= (long long)s->body.len;
    buf_free(&s->body);
}

static void stream_free(struct stream *s) {
    struct gw_h2 *h2 = s->h2;
    drop_body(s);
    if (s->prev) s->prev->next = s->next;
    else h2->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    h2->nstreams--;
    buf_free(&s->method);
    buf_free(&s->path);
    buf_free(&s->authority);
    buf_free(&s->fields);
    buf_free(&s->cookie);
    buf_free(&s->body);
    buf_free(&s->ahead);
    buf_free(&s->out);
    free(s);
}

static struct stream *stream_of(struct gw_h2 *h2, int32_t id) {
    return nghttp2_session_get_stream_user_data(h2->session, id);
}

/* --- The request --------------------------------------------------------- */

/* A limit broken: refuse (once) with 'status'. */
static void refuse(struct stream *s, int status, const char *message) {
    if (!s->status) {
        s->status = status;
        s->message = message;
    }
}

/* Hand the request (or its refusal) over, once. */
static void deliver(struct stream *s) {
    if (s->delivered) return;
    s->delivered = 1;
    struct gw_h2 *h2 = s->h2;
    if (s->status) {
        h2->ops->request(s->user, NULL, 0, s->status, s->message);
        return;
    }
    struct buf t = {0};
    const struct buf *target = s->path.len ? &s->path : &s->authority; /* CONNECT has no :path */
    int ok = buf_add(&t, s->method.p, s->method.len) == GW_OK && buf_add(&t, " ", 1) == GW_OK &&
             buf_add(&t, target->p, target->len) == GW_OK && buf_add(&t, " HTTP/1.1\r\n", 11) == GW_OK;
    if (ok && !s->has_host && s->authority.len)
        ok = buf_add(&t, "host: ", 6) == GW_OK && buf_add(&t, s->authority.p, s->authority.len) == GW_OK &&
             buf_add(&t, "\r\n", 2) == GW_OK;
    if (ok) ok = buf_add(&t, s->fields.p, s->fields.len) == GW_OK;
    if (ok && s->cookie.len)
        ok = buf_add(&t, "cookie: ", 8) == GW_OK && buf_add(&t, s->cookie.p, s->cookie.len) == GW_OK &&
             buf_add(&t, "\r\n", 2) == GW_OK;
    if (ok && !s->has_length && s->body.len) {
        char num[32];
        int n = snprintf(num, sizeof num, "content-length: %zu\r\n", s->body.len);
        ok = buf_add(&t, num, (size_t)n) == GW_OK;
    }
    if (ok) ok = buf_add(&t, "\r\n", 2) == GW_OK && buf_add(&t, s->body.p, s->body.len) == GW_OK;
    drop_body(s);
    if (ok) h2->ops->request(s->user, t.p, t.len, 0, NULL);
    else h2->ops->request(s->user, NULL, 0, 500, "out of memory");
    buf_free(&t);
}

/* Bytes a request line or field may not hold once written as HTTP/1.1
 * (nghttp2 checks the fields; the pseudo-headers are checked here). */
static int plain(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] == 0x7f) return 0;
    return len > 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
    struct gw_h2 *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    int32_t id = frame->hd.stream_id;
    struct stream *s = calloc(1, sizeof *s);
    if (!s) return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->h2 = h2;
    s->id = id;
    s->length = -1;
    s->body_left = -1;
    if (!(s->user = h2->ops->open(h2->conn, id))) {
        free(s);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, id, s);
    s->next = h2->streams;
    if (h2->streams) h2->streams->prev = s;
    h2->streams = s;
    h2->nstreams++;
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud) {
    (void)session;
    (void)flags;
    struct gw_h2 *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* trailers: dropped */
    struct stream *s = stream_of(h2, frame->hd.stream_id);
    if (!s || s->status) return 0;
    const struct gw_h2_limits *lim = &h2->lim;
    if (nl && name[0] == ':') {
        struct buf *b = NULL;
        if (nl == 7 && memcmp(name, ":method", 7) == 0) b = &s->method;
        else if (nl == 5 && memcmp(name, ":path", 5) == 0) b = &s->path;
        else if (nl == 10 && memcmp(name, ":authority", 10) == 0) b = &s->authority;
        if (!b) return 0; /* :scheme, :protocol */
        if (!plain(value, vl)) {
            refuse(s, 400, "malformed HTTP request");
            return 0;
        }
        if (b == &s->path && vl > lim->max_header_size) {
            refuse(s, 414, "request URL is too long");
            return 0;
        }
        s->head_size += vl + 1;
        if (b == &s->method && vl == 4 && memcmp(value, "HEAD", 4) == 0) s->head_only = 1;
        if (buf_add(b, value, vl) != GW_OK) refuse(s, 431, "request headers are too large");
        return 0;
    }
    s->head_size += nl + vl + 4;
    if (s->head_size + 11 > lim->max_header_size) {
        refuse(s, 431, "request headers are too large");
        return 0;
    }
    if (nl == 6 && memcmp(name, "cookie", 6) == 0) {
        /* Split for HPACK, joined with "; " (RFC 9113 §8.2.3); one field. */
        if (s->cookie.len && buf_add(&s->cookie, "; ", 2) != GW_OK) refuse(s, 431, "request headers are too large");
        else if (buf_add(&s->cookie, value, vl) != GW_OK) refuse(s, 431, "request headers are too large");
        if (s->cookie.len == vl) s->nfields++;
    } else {
        if (nl == 4 && memcmp(name, "host", 4) == 0) s->has_host = 1;
        if (nl == 14 && memcmp(name, "content-length", 14) == 0) {
            s->has_length = 1;
            s->length = strtoll((const char *)value, NULL, 10); /* its form is checked by nghttp2 */
        }
        s->nfields++;
        if (buf_add(&s->fields, name, nl) != GW_OK || buf_add(&s->fields, ": ", 2) != GW_OK ||
            buf_add(&s->fields, value, vl) != GW_OK || buf_add(&s->fields, "\r\n", 2) != GW_OK)
            refuse(s, 431, "request headers are too large");
    }
    if (s->nfields + (!s->has_host && s->authority.len) > lim->max_headers)
        refuse(s, 431, "too many request headers");
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud) {
    (void)flags;
    struct stream *s = stream_of(ud, id);
    if (!s || s->delivered) return 0;
    struct gw_h2 *h2 = s->h2;
    if ((long long)(s->body.len + len) > h2->lim.max_body) {
        refuse(s, 413, TOO_LARGE);
        deliver(s);
        return 0;
    }
    if (h2->body_held + (long long)len > h2->body_budget) {
        /* The connection holds enough bodies: this stream may be sent again
         * (REFUSED_STREAM: nothing of it was processed, RFC 9113 §8.7). */
        s->delivered = 1;
        drop_body(s);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    if (buf_add(&s->body, data, len) != GW_OK) {
        refuse(s, 413, TOO_LARGE);
        deliver(s);
        return 0;
    }
    h2->body_held += (long long)len;
    h2->ops->received(s->user, len);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
    (void)session;
    struct gw_h2 *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    struct stream *s = stream_of(h2, frame->hd.stream_id);
    if (!s) return 0;
    int end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (end) s->remote_done = 1;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        /* The head is whole: a broken limit is answered now, not after the body. */
        if (!s->status && s->length > h2->lim.max_body) refuse(s, 413, TOO_LARGE);
        if (s->status) deliver(s);
    }
    if (end) deliver(s);
    return 0;
}

/* The answer went out with END_STREAM while the client still sends (a
 * refused body): stop it (RFC 9113 §8.1). */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct stream *s = stream_of(ud, frame->hd.stream_id);
    if (s && !s->remote_done)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error, void *ud) {
    struct gw_h2 *h2 = ud;
    struct stream *s = stream_of(h2, id);
    if (!s) return 0;
    nghttp2_session_set_stream_user_data(session, id, NULL);
    h2->ops->closed(s->user, error);
    stream_free(s);
    return 0;
}

/* --- The answer ---------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *dst, size_t len,
                         uint32_t *flags, nghttp2_data_source *source, void *ud) {
    (void)session;
    (void)id;
    (void)ud;
    struct stream *s = source->ptr;
    size_t avail = s->out.len - s->out_off;
    size_t n = avail < len ? avail : len;
    if (n) memcpy(dst, s->out.p + s->out_off, n);
    s->out_off += n;
    s->body_left -= (long long)n;
    if (s->body_left <= 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        s->complete = 1;
    }
    if (s->out_off == s->out.len) {
        int had = s->out.len > 0;
        s->out.len = s->out_off = 0;
        if (had) s->h2->ops->sent(s->user);
    }
    if (!n && !s->complete) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* Fields HTTP/2 forbids (RFC 9113 §8.2.2); a 204's Content-Length too (RFC 9110 §8.6). */
static int connection_specific(const char *k, size_t kl) {
    return (kl == 10 && strncasecmp(k, "connection", kl) == 0) ||
           (kl == 10 && strncasecmp(k, "keep-alive", kl) == 0) ||
           (kl == 16 && strncasecmp(k, "proxy-connection", kl) == 0) ||
           (kl == 17 && strncasecmp(k, "transfer-encoding", kl) == 0) ||
           (kl == 7 && strncasecmp(k, "upgrade", kl) == 0);
}

/* The answer's head is whole in s->ahead ('end' past its blank line):
 * submit it as HEADERS; returns the body bytes behind it, or -1. */
static int submit_head(struct stream *s, size_t end) {
    char *h = s->ahead.p;
    if (end < 16 || strncmp(h, "HTTP/1.", 7) != 0) return GW_ERR;
    int status = atoi(h + 9);
    if (status < 100 || status > 999) return GW_ERR;
    if (status < 200) return 0; /* interim: not sent */
    nghttp2_nv nv[128];
    char code[4] = {h[9], h[10], h[11], 0};
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    long long length = -1;
    char *line = strstr(h, "\r\n") + 2;
    while (line < h + end - 2) {
        char *eol = strstr(line, "\r\n"), *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon) return GW_ERR;
        size_t kl = (size_t)(colon - line);
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        size_t vl = (size_t)(eol - v);
        for (size_t i = 0; i < kl; i++)
            if (line[i] >= 'A' && line[i] <= 'Z') line[i] = (char)(line[i] + 32);
        if (kl == 14 && memcmp(line, "content-length", 14) == 0) length = strtoll(v, NULL, 10);
        int forbidden = connection_specific(line, kl) || (status == 204 && kl == 14 && !memcmp(line, "content-length", 14));
        if (!forbidden && n < sizeof nv / sizeof nv[0])
            nv[n++] = (nghttp2_nv){(uint8_t *)line, (uint8_t *)v, kl, vl, NGHTTP2_NV_FLAG_NONE};
        line = eol + 2;
    }
    int body = !(s->head_only || status == 204 || status == 304) && length > 0;
    s->body_left = body ? length : 0;
    s->submitted = 1;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    if (!body) s->complete = 1;
    if (nghttp2_submit_response(s->h2->session, s->id, nv, n, body ? &prd : NULL) != 0) return GW_ERR;
    return 1;
}

int gw_h2_write(struct gw_h2 *h2, int32_t id, const char *data, size_t len) {
    struct stream *s = stream_of(h2, id);
    if (!s) return GW_ERR;
    while (!s->submitted) {
        if (buf_add(&s->ahead, data, len) != GW_OK) return GW_ERR;
        char *blank = strstr(s->ahead.p, "\r\n\r\n");
        if (!blank) return s->ahead.len > HEAD_MAX ? GW_ERR : 0;
        size_t end = (size_t)(blank - s->ahead.p) + 4;
        int r = submit_head(s, end);
        if (r < 0) return GW_ERR;
        /* What followed the head: the body, or the next head after a 1xx. */
        size_t rest = s->ahead.len - end;
        char *tail = rest ? malloc(rest) : NULL;
        if (rest && !tail) return GW_ERR;
        if (rest) memcpy(tail, s->ahead.p + end, rest);
        buf_free(&s->ahead);
        if (r == 0) { /* a 1xx: parse what follows as the answer */
            int ret = rest ? gw_h2_write(h2, id, tail, rest) : 0;
            free(tail);
            return ret;
        }
        data = tail;
        len = rest;
        int ret = GW_OK;
        if (len && s->body_left > 0) {
            size_t take = (long long)len > s->body_left ? (size_t)s->body_left : len;
            ret = buf_add(&s->out, data, take);
        }
        free(tail);
        if (ret != GW_OK) return GW_ERR;
        return s->out.len - s->out_off > 0;
    }
    long long want = s->body_left - (long long)(s->out.len - s->out_off);
    if (len && want > 0) {
        size_t take = (long long)len > want ? (size_t)want : len;
        if (buf_add(&s->out, data, take) != GW_OK) return GW_ERR;
    }
    if (s->deferred && s->out.len > s->out_off) {
        s->deferred = 0;
        nghttp2_session_resume_data(h2->session, id);
    }
    return s->out.len - s->out_off > 0;
}

void gw_h2_reset(struct gw_h2 *h2, int32_t id) {
    struct stream *s = stream_of(h2, id);
    if (s && !s->complete) nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
}

/* --- The session --------------------------------------------------------- */

struct gw_h2 *gw_h2_new(const struct gw_h2_limits *lim, const struct gw_h2_ops *ops, void *conn) {
    struct gw_h2 *h2 = calloc(1, sizeof *h2);
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    if (!h2 || nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) goto fail;
    h2->lim = *lim;
    h2->body_budget = lim->max_body > LLONG_MAX / GW_H2_BODY_STREAMS ? LLONG_MAX : lim->max_body * GW_H2_BODY_STREAMS;
    if (h2->body_budget < GW_H2_BODY_MIN) h2->body_budget = GW_H2_BODY_MIN;
    h2->ops = ops;
    h2->conn = conn;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    /* A header block is refused past maxHeaderSize once decoded; this
     * bounds what HPACK decodes before that (CONTINUATION floods). */
    nghttp2_option_set_max_continuations(opt, 16);
    if (nghttp2_session_server_new2(&h2->session, cbs, h2, opt) != 0) goto fail;
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->initial_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->max_header_size + 32u * (uint32_t)lim->max_headers},
    };
    if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0) {
        gw_h2_free(h2);
        return NULL;
    }
    return h2;
fail:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    free(h2);
    return NULL;
}

void gw_h2_free(struct gw_h2 *h2) {
    if (!h2) return;
    while (h2->streams) stream_free(h2->streams);
    nghttp2_session_del(h2->session);
    free(h2);
}

/* base64url without padding (RFC 4648 §5), as HTTP2-Settings carries it;
 * returns the length decoded into 'out', or -1. */
static long base64url(const char *in, unsigned char *out, size_t cap) {
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *in && *in != '='; in++) {
        char ch = *in;
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-' || ch == '+' ? 62
                : ch == '_' || ch == '/' ? 63
                                         : -1;
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)n;
}

int gw_h2_upgrade(struct gw_h2 *h2, const char *settings, int head_only, void *stream) {
    unsigned char payload[256]; /* six bytes a setting: a client sends a few */
    long n = base64url(settings, payload, sizeof payload);
    struct stream *s = n >= 0 && n % 6 == 0 ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        nghttp2_session_terminate_session(h2->session, NGHTTP2_PROTOCOL_ERROR);
        return GW_ERR;
    }
    s->h2 = h2;
    s->id = 1;
    s->user = stream;
    s->length = -1;
    s->body_left = -1;
    s->delivered = 1; /* the owner has the request */
    s->remote_done = 1;
    s->head_only = head_only;
    /* A server's stream_user_data is set apart: upgrade2 keeps it for clients only. */
    if (nghttp2_session_upgrade2(h2->session, payload, (size_t)n, head_only, NULL) != 0 ||
        nghttp2_session_set_stream_user_data(h2->session, 1, s) != 0) {
        free(s);
        nghttp2_session_terminate_session(h2->session, NGHTTP2_PROTOCOL_ERROR);
        return GW_ERR;
    }
    s->next = h2->streams;
    if (h2->streams) h2->streams->prev = s;
    h2->streams = s;
    h2->nstreams++;
    return GW_OK;
}

int gw_h2_feed(struct gw_h2 *h2, const char *data, size_t len) {
    ssize_t n = nghttp2_session_mem_recv(h2->session, (const uint8_t *)data, len);
    if (n < 0) {
        /* A bad preface, a flood, or a failed callback: say why and end. */
        nghttp2_session_terminate_session(h2->session, n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                               : NGHTTP2_PROTOCOL_ERROR);
        return GW_ERR;
    }
    return GW_OK;
}

ssize_t gw_h2_pull(struct gw_h2 *h2, const char **data) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(h2->session, &p);
    if (n < 0) return -1;
    *data = (const char *)p;
    return n;
}

void gw_h2_shutdown(struct gw_h2 *h2) {
    nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

int gw_h2_done(const struct gw_h2 *h2) {
    return !nghttp2_session_want_read(h2->session) && !nghttp2_session_want_write(h2->session);
}

int gw_h2_streams(const struct gw_h2 *h2) { return h2->nstreams; }
