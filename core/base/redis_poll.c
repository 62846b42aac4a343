/* See redis_poll.h. A copy of hiredis 1.0's libuv adapter (see poller_cb
 * for why not the 0.14 one Debian ships). */
#include "base/redis_poll.h"
#include "base/gw.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <stdlib.h>

/* hiredis's own libuv adapter (adapters/libuv.h) as of hiredis 1.0. The
 * 0.14 one Debian ships ignores a poll error: libuv reports POLLERR (a
 * refused connect, a reset connection) as a status with no events, so
 * hiredis would never look at the socket and the context would hang.
 * Here an error wakes hiredis for the events it asked for; its read,
 * write or connect check then meets the socket error and disconnects. */
struct poller {
    redisAsyncContext *ac; /* NULL once hiredis has let go of it */
    uv_poll_t handle;
    int events;
};

static void poller_cb(uv_poll_t *h, int status, int events) {
    struct poller *p = h->data;
    int ev = status < 0 ? p->events : events;
    if (p->ac && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void poller_update(struct poller *p, int events) {
    p->events = events;
    if (events) uv_poll_start(&p->handle, events, poller_cb);
    else uv_poll_stop(&p->handle);
}

static void poller_add_read(void *d) { struct poller *p = d; poller_update(p, p->events | UV_READABLE); }
static void poller_del_read(void *d) { struct poller *p = d; poller_update(p, p->events & ~UV_READABLE); }
static void poller_add_write(void *d) { struct poller *p = d; poller_update(p, p->events | UV_WRITABLE); }
static void poller_del_write(void *d) { struct poller *p = d; poller_update(p, p->events & ~UV_WRITABLE); }

static void poller_closed(uv_handle_t *h) { free(h->data); }

/* hiredis is freeing the context (it closes the fd right after). */
static void poller_cleanup(void *d) {
    struct poller *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, poller_closed);
}

int gw_redis_poll_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    struct poller *p = calloc(1, sizeof *p);
    if (!p) return GW_ERR;
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return GW_ERR;
    }
    p->ac = ac;
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = poller_add_read;
    ac->ev.delRead = poller_del_read;
    ac->ev.addWrite = poller_add_write;
    ac->ev.delWrite = poller_del_write;
    ac->ev.cleanup = poller_cleanup;
    return GW_OK;
}
