/* pcre2 patterns compiled once (with JIT where available) and cached by
 * pattern and flags. No Lua here: the binding lives in gw_lib_regex.c. */
#ifndef GW_REGEX_H
#define GW_REGEX_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

struct gw_regex {
    pcre2_code *code;
    pcre2_match_data *md;   /* shared: copy the ovector out before re-entering */
    uint32_t ncaptures;     /* capture groups, not counting group 0 */
};

/* The compiled pattern for (pattern, flags), compiling it on first use.
 * 'flags' is a string of i (caseless), m (multiline), s (dotall),
 * x (extended), A (anchored), or NULL. Patterns are UTF-8 and tolerate
 * invalid UTF-8 subjects. The cache owns the result; it stays valid until
 * gw_regex_collect() or gw_regex_cache_clear(). On error returns NULL with a message naming the
 * pattern and the offset in 'err'. */
const struct gw_regex *gw_regex_get(const char *pattern, size_t len, const char *flags,
                                    char *err, size_t errlen);

/* Every match stops after this many backtracking steps (pcre2's match
 * limit; its default is ten million) and this much nesting (its depth
 * limit, for the interpreter; JIT code has its own stack): a pattern that
 * backtracks catastrophically on a client's input, such as ^(a+)+$ against
 * "aaa...ab", fails in a millisecond or so with PCRE2_ERROR_MATCHLIMIT
 * instead of holding the worker for seconds. Patterns that work on route
 * segments and form values need a few hundred steps. */
#define GW_REGEX_MATCH_LIMIT 100000
#define GW_REGEX_DEPTH_LIMIT 10000

/* Match from 'offset', within the limits above. Returns the number of
 * captured pairs (>= 1) and sets *ov to the ovector, 0 for no match, or a
 * negative pcre2 error (PCRE2_ERROR_MATCHLIMIT, PCRE2_ERROR_DEPTHLIMIT
 * when a limit was hit). */
int gw_regex_exec(const struct gw_regex *re, const char *subject, size_t len, size_t offset,
                  PCRE2_SIZE **ov);

/* Free patterns dropped from a full cache. Call only when no caller can
 * hold one: between Lua runs, never from inside a binding. */
void gw_regex_collect(void);

/* Free every pattern (shutdown, tests). */
void gw_regex_cache_clear(void);

#endif
