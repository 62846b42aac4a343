/* One log line per event on stderr, as text or JSON (SPEC §10).
 * Formatting only: callers decide what is worth logging. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

enum gw_log_level {
    GW_LOG_DEBUG, GW_LOG_INFO, GW_LOG_NOTICE, GW_LOG_WARNING, GW_LOG_ERROR, GW_LOG_CRIT
};

struct gw_log_field {
    const char *key;
    const char *value;
    size_t value_len;
    int raw; /* 'value' is a JSON number or boolean: unquoted in JSON lines */
};

/* Level name ("debug" .. "crit") to level, or -1 when unknown. */
int gw_log_level_parse(const char *name);
const char *gw_log_level_name(int level);

void gw_log_set_level(int level);
int gw_log_get_level(void);
void gw_log_set_json(int on);
int gw_log_enabled(int level);

/* Write one line: timestamp, level, optional message, then fields in order.
 * 'msg' may be NULL. Values are quoted or escaped as the format needs. */
void gw_log_fields(int level, const char *msg, const struct gw_log_field *fields, int n);

/* printf-style message without fields. */
void gw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Format 'line' into buf as text or JSON; returns the length written
 * (truncated to len-1). Exposed for the unit tests. */
size_t gw_log_format(char *buf, size_t len, double wall_ms, int level, const char *msg,
                     const struct gw_log_field *fields, int n);

#endif
