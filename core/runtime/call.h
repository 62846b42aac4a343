/* One request handed to the Lua runtime: runs runtime.handle(transport,
 * ctx) in a task, enforces general.actionTimeout, and turns a timeout, a
 * CPU stop or an internal error into runtime.fail(...)'s rendered answer.
 * Transports only build the ctx table and send what comes back. */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <lua.h>

#include "runtime/runtime.h"

struct gw_call;

/* The answer: 'n' values at L[base..base+n-1] (for the web: status,
 * headers table, body string). Valid only during the call; after it the
 * gw_call is finished and must not be touched again. */
typedef void (*gw_call_reply_fn)(void *ud, lua_State *L, int base, int n);

struct gw_call *gw_call_new(struct gw_runtime *rt, const char *transport, gw_call_reply_fn reply,
                            void *ud);

/* [-1, +0] Pop the ctx table from the main stack and start. The reply may
 * come before this returns. */
void gw_call_run(struct gw_call *c);

/* The client went away: stop the action, run the runtime's bookkeeping,
 * never reply. */
void gw_call_cancel(struct gw_call *c);

#endif
