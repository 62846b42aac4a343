/* A hiredis async context on the libuv loop: the glue hiredis's own
 * adapters/libuv.h provides, shared by every Redis connection of the core
 * (redis.c's clients, sentinel.c's queries and watch). What to send and
 * when to reconnect is left to them. */
#ifndef GW_REDIS_POLL_H
#define GW_REDIS_POLL_H

#include <uv.h>

struct redisAsyncContext; /* hiredis */

/* Put 'ac' (just made, its fd set) on 'loop': hiredis is woken when its
 * socket is readable or writable, and frees the glue itself when it frees
 * the context. Returns GW_OK, or GW_ERR (out of memory, or the fd cannot be
 * polled) with nothing attached: the caller frees the context. */
int gw_redis_poll_attach(struct redisAsyncContext *ac, uv_loop_t *loop);

#endif
