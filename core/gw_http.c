/* HTTP/1.1 on libwebsockets. lws parses requests and owns the socket; this
 * file collects method, path, query, headers and body, hands them to the
 * runtime through gw_call, and writes the answer when lws says the socket
 * is writable. A request whose client goes away cancels its call. */
#include "gw_http.h"
#include "gw.h"
#include "gw_call.h"
#include "gw_conn.h"
#include "gw_log.h"
#include "gw_query.h"
#include "gw_static.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOO_LARGE "{\"error\":\"request body is larger than maxBodySize\"," \
                  "\"errors\":[\"request body is larger than maxBodySize\"]}"
#define BAD_LENGTH "{\"error\":\"invalid Content-Length\",\"errors\":[\"invalid Content-Length\"]}"

struct header {
    char *name; /* "name:" as lws wants it */
    char *value;
};

struct http_req {
    struct lws *wsi;
    struct gw_call *call;
    char method[8];
    char *path;           /* kept while the body arrives */
    int head_only;
    int close_after;      /* answered early (413): do not read on */
    int body_pending;     /* lws has not yet read all of the body */
    char *body;
    size_t body_len, body_cap;
    /* the answer */
    int answered;
    int status;
    struct header *headers;
    int nheaders;
    char *content_type;
    char *out;            /* the body */
    size_t out_len;
    int headers_sent;
    int dispatching;      /* inside dispatch(): the reply is written on return */
    int unsent;           /* counted in 'unsent_answers' */
};

struct gw_http_session {
    struct http_req *req;
    struct gw_static *file; /* a GET or HEAD under /<urlPathForFiles> */
    uintptr_t headers_frame; /* stack_mark() in LWS_CALLBACK_HTTP: see read_by_bug() */
};

static struct gw_lua *lua_rt;
static int unsent_answers; /* answered, not yet written: shutdown waits for them */

void gw_http_init(struct gw_lua *g) { lua_rt = g; }
int gw_http_unsent(void) { return unsent_answers + gw_static_active(); }

static void set_unsent(struct http_req *r, int unsent) {
    if (r->unsent == unsent) return;
    r->unsent = unsent;
    unsent_answers += unsent ? 1 : -1;
}
size_t gw_http_session_size(void) { return sizeof(struct gw_http_session); }

static void req_free(struct http_req *r) {
    if (!r) return;
    set_unsent(r, 0);
    for (int i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->path);
    free(r->content_type);
    free(r->out);
    free(r->body);
    free(r);
}

/* Methods lws recognises, by the token its URI is stored under. */
static const struct {
    enum lws_token_indexes tok;
    const char *name;
} methods[] = {
    {WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
    {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
    {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
    {WSI_TOKEN_HEAD_URI, "HEAD"},
};

static const char *request_method(struct lws *wsi) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (lws_hdr_total_length(wsi, methods[i].tok) > 0) return methods[i].name;
    return NULL;
}

/* Headers lws does not parse itself but users commonly read. */
static const char *custom_headers[] = {
    "x-forwarded-for:", "x-forwarded-proto:", "x-real-ip:", "x-request-id:", "x-api-key:",
    "x-requested-with:", "x-csrf-token:", NULL};

static int is_uri_token(int tok) {
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if ((int)methods[i].tok == tok) return 1;
    return tok == WSI_TOKEN_HTTP_URI_ARGS;
}

void gw_http_push_headers(lua_State *L, struct lws *wsi) {
    char small[1024];
    lua_newtable(L);
    for (int tok = 0; tok < WSI_TOKEN_COUNT; tok++) {
        if (is_uri_token(tok)) continue;
        int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)tok);
        if (len <= 0) continue;
        const char *name = (const char *)lws_token_to_string((enum lws_token_indexes)tok);
        if (!name || !*name || name[0] == ':') continue;
        char *buf = len < (int)sizeof small ? small : malloc((size_t)len + 1);
        if (!buf) continue;
        int n = lws_hdr_copy(wsi, buf, len + 1, (enum lws_token_indexes)tok);
        if (n >= 0) {
            size_t nl = strlen(name);
            lua_pushlstring(L, name, nl && name[nl - 1] == ':' ? nl - 1 : nl);
            lua_pushlstring(L, buf, (size_t)n);
            lua_rawset(L, -3);
        }
        if (buf != small) free(buf);
    }
    for (const char **h = custom_headers; *h; h++) {
        int hl = (int)strlen(*h);
        int len = lws_hdr_custom_length(wsi, *h, hl);
        if (len < 0 || len >= (int)sizeof small) continue;
        if (lws_hdr_custom_copy(wsi, small, (int)sizeof small, *h, hl) < 0) continue;
        lua_pushlstring(L, *h, (size_t)hl - 1);
        lua_pushstring(L, small);
        lua_rawset(L, -3);
    }
}

/* [-0, +1, m] Push the query arguments as lws split and decoded them:
 * a list of "key=value" strings. */
static void push_args(lua_State *L, struct lws *wsi) {
    char small[2048];
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    lua_newtable(L);
    if (total <= 0) return;
    char *buf = total < (int)sizeof small ? small : malloc((size_t)total + 1);
    if (!buf) return;
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, buf, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) break;
        lua_pushlstring(L, buf, (size_t)n);
        lua_rawseti(L, -2, i + 1);
    }
    if (buf != small) free(buf);
}


/* Header names are tokens; values may not hold CR, LF or NUL. */
static int header_safe(const char *s, int is_name) {
    if (is_name && !*s) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\r' || *p == '\n') return 0;
        if (is_name && (*p <= ' ' || *p == ':' || *p >= 0x7f)) return 0;
    }
    return 1;
}

/* Copy the runtime's answer (status, headers, body) into the request. */
static void http_reply(void *ud, lua_State *L, int base, int n) {
    struct http_req *r = ud;
    size_t blen = 0;
    const char *body = n >= 3 ? lua_tolstring(L, base + 2, &blen) : NULL;
    r->call = NULL;
    r->answered = 1;
    r->status = n >= 1 && lua_isinteger(L, base) ? (int)lua_tointeger(L, base) : 500;
    if (n >= 2 && lua_istable(L, base + 1)) {
        lua_pushnil(L);
        while (lua_next(L, base + 1)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
                const char *name = lua_tostring(L, -2);
                const char *value = lua_tostring(L, -1);
                if (!header_safe(name, 1) || !header_safe(value, 0)) {
                    /* A line break would let the value start a header of its own. */
                    gw_log(GW_LOG_ERROR, "dropped response header \"%.64s\": invalid characters", name);
                } else if (strcasecmp(name, "content-type") == 0) {
                    free(r->content_type);
                    r->content_type = strdup(value);
                } else if (strcasecmp(name, "content-length") != 0) {
                    struct header *h = realloc(r->headers, sizeof *h * (size_t)(r->nheaders + 1));
                    if (h) {
                        r->headers = h;
                        size_t nl = strlen(name);
                        h[r->nheaders].name = malloc(nl + 2);
                        memcpy(h[r->nheaders].name, name, nl);
                        memcpy(h[r->nheaders].name + nl, ":", 2);
                        h[r->nheaders].value = strdup(value);
                        r->nheaders++;
                    }
                }
            }
            lua_pop(L, 1);
        }
    }
    r->out = malloc(blen + 1);
    if (!r->out) gw_panic("out of memory");
    if (blen) memcpy(r->out, body, blen);
    r->out_len = blen;
    set_unsent(r, 1);
    if (r->wsi && !r->dispatching) lws_callback_on_writable(r->wsi);
}

/* Answer without the runtime (413 before the body is read). */
static void answer_now(struct http_req *r, int status, const char *json) {
    size_t n = strlen(json);
    r->answered = 1;
    r->status = status;
    r->content_type = strdup("application/json; charset=utf-8");
    r->headers = calloc(1, sizeof *r->headers);
    r->headers[0].name = strdup("access-control-allow-origin:");
    r->headers[0].value = strdup("*");
    r->nheaders = 1;
    r->out = malloc(n + 1);
    if (!r->out) gw_panic("out of memory");
    memcpy(r->out, json, n);
    r->out_len = n;
    set_unsent(r, 1);
    lws_callback_on_writable(r->wsi);
}

static int write_answer(struct http_req *r);

/* The address of this call's frame on the stack, which grows down. */
__attribute__((noinline)) static uintptr_t stack_mark(void) {
    return (uintptr_t)__builtin_frame_address(0);
}

/* libwebsockets 4.1 cannot read the body of a request that was pipelined
 * behind another one (issue #12). It parses such a request out of the
 * connection's buffer list, whose head still holds the request's own
 * header bytes until the parse returns; lws_http_action() then feeds that
 * list to lws_read_h1() (a loop written for HTTP/2 streams) as the body:
 * the header bytes arrive as body, and once the transaction is complete
 * (LRS_DEFERRING_ACTION) lws_read_h1() consumes nothing and the loop never
 * ends. Those body callbacks run inside lws_http_action(), deeper on the
 * stack than the LWS_CALLBACK_HTTP it made; a body read the normal way
 * comes from the lws_read_h1() that called it, or from a later read, both
 * higher up. Such a request is never run: the connection is closed, after
 * the answers before it. */
static int read_by_bug(const struct gw_http_session *s) {
    return stack_mark() <= s->headers_frame;
}

/* Content-Length is 1*DIGIT (RFC 9110 8.6), here between optional blanks.
 * Returns the length, or -1 for anything else: a sign, a list, or a number
 * too large to hold (lws itself reads the value with atoll, so "-5" would
 * pass as a request without a body and an overflow as a huge body). */
static long long content_length(const char *s) {
    long long n = 0;
    int digits = 0;
    while (*s == ' ' || *s == '\t') s++;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (n > (LLONG_MAX - (*s - '0')) / 10) return -1;
        n = n * 10 + (*s - '0');
    }
    while (*s == ' ' || *s == '\t') s++;
    return digits && !*s ? n : -1;
}

/* Hand the request to the runtime. Returns what the lws callback should:
 * an answer ready at once is written here, without waiting for the loop. */
static int dispatch(struct http_req *r, const char *path) {
    lua_State *L = gw_lua_state(lua_rt);
    lua_createtable(L, 0, 10);
    lua_pushstring(L, r->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    push_args(L, r->wsi);
    lua_setfield(L, -2, "args");
    gw_http_push_headers(L, r->wsi);
    lua_setfield(L, -2, "headers");
    if (r->body) {
        lua_pushlstring(L, r->body, r->body_len);
        lua_setfield(L, -2, "body");
        free(r->body);
        r->body = NULL;
    }
    gw_conn_push_peer(L, lws_get_socket_fd(r->wsi));
    r->dispatching = 1;
    r->call = gw_call_new(lua_rt, "web", http_reply, r);
    gw_call_run(r->call);
    r->dispatching = 0;
    return r->answered ? write_answer(r) : 0;
}

/* Send status line, headers and body in one write: one syscall, and no
 * round trip through the loop per part. lws keeps what the socket does not
 * take and sends it before anything else. The length goes in our own
 * Content-Length header so lws does no accounting of its own. */
static int write_answer(struct http_req *r) {
    struct lws *wsi = r->wsi;
    int send_body = !(r->head_only || r->status == 204 || r->status == 304);
    size_t hcap = 1024 + 64;
    for (int i = 0; i < r->nheaders; i++) hcap += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 4;
    size_t cap = LWS_PRE + hcap + (send_body ? r->out_len : 0);
    unsigned char *buf = malloc(cap);
    if (!buf) return -1;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + hcap - 1;
    char clen[24];
    int n = snprintf(clen, sizeof clen, "%zu", r->status == 204 || r->status == 304 ? (size_t)0 : r->out_len);
    const char *ctype = r->content_type ? r->content_type : "application/json; charset=utf-8";
    int fail = lws_add_http_header_status(wsi, (unsigned int)r->status, &p, end) ||
               lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)ctype,
                                            (int)strlen(ctype), &p, end) ||
               lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (const unsigned char *)clen, n, &p, end);
    for (int i = 0; i < r->nheaders && !fail; i++)
        fail = lws_add_http_header_by_name(wsi, (const unsigned char *)r->headers[i].name,
                                           (const unsigned char *)r->headers[i].value,
                                           (int)strlen(r->headers[i].value), &p, end);
    if (!fail && r->close_after)
        fail = lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p, end);
    if (fail || lws_finalize_http_header(wsi, &p, end)) {
        free(buf);
        return -1;
    }
    if (send_body && r->out_len) {
        memcpy(p, r->out, r->out_len);
        p += r->out_len;
    }
    int w = lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS);
    free(buf);
    r->headers_sent = 1;
    set_unsent(r, 0);
    if (w < 0) return -1;
    if (r->close_after) return -1;
    /* Completing the transaction before lws has read the body would make
     * it discard the body on its own, where read_by_bug() cannot see it:
     * BODY_COMPLETION completes it instead. */
    if (r->body_pending) return 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void session_end(struct gw_http_session *s) {
    if (s && s->file) {
        gw_static_free(s->file);
        s->file = NULL;
    }
    struct http_req *r = s ? s->req : NULL;
    if (!r) return;
    s->req = NULL;
    r->wsi = NULL;
    if (r->call) {
        struct gw_call *c = r->call;
        r->call = NULL;
        gw_call_cancel(c);
    }
    req_free(r);
}

int gw_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
    struct gw_http_session *s = user;
    const struct gw_config *cfg = gw_lua_config(lua_rt);

    /* lws calls some reasons (closing a connection that never sent a
     * request) without per-session data. */
    if (!s && reason != LWS_CALLBACK_HTTP) return lws_callback_http_dummy(wsi, reason, user, in, len);

    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (!s) return -1;
        session_end(s); /* a previous request on this keep-alive connection */
        s->headers_frame = stack_mark();
        struct http_req *r = calloc(1, sizeof *r);
        if (!r) return -1;
        s->req = r;
        r->wsi = wsi;
        const char *m = request_method(wsi);
        if (!m) return -1;
        snprintf(r->method, sizeof r->method, "%s", m);
        r->head_only = strcmp(m, "HEAD") == 0;
        int has_body = 0;
        char cl[32];
        int cl_len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (cl_len > 0) {
            long long n = cl_len < (int)sizeof cl && lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0
                              ? content_length(cl)
                              : -1;
            if (n < 0) {
                /* The body's end is unknown: answer, then close (RFC 9112 6.3). */
                r->close_after = 1;
                answer_now(r, 400, BAD_LENGTH);
                return 0;
            }
            if (n > cfg->max_body_size) {
                r->close_after = 1;
                answer_now(r, 413, TOO_LARGE);
                return 0;
            }
            has_body = n > 0;
            r->body_pending = has_body;
        } else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            /* lws 4.1 does not decode chunked request bodies: say so rather
             * than wait for a body that never completes. */
            r->close_after = 1;
            answer_now(r, 411, "{\"error\":\"chunked request bodies are not supported: send Content-Length\","
                               "\"errors\":[\"chunked request bodies are not supported: send Content-Length\"]}");
            return 0;
        }
        const char *path = in ? (const char *)in : "/", *rest;
        if ((strcmp(m, "GET") == 0 || r->head_only) && (rest = gw_static_rest(cfg->files_path, path))) {
            int head_only = r->head_only;
            s->req = NULL;
            req_free(r);
            s->file = gw_static_new(wsi, gw_lua_loop(lua_rt), cfg->public_dir, path, rest,
                                    len - (size_t)(rest - path), head_only);
            return s->file ? 0 : -1;
        }
        if (has_body && strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "OPTIONS") != 0) {
            r->path = strdup(in ? (const char *)in : "/");
            return r->path ? 0 : -1;
        }
        return dispatch(r, in ? (const char *)in : "/");
    }
    case LWS_CALLBACK_HTTP_BODY: {
        struct http_req *r = s->req;
        /* (lws_http_action() itself also calls this, with no bytes, for a
         * POST with Content-Length: 0.) */
        if (len && read_by_bug(s)) {
            gw_log(GW_LOG_WARNING, "a request with a body was pipelined behind another one on the same "
                                   "connection: closing it unanswered (libwebsockets 4.1 cannot read it)");
            return -1;
        }
        /* r->call: already dispatched (a GET with a body, or Content-Length: 0) and
         * waiting (e.g. on Redis): the body is not read, and not dispatched twice. */
        if (!r || r->answered || r->call) return 0;
        if (r->body_len + len > (size_t)cfg->max_body_size) {
            free(r->body);
            r->body = NULL;
            r->close_after = 1;
            answer_now(r, 413, TOO_LARGE);
            return 0;
        }
        if (r->body_len + len + 1 > r->body_cap) {
            size_t cap = r->body_cap * 2 + len + 1024;
            char *b = realloc(r->body, cap);
            if (!b) return -1;
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, in, len);
        r->body_len += len;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        struct http_req *r = s->req;
        if (r && r->body_pending) {
            r->body_pending = 0;
            if (r->headers_sent) return lws_http_transaction_completed(wsi) ? -1 : 0; /* see write_answer() */
        }
        if (!r || r->answered || r->call) return 0; /* see LWS_CALLBACK_HTTP_BODY */
        if (!r->body && !(r->body = calloc(1, 1))) return -1;
        return dispatch(r, r->path ? r->path : "/");
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s->file) {
            enum gw_static_step step = gw_static_writable(s->file);
            if (step == GW_STATIC_MORE) return 0;
            gw_static_free(s->file);
            s->file = NULL;
            if (step == GW_STATIC_ERROR) return -1;
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        if (!s->req || !s->req->answered || s->req->headers_sent) return 0;
        return write_answer(s->req);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        session_end(s);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
