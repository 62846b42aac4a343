/* See http1.h. http_parser hands out pieces of the URL, names, values
 * and body as they arrive, possibly split across reads; they are copied
 * here so a request survives the read buffer it came in. The parser is
 * paused on each event, so one feed call never runs past a request. */
#include "net/http1.h"
#include "base/gw.h"

#include <ctype.h>
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOO_LARGE "request body is larger than maxBodySize"

/* One header field: name (lower case) and value, NUL-terminated, inside 'text'. */
struct field {
    uint32_t name, name_len, value, value_len;
};

struct gw_http1 {
    http_parser parser;
    struct gw_http1_limits lim;
    enum gw_http1_event event;
    int started; /* a request has begun */
    /* The request being collected. 'text' holds the URL then each name and
     * value, NUL after each; offsets stay valid while 'text' grows. */
    char *text;
    size_t text_len, text_cap;
    uint32_t url_len;
    int part; /* what the last callback appended: 0 URL, 1 name, 2 value */
    int headers_done; /* fields after this are a chunked body's trailers: ignored */
    struct field *fields;
    int nfields, fields_cap;
    char *body;
    size_t body_len, body_cap;
    int has_body;
    /* The error, when event is GW_HTTP1_ERROR. */
    int status;
    const char *message;
};

static struct gw_http1 *of(http_parser *hp) { return hp->data; }

/* Fail from inside a callback: returning non-zero stops the parser. */
static int fail(struct gw_http1 *p, int status, const char *message) {
    p->status = status;
    p->message = message;
    return -1;
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return GW_OK;
    size_t cap2 = *cap ? *cap * 2 : 512;
    while (cap2 < need) cap2 *= 2;
    char *b = realloc(*buf, cap2);
    if (!b) return GW_ERR;
    *buf = b;
    *cap = cap2;
    return GW_OK;
}

static int append(struct gw_http1 *p, const char *at, size_t len) {
    if (p->text_len + len + 1 > p->lim.max_header_size + 64u) return GW_ERR; /* http_parser counts too */
    if (grow(&p->text, &p->text_cap, p->text_len + len + 1) != GW_OK) return GW_ERR;
    memcpy(p->text + p->text_len, at, len);
    p->text_len += len;
    return GW_OK;
}

/* End the piece being appended with a NUL. */
static int terminate(struct gw_http1 *p) {
    if (grow(&p->text, &p->text_cap, p->text_len + 1) != GW_OK) return GW_ERR;
    p->text[p->text_len++] = '\0';
    return GW_OK;
}

/* The whitespace after a value is not part of it (RFC 9112 §5); http_parser
 * drops only the whitespace before. Call before the value is terminated. */
static void trim_value(struct gw_http1 *p) {
    struct field *f = &p->fields[p->nfields - 1];
    while (f->value_len && (p->text[p->text_len - 1] == ' ' || p->text[p->text_len - 1] == '\t')) {
        f->value_len--;
        p->text_len--;
    }
}

static int on_message_begin(http_parser *hp) {
    struct gw_http1 *p = of(hp);
    p->started = 1;
    p->headers_done = 0;
    /* Still 0.0 while the request line is read: parser_error tells 414 from 431 by it. */
    hp->http_major = 0;
    hp->http_minor = 0;
    p->text_len = 0;
    p->url_len = 0;
    p->part = 0;
    p->nfields = 0;
    p->body_len = 0;
    p->has_body = 0;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len) {
    struct gw_http1 *p = of(hp);
    if (append(p, at, len) != GW_OK) return fail(p, 414, "request URL is too long");
    p->url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len) {
    struct gw_http1 *p = of(hp);
    if (p->headers_done) return 0;
    if (p->part != 1) {
        /* A new field: end the URL or the last value first. */
        if (p->part == 2) trim_value(p);
        if (terminate(p) != GW_OK) return fail(p, 431, "request headers are too large");
        if (p->nfields >= p->lim.max_headers) return fail(p, 431, "too many request headers");
        if (p->nfields == p->fields_cap) {
            int cap = p->fields_cap ? p->fields_cap * 2 : 16;
            struct field *f = realloc(p->fields, sizeof *f * (size_t)cap);
            if (!f) return fail(p, 431, "request headers are too large");
            p->fields = f;
            p->fields_cap = cap;
        }
        p->fields[p->nfields].name = (uint32_t)p->text_len;
        p->fields[p->nfields].name_len = 0;
        p->fields[p->nfields].value = 0;
        p->fields[p->nfields].value_len = 0;
        p->nfields++;
        p->part = 1;
    }
    size_t start = p->text_len;
    if (append(p, at, len) != GW_OK) return fail(p, 431, "request headers are too large");
    for (size_t i = start; i < p->text_len; i++) p->text[i] = (char)tolower((unsigned char)p->text[i]);
    p->fields[p->nfields - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len) {
    struct gw_http1 *p = of(hp);
    if (p->headers_done) return 0;
    struct field *f = &p->fields[p->nfields - 1];
    if (p->part != 2) {
        if (terminate(p) != GW_OK) return fail(p, 431, "request headers are too large");
        f->value = (uint32_t)p->text_len;
        p->part = 2;
    }
    if (append(p, at, len) != GW_OK) return fail(p, 431, "request headers are too large");
    f->value_len += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *hp) {
    struct gw_http1 *p = of(hp);
    p->headers_done = 1;
    if (p->part == 2) trim_value(p);
    if (terminate(p) != GW_OK) return fail(p, 431, "request headers are too large");
    if (p->part == 1) {
        /* A name without a value ("X-A:" then the blank line): the value is "". */
        if (terminate(p) != GW_OK) return fail(p, 431, "request headers are too large");
        p->fields[p->nfields - 1].value = (uint32_t)p->text_len - 1;
    }
    if (hp->http_major != 1) return fail(p, 505, "HTTP version not supported");
    if (!(hp->flags & F_CHUNKED) && hp->content_length != ULLONG_MAX &&
        hp->content_length > (uint64_t)p->lim.max_body)
        return fail(p, 413, TOO_LARGE);
    p->has_body = (hp->flags & F_CHUNKED) || (hp->content_length > 0 && hp->content_length != ULLONG_MAX);
    const char *expect = gw_http1_header(p, "expect");
    if (expect && hp->http_minor >= 1) {
        if (strcasecmp(expect, "100-continue") != 0) return fail(p, 417, "unsupported Expect header");
        if (p->has_body) {
            p->event = GW_HTTP1_CONTINUE;
            http_parser_pause(hp, 1);
        }
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len) {
    struct gw_http1 *p = of(hp);
    if (p->body_len + len > (size_t)p->lim.max_body) return fail(p, 413, TOO_LARGE);
    if (grow(&p->body, &p->body_cap, p->body_len + len + 1) != GW_OK) return fail(p, 413, TOO_LARGE);
    memcpy(p->body + p->body_len, at, len);
    p->body_len += len;
    return 0;
}

/* A chunk's size is known before its bytes: refuse at once what cannot fit. */
static int on_chunk_header(http_parser *hp) {
    struct gw_http1 *p = of(hp);
    if (hp->content_length > (uint64_t)p->lim.max_body - p->body_len) return fail(p, 413, TOO_LARGE);
    return 0;
}

static int on_message_complete(http_parser *hp) {
    struct gw_http1 *p = of(hp);
    p->event = hp->upgrade ? GW_HTTP1_UPGRADE : GW_HTTP1_REQUEST;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

struct gw_http1 *gw_http1_new(const struct gw_http1_limits *lim) {
    struct gw_http1 *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->lim = *lim;
    http_parser_set_max_header_size(lim->max_header_size); /* global: the same for every parser */
    http_parser_init(&p->parser, HTTP_REQUEST);
    p->parser.data = p;
    return p;
}

void gw_http1_free(struct gw_http1 *p) {
    if (!p) return;
    free(p->text);
    free(p->fields);
    free(p->body);
    free(p);
}

int gw_http1_status(const struct gw_http1 *p) { return p->status; }
const char *gw_http1_message(const struct gw_http1 *p) { return p->message; }
int gw_http1_nfields(const struct gw_http1 *p) { return p->nfields; }

void gw_http1_field(const struct gw_http1 *p, int i, const char **name, size_t *name_len,
                    const char **value, size_t *value_len) {
    const struct field *f = &p->fields[i];
    *name = p->text + f->name;
    *name_len = f->name_len;
    *value = p->text + f->value;
    *value_len = f->value_len;
}

const char *gw_http1_body(const struct gw_http1 *p, size_t *len) {
    *len = p->body_len;
    if (!p->has_body) return NULL;
    return p->body ? p->body : "";
}

/* A method http_parser does not know: 501 when the line starts like
 * "TOKEN /", 400 for anything else (RFC 9110 §9.1). */
static int unknown_method(const char *data, size_t len) {
    size_t i = 0;
    while (i < len && data[i] >= 'A' && data[i] <= 'Z') i++;
    return i > 0 && i + 1 < len && data[i] == ' ' && (data[i + 1] == '/' || data[i + 1] == '*');
}

static void parser_error(struct gw_http1 *p, const char *data, size_t len) {
    if (p->status) return; /* a callback said why */
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        /* Headers are handed over only at their end or the buffer's: no
         * field yet does not mean the URL is what ran over. */
        if (p->parser.http_major == 0 && p->parser.http_minor == 0) {
            p->status = 414;
            p->message = "request URL is too long";
        } else {
            p->status = 431;
            p->message = "request headers are too large";
        }
        return;
    case HPE_INVALID_CONTENT_LENGTH:
        p->status = 400;
        p->message = "invalid Content-Length";
        return;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        p->status = 400;
        p->message = p->parser.uses_transfer_encoding ? "Content-Length with Transfer-Encoding"
                                                      : "invalid Content-Length";
        return;
    case HPE_INVALID_TRANSFER_ENCODING:
        p->status = 400;
        p->message = "invalid Transfer-Encoding";
        return;
    case HPE_INVALID_CHUNK_SIZE:
        p->status = 400;
        p->message = "invalid chunked body";
        return;
    case HPE_INVALID_METHOD:
        if (p->text_len == 0 && unknown_method(data, len)) {
            p->status = 501;
            p->message = "method not implemented";
            return;
        }
        break;
    case HPE_INVALID_VERSION:
        p->status = 505;
        p->message = "HTTP version not supported";
        return;
    default:
        break;
    }
    p->status = 400;
    p->message = "malformed HTTP request";
}

size_t gw_http1_feed(struct gw_http1 *p, const char *data, size_t len, enum gw_http1_event *ev) {
    p->event = GW_HTTP1_MORE;
    if (HTTP_PARSER_ERRNO(&p->parser) == HPE_PAUSED) http_parser_pause(&p->parser, 0);
    size_t n = http_parser_execute(&p->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        parser_error(p, data, len);
        *ev = GW_HTTP1_ERROR;
        return n;
    }
    if (e == HPE_OK && p->parser.upgrade && p->event == GW_HTTP1_MORE) p->event = GW_HTTP1_UPGRADE;
    *ev = p->event;
    return n;
}

void gw_http1_next(struct gw_http1 *p) {
    p->event = GW_HTTP1_MORE;
    p->started = 0;
    p->parser.upgrade = 0;
    /* Keep small buffers for the next request; give back big ones. */
    if (p->body_cap > 16384) {
        free(p->body);
        p->body = NULL;
        p->body_cap = 0;
    }
    p->body_len = 0;
}

int gw_http1_busy(const struct gw_http1 *p) { return p->started; }

long long gw_http1_body_received(const struct gw_http1 *p) {
    return p->headers_done ? (long long)p->body_len : -1;
}

const char *gw_http1_method(const struct gw_http1 *p) {
    return http_method_str((enum http_method)p->parser.method);
}

const char *gw_http1_url(const struct gw_http1 *p, size_t *len) {
    *len = p->url_len;
    return p->text ? p->text : "";
}

const char *gw_http1_header(const struct gw_http1 *p, const char *name) {
    for (int i = 0; i < p->nfields; i++) {
        const struct field *f = &p->fields[i];
        if (strcmp(p->text + f->name, name) == 0) return p->text + f->value;
    }
    return NULL;
}

int gw_http1_keep_alive(const struct gw_http1 *p) { return http_should_keep_alive(&p->parser); }

int gw_http1_minor(const struct gw_http1 *p) { return p->parser.http_minor; }

/* --- URLs --------------------------------------------------------------- */

int gw_http1_split_target(const char *url, size_t len, const char **path, size_t *path_len,
                          const char **query, size_t *query_len) {
    const char *end = url + len;
    /* absolute-form, which a server must accept (RFC 9112 §3.2.2): the
     * path starts after the authority, and is "/" when empty. */
    size_t scheme = len > 7 && strncasecmp(url, "http://", 7) == 0    ? 7
                    : len > 8 && strncasecmp(url, "https://", 8) == 0 ? 8
                                                                      : 0;
    if (scheme) {
        url += scheme;
        while (url < end && *url != '/' && *url != '?' && *url != '#') url++;
        len = (size_t)(end - url);
    } else if (len == 0 || url[0] != '/') {
        return GW_ERR;
    }
    const char *hash = memchr(url, '#', len);
    if (hash) end = hash;
    const char *q = memchr(url, '?', (size_t)(end - url));
    *path = url;
    *path_len = (size_t)((q ? q : end) - url);
    if (*path_len == 0) {
        *path = "/";
        *path_len = 1;
    }
    *query = q ? q + 1 : end;
    *query_len = q ? (size_t)(end - q - 1) : 0;
    return GW_OK;
}
