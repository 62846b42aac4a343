/* Small things every module shares: result codes, panic, time and
 * bounded string helpers. No I/O, no Lua. */
#ifndef GW_H
#define GW_H

#include <stddef.h>
#include <stdint.h>

#define GW_OK 0
#define GW_ERR (-1)

#define GW_VERSION "0.1.0"

/* Abort with a message: only for broken invariants, never for bad input. */
#define gw_panic(...) gw_panic_at(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void gw_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic clock in milliseconds (fractional), for durations. */
double gw_now_ms(void);

/* Wall clock in milliseconds since the epoch, for timestamps. */
double gw_wall_ms(void);

/* snprintf into a fixed buffer that never overflows; returns 'buf'. */
char *gw_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
