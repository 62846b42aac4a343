/* See cidr.h. Addresses are compared as 16 bytes, IPv4 mapped into IPv6
 * (::ffff:0:0/96), so one list holds both families and "127.0.0.1/8"
 * matches a peer seen as "::ffff:127.0.0.1" on a dual-stack socket. */
#include "base/cidr.h"
#include "base/gw.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int gw_cidr_addr(const char *s, size_t len, unsigned char out[16]) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return GW_ERR;
    memcpy(buf, s, len);
    buf[len] = '\0';
    unsigned char v4[4];
    if (inet_pton(AF_INET, buf, v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        return GW_OK;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? GW_OK : GW_ERR;
}

int gw_cidr_add(struct gw_cidr_list *list, const char *text, char *err, size_t errlen) {
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    struct gw_cidr c;
    if (list->n >= GW_CIDR_MAX) {
        gw_fmt(err, errlen, "more than %d entries", GW_CIDR_MAX);
        return GW_ERR;
    }
    if (gw_cidr_addr(text, alen, c.addr) != GW_OK) {
        gw_fmt(err, errlen, "\"%.64s\" is not an IPv4 or IPv6 address or CIDR block", text);
        return GW_ERR;
    }
    int v4 = memchr(text, ':', alen) == NULL;
    int max = v4 ? 32 : 128;
    int bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max) {
            gw_fmt(err, errlen, "\"%.64s\": the prefix length must be 0 to %d", text, max);
            return GW_ERR;
        }
        bits = (int)b;
    }
    c.bits = v4 ? 96 + bits : bits;
    list->e[list->n++] = c;
    return GW_OK;
}

static int in_block(const struct gw_cidr *c, const unsigned char a[16]) {
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

int gw_cidr_match(const struct gw_cidr_list *list, const unsigned char addr[16]) {
    for (int i = 0; i < list->n; i++)
        if (in_block(&list->e[i], addr)) return 1;
    return 0;
}

int gw_cidr_match_text(const struct gw_cidr_list *list, const char *s, size_t len) {
    unsigned char a[16];
    return gw_cidr_addr(s, len, a) == GW_OK && gw_cidr_match(list, a);
}

const char *gw_cidr_forwarded(const struct gw_cidr_list *trusted, const char *xff, size_t xff_len,
                              size_t *len) {
    const char *end = xff + xff_len, *last = NULL;
    size_t last_len = 0;
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',') start--;
        const char *b = start, *e = end;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
        end = start > xff ? start - 1 : xff;
        if (b == e) continue; /* an empty entry (", ,") */
        unsigned char a[16];
        if (gw_cidr_addr(b, (size_t)(e - b), a) != GW_OK) break;
        last = b;
        last_len = (size_t)(e - b);
        if (!gw_cidr_match(trusted, a)) break;
    }
    *len = last_len;
    return last;
}
