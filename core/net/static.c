/* See static.h. One request goes: open (resolve, open, fstat) as one
 * job on libuv's threadpool; then, for a body, uv_fs_read of one chunk at
 * a time into the request's buffer, each chunk written once the
 * connection's output has drained. The first chunk goes out with the headers in one
 * write. At most one disk operation is in flight per request, and the
 * struct outlives the connection until that operation has completed. */
#include "net/static.h"
#include "base/mime.h"
#include "base/gw.h"
#include "base/log.h"
#include "runtime/drain.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define HEAD_ROOM 1024   /* status line and headers */

#define NOT_FOUND "{\"error\":\"That file is not found\",\"errors\":[\"That file is not found\"]}"
#define JSON_TYPE "application/json; charset=utf-8"

enum phase { OPENING, READY };
enum busy { IDLE, IN_WORK, IN_FS };

struct gw_static {
    const struct gw_static_out *out;
    void *conn;               /* NULL once freed by the connection */
    uv_loop_t *loop;
    uv_work_t work;           /* the open job */
    uv_fs_t fs;               /* the read, or the final close */
    enum busy busy;
    enum phase phase;
    int released;             /* gw_static_free was called */
    int head_only, failed, done;
    const char *connection;   /* a static string, or NULL */
    int status;
    char *root, *rest, *url_path;
    char *if_none_match, *if_modified_since;
    /* Written by the open job, read on the loop once it has completed. */
    uv_file fd;
    uint64_t size;
    int64_t mtime_sec;
    long mtime_nsec;
    const char *mime;
    /* The transfer. */
    char *buf;                /* HEAD_ROOM + CHUNK */
    size_t chunk_len;         /* bytes read and not yet written */
    uint64_t read_off, sent;
    int headers_sent;
    double started;
};

/* --- Pure helpers ----------------------------------------------------- */

const char *gw_static_rest(const char *files, const char *path) {
    while (*files == '/') files++;
    size_t n = strlen(files);
    while (n && files[n - 1] == '/') n--;
    if (!n || path[0] != '/' || strncmp(path + 1, files, n) != 0) return NULL;
    const char *r = path + 1 + n;
    if (*r == '\0') return r;
    return *r == '/' ? r + 1 : NULL;
}

/* 1 if 'rest' has a ".." segment, with '/' or '\' as separators (lws
 * already folds "/../", but nothing here relies on it). */
static int has_dotdot(const char *rest) {
    const char *seg = rest;
    for (const char *p = rest;; p++) {
        if (*p == '/' || *p == '\\' || *p == '\0') {
            if (p - seg == 2 && seg[0] == '.' && seg[1] == '.') return 1;
            if (*p == '\0') return 0;
            seg = p + 1;
        }
    }
}

static int inside(const char *root, const char *path) {
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int gw_static_resolve(const char *root, const char *rest, char *out, size_t outlen) {
    char real_root[PATH_MAX], want[PATH_MAX], real[PATH_MAX];
    struct stat sb;
    if (has_dotdot(rest) || !realpath(root, real_root) || stat(real_root, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return GW_ERR;
    while (*rest == '/') rest++;
    int n = snprintf(want, sizeof want, "%s%s%s", real_root, *rest ? "/" : "", rest);
    if (n < 0 || (size_t)n >= sizeof want) return GW_ERR;
    if (!realpath(want, real) || !inside(real_root, real) || stat(real, &sb) != 0) return GW_ERR;
    if (S_ISDIR(sb.st_mode)) {
        /* index.html may itself be a symlink: resolve and check it again. */
        n = snprintf(want, sizeof want, "%s/index.html", real);
        if (n < 0 || (size_t)n >= sizeof want) return GW_ERR;
        if (!realpath(want, real) || !inside(real_root, real) || stat(real, &sb) != 0) return GW_ERR;
    }
    if (!S_ISREG(sb.st_mode) || strlen(real) >= outlen) return GW_ERR;
    strcpy(out, real);
    return GW_OK;
}

const char *gw_static_mime(const char *name) {
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    return gw_mime_type(dot && dot != base ? dot + 1 : "");
}

void gw_static_etag(char *buf, size_t len, uint64_t size, int64_t mtime_sec, long mtime_nsec) {
    snprintf(buf, len, "\"%" PRIx64 "-%" PRIx64 "-%lx\"", size, (uint64_t)mtime_sec,
             (unsigned long)mtime_nsec);
}

int gw_static_etag_match(const char *inm, const char *etag) {
    size_t elen = strlen(etag);
    for (const char *p = inm;;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (*p == '\0') return 0;
        if (*p == '*') return 1;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') return 0; /* not a list of entity tags: no match */
        const char *q = strchr(p + 1, '"');
        if (!q) return 0;
        if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0) return 1;
        p = q + 1;
    }
}

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Names from our own tables: strftime's %a and %b follow the locale. */
size_t gw_static_http_date(char *buf, size_t len, time_t t) {
    struct tm tm;
    if (!len) return 0;
    if (!gmtime_r(&t, &tm)) {
        buf[0] = '\0';
        return 0;
    }
    int n = snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

int gw_static_parse_http_date(const char *s, time_t *out) {
    char wday[16], mon[4];
    int d, y, hh, mm, ss, n = 0;
    while (*s == ' ' || *s == '\t') s++;
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh, &mm, &ss, &n) == 7 && n) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    } else if ((n = 0, sscanf(s, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &hh,
                              &mm, &ss, &n)) == 7 && n) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        y += y < 70 ? 2000 : 1900;
    } else if ((n = 0, sscanf(s, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wday, mon, &d, &hh, &mm, &ss,
                              &y, &n)) == 7 && n) {
        /* asctime: Sun Nov  6 08:49:37 1994 */
    } else {
        return GW_ERR;
    }
    for (s += n; *s == ' ' || *s == '\t'; s++) {}
    if (*s) return GW_ERR;
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strcmp(mon, months[i]) == 0) m = i;
    if (m < 0 || d < 1 || d > 31 || y < 1970 || hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0)
        return GW_ERR;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = d, .tm_hour = hh, .tm_min = mm, .tm_sec = ss};
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return GW_ERR;
    *out = t;
    return GW_OK;
}

/* --- The request -------------------------------------------------------- */

static void free_now(struct gw_static *st) {
    free(st->root);
    free(st->rest);
    free(st->url_path);
    free(st->if_none_match);
    free(st->if_modified_since);
    free(st->buf);
    free(st);
}

static void on_closed(uv_fs_t *req) {
    uv_fs_req_cleanup(req);
    free_now(req->data);
}

/* Released and idle: close the file (off the loop too), then free. */
static void release(struct gw_static *st) {
    if (st->fd >= 0) {
        uv_file fd = st->fd;
        st->fd = -1;
        st->busy = IN_FS;
        if (uv_fs_close(st->loop, &st->fs, fd, on_closed) == 0) return;
        st->busy = IDLE;
    }
    free_now(st);
}

/* Runs on the threadpool: touches only the request's inputs and the
 * result fields, which the loop reads after on_opened. */
static void open_job(uv_work_t *w) {
    struct gw_static *st = w->data;
    char real[PATH_MAX];
    struct stat sb;
    if (gw_static_resolve(st->root, st->rest, real, sizeof real) != GW_OK) return;
    /* O_NONBLOCK: a FIFO swapped in after the check must not hang the
     * thread; O_NOFOLLOW: nor may a symlink swapped in for the file. */
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return;
    }
    st->size = (uint64_t)sb.st_size;
    st->mtime_sec = (int64_t)sb.st_mtim.tv_sec;
    st->mtime_nsec = sb.st_mtim.tv_nsec;
    st->mime = gw_static_mime(real);
    st->fd = fd;
}

static void on_read(uv_fs_t *req);

static void start_read(struct gw_static *st) {
    uint64_t left = st->size - st->read_off;
    uv_buf_t b = uv_buf_init(st->buf + HEAD_ROOM, (unsigned)(left < CHUNK ? left : CHUNK));
    st->busy = IN_FS;
    if (uv_fs_read(st->loop, &st->fs, st->fd, &b, 1, (int64_t)st->read_off, on_read) != 0) {
        st->busy = IDLE;
        st->failed = 1;
        st->out->wake(st->conn);
    }
}

static void on_read(uv_fs_t *req) {
    struct gw_static *st = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    st->busy = IDLE;
    if (st->released) {
        release(st);
        return;
    }
    if (n <= 0) {
        /* An error, or the file shrank below the Content-Length sent. */
        st->failed = 1;
    } else {
        st->chunk_len = (size_t)n;
        st->read_off += (uint64_t)n;
    }
    st->out->wake(st->conn);
}

static void on_opened(uv_work_t *w, int status) {
    struct gw_static *st = w->data;
    (void)status; /* cancelled: fd is still -1 */
    st->busy = IDLE;
    if (st->released) {
        release(st);
        return;
    }
    st->phase = READY;
    st->status = 404;
    if (st->fd >= 0) {
        char etag[64];
        time_t since;
        gw_static_etag(etag, sizeof etag, st->size, st->mtime_sec, st->mtime_nsec);
        /* If-None-Match decides alone when present (RFC 9110 §13.1.3). */
        if (st->if_none_match)
            st->status = gw_static_etag_match(st->if_none_match, etag) ? 304 : 200;
        else if (st->if_modified_since && gw_static_parse_http_date(st->if_modified_since, &since) == GW_OK)
            st->status = st->mtime_sec <= (int64_t)since ? 304 : 200;
        else
            st->status = 200;
        if (st->status == 200 && !st->head_only && st->size > 0) {
            if (!(st->buf = malloc(HEAD_ROOM + CHUNK))) {
                st->failed = 1;
            } else {
                start_read(st);
                return;
            }
        }
    }
    st->out->wake(st->conn);
}

struct gw_static *gw_static_new(const struct gw_static_out *out, void *conn, uv_loop_t *loop,
                                const char *root, const char *url_path, const char *rest,
                                size_t len, int head_only, const char *if_none_match,
                                const char *if_modified_since, const char *connection) {
    struct gw_static *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->out = out;
    st->conn = conn;
    st->loop = loop;
    st->fd = -1;
    st->fs.data = st;
    st->head_only = head_only;
    st->connection = connection;
    st->started = gw_now_ms();
    st->root = strdup(root);
    st->rest = strdup(rest);
    st->url_path = strdup(url_path);
    st->if_none_match = if_none_match ? strdup(if_none_match) : NULL;
    st->if_modified_since = if_modified_since ? strdup(if_modified_since) : NULL;
    if (!st->root || !st->rest || !st->url_path || (if_none_match && !st->if_none_match) ||
        (if_modified_since && !st->if_modified_since)) {
        free_now(st);
        return NULL;
    }
    gw_drain_hold(GW_DRAIN_UNSENT);
    st->work.data = st;
    if (strlen(rest) != len || uv_queue_work(loop, &st->work, open_job, on_opened) != 0) {
        /* A NUL inside the path: nothing to open. */
        st->phase = READY;
        st->status = 404;
        out->wake(conn);
        return st;
    }
    st->busy = IN_WORK;
    return st;
}

static char *put(char *p, const char *name, const char *value) {
    size_t n = strlen(name), v = strlen(value);
    memcpy(p, name, n);
    p += n;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, v);
    p += v;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* After a write: done, or read the next chunk while the socket sends this
 * one (the connection has copied whatever the socket did not take). */
static enum gw_static_step after_write(struct gw_static *st) {
    uint64_t body = st->status == 200 && !st->head_only ? st->size : 0;
    if (st->sent >= body) {
        st->done = 1;
        return GW_STATIC_DONE;
    }
    if (st->busy == IDLE && !st->chunk_len) start_read(st);
    return GW_STATIC_MORE;
}

/* Status line and headers, with the 404 body or the first chunk. */
static enum gw_static_step write_head(struct gw_static *st) {
    char small[HEAD_ROOM + sizeof NOT_FOUND];
    int with_body = st->status == 200 && !st->head_only && st->size > 0;
    if (with_body && !st->chunk_len) return GW_STATIC_MORE; /* the first read is in flight */
    char *start = with_body ? st->buf : small;
    char *p = start;
    char num[24], etag[64], date[40];
    p += sprintf(p, "HTTP/1.1 %d %s\r\n", st->status,
                 st->status == 200 ? "OK" : st->status == 304 ? "Not Modified" : "Not Found");
    gw_static_http_date(date, sizeof date, time(NULL));
    p = put(p, "Date", date);
    if (st->status == 404) {
        snprintf(num, sizeof num, "%zu", sizeof NOT_FOUND - 1);
        p = put(p, "Content-Type", JSON_TYPE);
        p = put(p, "Content-Length", num);
    } else {
        gw_static_etag(etag, sizeof etag, st->size, st->mtime_sec, st->mtime_nsec);
        gw_static_http_date(date, sizeof date, (time_t)st->mtime_sec);
        if (st->status == 200) {
            snprintf(num, sizeof num, "%" PRIu64, st->size);
            p = put(p, "Content-Type", st->mime);
            p = put(p, "Content-Length", num);
        }
        p = put(p, "ETag", etag);
        p = put(p, "Last-Modified", date);
        p = put(p, "Cache-Control", "no-cache");
    }
    p = put(p, "Access-Control-Allow-Origin", "*");
    if (st->connection) p = put(p, "Connection", st->connection);
    *p++ = '\r';
    *p++ = '\n';
    if (st->status == 404 && !st->head_only) {
        memcpy(p, NOT_FOUND, sizeof NOT_FOUND - 1);
        p += sizeof NOT_FOUND - 1;
    } else if (with_body) {
        memmove(p, st->buf + HEAD_ROOM, st->chunk_len);
        p += st->chunk_len;
        st->sent += st->chunk_len;
        st->chunk_len = 0;
    }
    st->headers_sent = 1;
    if (st->out->write(st->conn, start, (size_t)(p - start)) != GW_OK) return GW_STATIC_ERROR;
    return after_write(st);
}

enum gw_static_step gw_static_writable(struct gw_static *st) {
    if (st->failed) return GW_STATIC_ERROR;
    if (st->phase == OPENING || st->done) return GW_STATIC_MORE;
    if (!st->headers_sent) return write_head(st);
    if (!st->chunk_len) return GW_STATIC_MORE; /* the read is in flight */
    size_t n = st->chunk_len;
    st->chunk_len = 0;
    st->sent += n;
    if (st->out->write(st->conn, st->buf + HEAD_ROOM, n) != GW_OK) return GW_STATIC_ERROR;
    return after_write(st);
}

static void log_request(struct gw_static *st) {
    if (!gw_log_enabled(GW_LOG_DEBUG)) return;
    char status[16], bytes[24], ms[32];
    snprintf(status, sizeof status, "%d", st->phase == READY ? st->status : 0);
    snprintf(bytes, sizeof bytes, "%" PRIu64, st->sent);
    snprintf(ms, sizeof ms, "%.3f", gw_now_ms() - st->started);
    const char *err = st->done ? NULL : st->failed ? "cannot send the file" : "the client went away";
    struct gw_log_field f[] = {
        {"path", st->url_path, strlen(st->url_path), 0},
        {"type", "web", 3, 0},
        {"status", status, strlen(status), 1},
        {"bytes", bytes, strlen(bytes), 1},
        {"duration_ms", ms, strlen(ms), 1},
        {"error", err ? err : "", err ? strlen(err) : 0, 0},
    };
    gw_log_fields(GW_LOG_DEBUG, "static file", f, err ? 6 : 5);
}

void gw_static_free(struct gw_static *st) {
    if (!st || st->released) return;
    log_request(st);
    gw_drain_release(GW_DRAIN_UNSENT);
    st->released = 1;
    st->conn = NULL;
    /* A job not started yet is dropped; a running one completes first. */
    if (st->busy == IN_WORK) uv_cancel((uv_req_t *)&st->work);
    else if (st->busy == IN_FS) uv_cancel((uv_req_t *)&st->fs);
    if (st->busy == IDLE) release(st);
}
