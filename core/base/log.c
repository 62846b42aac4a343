/* Log line formatting and output. The whole line is built in a buffer and
 * written with one write(2) so lines from several workers never interleave. */
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

struct out {
    char *buf;
    size_t len, pos;
};

static void put(struct out *o, const char *s, size_t n) {
    while (n-- && o->pos + 1 < o->len) o->buf[o->pos++] = *s++;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void put_json_string(struct out *o, const char *s, size_t n) {
    char esc[8];
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, (const char *)&s[i], 1);
        }
    }
    put(o, "\"", 1);
}

/* Text values are bare unless they hold spaces, quotes, '=' or controls. */
static void put_text_value(struct out *o, const char *s, size_t n) {
    int plain = n > 0;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=') plain = 0;
    }
    if (plain) put(o, s, n);
    else put_json_string(o, s, n);
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

    if (json_format) {
        puts_(&o, "{\"time\":\"");
        puts_(&o, ts);
        puts_(&o, "\",\"level\":\"");
        puts_(&o, gw_log_level_name(level));
        puts_(&o, "\"");
        if (msg) {
            puts_(&o, ",\"msg\":");
            put_json_string(&o, msg, strlen(msg));
        }
        for (int i = 0; i < n; i++) {
            puts_(&o, ",");
            put_json_string(&o, fields[i].key, strlen(fields[i].key));
            puts_(&o, ":");
            put_json_string(&o, fields[i].value, fields[i].value_len);
        }
        puts_(&o, "}");
    } else {
        puts_(&o, ts);
        puts_(&o, " ");
        puts_(&o, gw_log_level_name(level));
        if (msg) {
            puts_(&o, " ");
            puts_(&o, msg);
        }
        for (int i = 0; i < n; i++) {
            puts_(&o, " ");
            puts_(&o, fields[i].key);
            puts_(&o, "=");
            put_text_value(&o, fields[i].value, fields[i].value_len);
        }
    }
    buf[o.pos] = '\0';
    return o.pos;
}

void gw_log_fields(int level, const char *msg, const struct gw_log_field *fields, int n) {
    char line[8192];
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
