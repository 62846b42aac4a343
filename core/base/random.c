/* See random.h. */
#include "base/random.h"
#include "base/gw.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/types.h>
#include <stddef.h>
#include <unistd.h>

/* Read 4 KiB at a time: one read per 256 ids instead of one per request.
 * A forked worker inherits the pool: it must not hand out the ids its
 * master or a sibling hands out too (connection and session ids are
 * unique across the workers), so a process refills a pool it did not
 * fill itself. A fork handler (pthread_atfork, registered at the first
 * fill) empties the child's copy: no getpid() system call per id, which
 * was one of the three system calls of every HTTP request. */
static unsigned char pool[4096];
static size_t used = sizeof pool;

static void pool_forked(void) {
    used = sizeof pool;
}

int gw_random_hex(char out[32]) {
    static const char digits[] = "0123456789abcdef";
    static int fd = -1;
    static int watching;
    if (used + 16 > sizeof pool) {
        if (!watching) {
            if (pthread_atfork(NULL, NULL, pool_forked) != 0) return GW_ERR;
            watching = 1;
        }
        if (fd < 0) fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, pool, sizeof pool) != (ssize_t)sizeof pool) return GW_ERR;
        used = 0;
    }
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[pool[used + (size_t)i] >> 4];
        out[2 * i + 1] = digits[pool[used + (size_t)i] & 15];
    }
    used += 16;
    return GW_OK;
}
