/* Percent-decoding (the one decoder of the core: query strings, form
 * bodies, request paths, Redis URLs) and application/x-www-form-urlencoded
 * parsing. Takes bytes, knows nothing of sockets or Lua. */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stddef.h>

/* Called for each pair; key and value are decoded and valid only during the
 * call. Return GW_OK to go on, GW_ERR to stop parsing. */
typedef int (*gw_query_pair_fn)(void *ud, const char *key, size_t klen,
                                const char *val, size_t vlen);

/* Split 's' on '&' and ';', then on the first '=', decoding both sides
 * ('+' is a space). Empty pieces are skipped; a piece without '=' has an
 * empty value. Invalid %-escapes are kept as they are, as browsers do.
 * Returns GW_OK, or GW_ERR if the callback stopped it or memory ran out. */
int gw_query_parse(const char *s, size_t len, gw_query_pair_fn fn, void *ud);

/* Percent-decode 'len' bytes of 'in' into 'out' (room for 'len' bytes);
 * with 'plus_is_space', '+' becomes ' '. A '%' not followed by two hex
 * digits is kept as it is, as browsers do. Returns the decoded length. */
size_t gw_url_decode(const char *in, size_t len, char *out, int plus_is_space);

/* The same for paths and URLs: '+' stays, and a malformed escape makes it
 * fail with -1. */
long gw_url_decode_strict(const char *in, size_t len, char *out);

/* 1 if the bytes are well-formed UTF-8 (no overlongs, no surrogates). */
int gw_utf8_valid(const char *s, size_t len);

#endif
