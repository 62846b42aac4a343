/* Address lists: IPv4 and IPv6 addresses and CIDR blocks ("10.0.0.0/8",
 * "::1", "fd00::/8"), parsed once from the config and matched against a
 * peer's address (servers.web.trustedProxies, the metrics allow-list) and
 * the X-Forwarded-For walk. Bytes in: no sockets, no Lua. */
#ifndef GW_CIDR_H
#define GW_CIDR_H

#include <stddef.h>

#define GW_CIDR_MAX 64 /* entries in one list */

struct gw_cidr {
    unsigned char addr[16]; /* IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) */
    int bits;               /* prefix length over the 128 bits */
};

struct gw_cidr_list {
    int n;
    struct gw_cidr e[GW_CIDR_MAX];
};

/* Parse one address of 'len' bytes (IPv4 dotted quad or IPv6 text, no
 * brackets or port) into 16 bytes, IPv4 mapped. GW_OK or GW_ERR. */
int gw_cidr_addr(const char *s, size_t len, unsigned char out[16]);

/* Add "addr" or "addr/bits" to 'list'. GW_ERR with a reason in 'err' for
 * text that does not parse, a prefix out of range, or a full list. */
int gw_cidr_add(struct gw_cidr_list *list, const char *text, char *err, size_t errlen);

/* Is the parsed address in one of the list's blocks? */
int gw_cidr_match(const struct gw_cidr_list *list, const unsigned char addr[16]);

/* The same for an address as text; 0 when it does not parse. */
int gw_cidr_match_text(const struct gw_cidr_list *list, const char *s, size_t len);

/* The client behind trusted proxies (the standard X-Forwarded-For walk):
 * 'xff' is the header (repeated headers joined with ", "). From its right
 * end, each address that is itself in 'trusted' is skipped; the first that
 * is not is the client. Returns a pointer into 'xff' and its length in
 * *len, or NULL (use the peer) when the header holds no address. An entry
 * that does not parse stops the walk: the last trusted address before it
 * is returned (NULL when it is the right-most entry). When every entry is
 * trusted, the left-most is the client. */
const char *gw_cidr_forwarded(const struct gw_cidr_list *trusted, const char *xff, size_t xff_len,
                              size_t *len);

#endif
