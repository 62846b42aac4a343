/* Log line formatting and output. The whole line is built in a buffer and
 * written with one write(2) so lines from several workers never interleave.
 * Control characters are escaped in every part of a line, and a long part is
 * cut inside its quotes, so a line is always one line (and valid JSON). */
#include "base/log.h"
#include "base/gw.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *level_names[] = {"debug", "info", "notice", "warning", "error", "crit"};
static int min_level = GW_LOG_INFO;
static int json_format;

int gw_log_level_parse(const char *name) {
    for (int i = 0; i <= GW_LOG_CRIT; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

const char *gw_log_level_name(int level) {
    if (level < 0 || level > GW_LOG_CRIT) return "info";
    return level_names[level];
}

void gw_log_set_level(int level) { min_level = level; }
int gw_log_get_level(void) { return min_level; }
void gw_log_set_json(int on) { json_format = on; }
int gw_log_enabled(int level) { return level >= min_level; }

/* What one line keeps of a long message, key or value (bytes of its escaped
 * text). A longer one is cut at a character boundary and ends with TRUNC, so
 * a line stays one line, JSON stays valid JSON, and the fields after a huge
 * value are still there. */
#define MSG_MAX 8192
#define KEY_MAX 128
#define VALUE_MAX 4096
#define LINE_MAX_BYTES 16384
static const char TRUNC[] = "...[truncated]";
#define TRUNC_LEN (sizeof TRUNC - 1)

struct out {
    char *buf;
    size_t len, pos;
};

/* Bytes that may still be written while keeping 'reserve' for the end. */
static size_t room(const struct out *o, size_t reserve) {
    size_t cap = o->len ? o->len - 1 : 0;
    return o->pos + reserve < cap ? cap - o->pos - reserve : 0;
}

static void put(struct out *o, const char *s, size_t n) {
    while (n-- && o->pos + 1 < o->len) o->buf[o->pos++] = *s++;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* The escaped form of byte 'c' into esc; returns its length. 'json' also
 * escapes '"' and '\\' (inside quotes); both escape the C0 controls and DEL,
 * so no byte a client sends can start a new line or drive a terminal. */
static size_t escape(unsigned char c, int json, char esc[8]) {
    if (json && (c == '"' || c == '\\')) {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(esc, 8, "\\u%04x", c);
        return 6;
    }
    esc[0] = (char)c;
    return 1;
}

/* The length of s[0..n) escaped, counted up to a little past 'max'. */
static size_t escaped_len(const char *s, size_t n, int json, size_t max) {
    char esc[8];
    size_t total = 0;
    for (size_t i = 0; i < n && total <= max; i++) total += escape((unsigned char)s[i], json, esc);
    return total;
}

/* Is there room for a part whose whole text takes 'whole' bytes, or else
 * for 'least' (its start, cut)? */
static int fits(const struct out *o, size_t reserve, size_t whole, size_t least) {
    return room(o, reserve) >= min_size(whole, least);
}

/* Write s[0..n) escaped in at most 'budget' bytes: whole when it fits, else
 * cut before a character (never inside an escape or a UTF-8 sequence) and
 * followed by TRUNC. */
static void put_escaped(struct out *o, const char *s, size_t n, int json, size_t budget) {
    char esc[8];
    size_t total = escaped_len(s, n, json, budget);
    size_t limit = total <= budget ? total : (budget > TRUNC_LEN ? budget - TRUNC_LEN : 0);
    size_t used = 0, i;
    for (i = 0; i < n; i++) {
        size_t k = escape((unsigned char)s[i], json, esc);
        if (used + k > limit) break;
        put(o, esc, k);
        used += k;
    }
    if (i == n) return;
    /* Bytes >= 0x80 are written as they are: step back over a partial
     * UTF-8 sequence, its lead byte included. */
    if (((unsigned char)s[i] & 0xC0) == 0x80) {
        while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
            i--;
            o->pos--;
        }
        if (i > 0 && (unsigned char)s[i - 1] >= 0xC0) o->pos--;
    }
    if (budget >= TRUNC_LEN) put(o, TRUNC, TRUNC_LEN);
}

static void put_json_string(struct out *o, const char *s, size_t n, size_t max) {
    put(o, "\"", 1);
    put_escaped(o, s, n, 1, min_size(max, room(o, 1)));
    put(o, "\"", 1);
}

/* Text keys and values are bare unless they hold spaces, quotes, '=' or
 * controls; then they are a JSON string. */
static int bare(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == 0x7f) return 0;
    }
    return 1;
}

static void put_text_value(struct out *o, const char *s, size_t n, size_t max) {
    if (bare(s, n)) put_escaped(o, s, n, 0, min_size(max, room(o, 0)));
    else put_json_string(o, s, n, max);
}

size_t gw_log_format(char *buf, size_t len, double wall_ms, int level, const char *msg,
                     const struct gw_log_field *fields, int n) {
    struct out o = {buf, len, 0};
    char ts[40];
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)((long long)wall_ms % 1000));
    if (len == 0) return 0;

    if (json_format) {
        /* Whatever is cut, the closing '}' has its byte kept for it. */
        puts_(&o, "{\"time\":\"");
        puts_(&o, ts);
        puts_(&o, "\",\"level\":\"");
        puts_(&o, gw_log_level_name(level));
        puts_(&o, "\"");
        if (msg && fits(&o, 1, 9 + escaped_len(msg, strlen(msg), 1, MSG_MAX), 9 + TRUNC_LEN)) {
            puts_(&o, ",\"msg\":\"");
            put_escaped(&o, msg, strlen(msg), 1, min_size(MSG_MAX, room(&o, 2)));
            puts_(&o, "\"");
        }
        for (int i = 0; i < n; i++) {
            size_t klen = strlen(fields[i].key);
            size_t kesc = min_size(escaped_len(fields[i].key, klen, 1, KEY_MAX), KEY_MAX);
            size_t vesc = escaped_len(fields[i].value, fields[i].value_len, 1, VALUE_MAX);
            /* No room: this field and the rest are left out. */
            if (!fits(&o, 1, 6 + kesc + vesc, 6 + kesc + TRUNC_LEN)) break;
            puts_(&o, ",\"");
            put_escaped(&o, fields[i].key, klen, 1, KEY_MAX);
            if (fields[i].raw) {
                /* A number or boolean: short, no byte to escape, never cut. */
                puts_(&o, "\":");
                put(&o, fields[i].value, fields[i].value_len);
                continue;
            }
            puts_(&o, "\":\"");
            put_escaped(&o, fields[i].value, fields[i].value_len, 1, min_size(VALUE_MAX, room(&o, 2)));
            puts_(&o, "\"");
        }
        puts_(&o, "}");
    } else {
        puts_(&o, ts);
        puts_(&o, " ");
        puts_(&o, gw_log_level_name(level));
        if (msg) {
            puts_(&o, " ");
            put_escaped(&o, msg, strlen(msg), 0, min_size(MSG_MAX, room(&o, 0)));
        }
        for (int i = 0; i < n; i++) {
            size_t klen = strlen(fields[i].key);
            size_t kesc = min_size(escaped_len(fields[i].key, klen, 1, KEY_MAX), KEY_MAX);
            size_t vesc = escaped_len(fields[i].value, fields[i].value_len, 1, VALUE_MAX);
            size_t whole = 2 + (bare(fields[i].key, klen) ? klen : kesc + 2) +
                           (bare(fields[i].value, fields[i].value_len) ? fields[i].value_len : vesc + 2);
            if (!fits(&o, 0, whole, 6 + kesc + TRUNC_LEN)) break;
            puts_(&o, " ");
            put_text_value(&o, fields[i].key, klen, KEY_MAX);
            puts_(&o, "=");
            put_text_value(&o, fields[i].value, fields[i].value_len, VALUE_MAX);
        }
    }
    buf[o.pos] = '\0';
    return o.pos;
}

void gw_log_fields(int level, const char *msg, const struct gw_log_field *fields, int n) {
    char line[LINE_MAX_BYTES];
    if (!gw_log_enabled(level)) return;
    size_t len = gw_log_format(line, sizeof line - 1, gw_wall_ms(), level, msg, fields, n);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void gw_log(int level, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    if (!gw_log_enabled(level)) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_log_fields(level, msg, NULL, 0);
}
