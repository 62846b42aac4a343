/* The pcre2 pattern cache. A bounded chained hash table: when it fills it
 * is emptied whole, which keeps patterns built from user input from
 * growing memory without bound. */
#include "base/regex.h"
#include "base/gw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 512
#define MAX_ENTRIES 4096

struct entry {
    struct entry *next;
    struct gw_regex re;
    size_t keylen;
    char key[]; /* flags, '\0', pattern */
};

static struct entry *buckets[NBUCKETS];
static int nentries;
/* A full cache is retired, not freed: a caller may still hold one of its
 * patterns (a gsub callback compiling others). gw_regex_collect frees it
 * when no Lua code is running. */
static struct entry *retired;

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    while (n--) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void free_chain(struct entry *e) {
    while (e) {
        struct entry *next = e->next;
        pcre2_match_data_free(e->re.md);
        pcre2_code_free(e->re.code);
        free(e);
        e = next;
    }
}

/* Move every cached pattern to the retired list. */
static void retire_all(void) {
    for (int i = 0; i < NBUCKETS; i++) {
        struct entry *e = buckets[i];
        while (e) {
            struct entry *next = e->next;
            e->next = retired;
            retired = e;
            e = next;
        }
        buckets[i] = NULL;
    }
    nentries = 0;
}

void gw_regex_collect(void) {
    free_chain(retired);
    retired = NULL;
}

void gw_regex_cache_clear(void) {
    retire_all();
    gw_regex_collect();
}

static int parse_flags(const char *flags, uint32_t *opts, char *err, size_t errlen) {
    *opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    for (const char *f = flags ? flags : ""; *f; f++) {
        switch (*f) {
        case 'i': *opts |= PCRE2_CASELESS; break;
        case 'm': *opts |= PCRE2_MULTILINE; break;
        case 's': *opts |= PCRE2_DOTALL; break;
        case 'x': *opts |= PCRE2_EXTENDED; break;
        case 'A': *opts |= PCRE2_ANCHORED; break;
        default: gw_fmt(err, errlen, "unknown regex flag '%c'", *f); return GW_ERR;
        }
    }
    return GW_OK;
}

const struct gw_regex *gw_regex_get(const char *pattern, size_t len, const char *flags,
                                    char *err, size_t errlen) {
    size_t flen = flags ? strlen(flags) : 0;
    size_t keylen = flen + 1 + len;
    struct entry *e;
    uint32_t h;
    uint32_t opts;

    /* Build the key on the stack for short patterns. */
    char small[256];
    char *key = keylen <= sizeof small ? small : malloc(keylen);
    if (!key) return NULL;
    if (flen) memcpy(key, flags, flen);
    key[flen] = '\0';
    memcpy(key + flen + 1, pattern, len);
    h = hash(key, keylen) % NBUCKETS;

    for (e = buckets[h]; e; e = e->next) {
        if (e->keylen == keylen && memcmp(e->key, key, keylen) == 0) {
            if (key != small) free(key);
            return &e->re;
        }
    }

    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = NULL;
    if (parse_flags(flags, &opts, err, errlen) != GW_OK) goto fail;
    code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &errcode, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        gw_fmt(err, errlen, "invalid regex \"%.*s\": %s at offset %zu", (int)len, pattern,
               (const char *)msg, (size_t)erroff);
        goto fail;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */

    if (nentries >= MAX_ENTRIES) retire_all();
    e = malloc(sizeof *e + keylen);
    if (!e) goto fail;
    e->re.code = code;
    e->re.md = pcre2_match_data_create_from_pattern(code, NULL);
    if (!e->re.md) {
        free(e);
        goto fail;
    }
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &e->re.ncaptures);
    e->keylen = keylen;
    memcpy(e->key, key, keylen);
    e->next = buckets[h];
    buckets[h] = e;
    nentries++;
    if (key != small) free(key);
    return &e->re;

fail:
    if (code) pcre2_code_free(code);
    if (key != small) free(key);
    return NULL;
}

/* The limits every match runs under (see GW_REGEX_MATCH_LIMIT). Made on
 * first use; NULL when that fails, and pcre2's own defaults apply. */
static pcre2_match_context *match_context(void) {
    static pcre2_match_context *ctx;
    static int made;
    if (!made) {
        made = 1;
        if ((ctx = pcre2_match_context_create(NULL)) != NULL) {
            pcre2_set_match_limit(ctx, GW_REGEX_MATCH_LIMIT);
            pcre2_set_depth_limit(ctx, GW_REGEX_DEPTH_LIMIT);
        }
    }
    return ctx;
}

int gw_regex_exec(const struct gw_regex *re, const char *subject, size_t len, size_t offset,
                  PCRE2_SIZE **ov) {
    int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, len, offset, 0, re->md, match_context());
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    if (rc == 0) rc = (int)pcre2_get_ovector_count(re->md);
    *ov = pcre2_get_ovector_pointer(re->md);
    return rc;
}
