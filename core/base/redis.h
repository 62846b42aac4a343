/* The process's one Redis connection: hiredis async on the libuv loop,
 * AUTH and SELECT on connect, reconnection with capped backoff, and a
 * timeout per command. Commands from many callers share the connection
 * (pipelining). Lua is left to gw_lib_redis.c; the URL parser takes bytes
 * so tests can feed it. */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <stddef.h>
#include <uv.h>

struct redisReply; /* hiredis */
struct gw_redis;
struct gw_redis_cmd;

/* redis.url, parsed. Forms:
 *   redis://[[user]:password@]host[:port][/db][?db=N&password=P&user=U]
 *   unix:///absolute/path/to/redis.sock[?db=N&password=P&user=U]
 * 'user' and 'password' are percent-decoded; an empty password means no
 * AUTH. Port defaults to 6379, db to 0. */
struct gw_redis_url {
    int is_unix;
    char host[256];
    int port;
    char path[108]; /* sun_path's size */
    char user[256];
    char password[512];
    int db;
};

/* Parse 'url' into 'out'. Returns GW_OK, or GW_ERR with a one-line reason
 * in 'err'. */
int gw_redis_url_parse(const char *url, struct gw_redis_url *out, char *err, size_t errlen);

/* The URL without its password, for logs: "redis://user:***@host:6379/0". */
void gw_redis_url_describe(const struct gw_redis_url *u, char *buf, size_t len);

/* Why a command must not go over the shared connection, or NULL when it
 * may. Always refused: SUBSCRIBE, MULTI, SELECT, ... (they change the
 * connection for every other caller). Refused unless allowed by name
 * (gw_redis_allow): commands that stall or wreck the connection or the
 * server every worker shares: FLUSHALL, FLUSHDB, CONFIG, SHUTDOWN, DEBUG,
 * CLIENT KILL, CLIENT PAUSE, WAIT, WAITAOF, SCRIPT FLUSH, FUNCTION FLUSH,
 * and blocking pops and moves with timeout 0 (XREAD/XREADGROUP with
 * BLOCK 0); their reason names the command and redis.allowCommands.
 * Names are case-insensitive; 'argv[0]' is the command name. */
const char *gw_redis_refuses(int argc, const char **argv, const size_t *argvlen);

/* The bit (0..31) of a command gw_redis_refuses refuses unless allowed
 * ("FLUSHDB", "CLIENT KILL", any case), or -1 for any other name. */
int gw_redis_allowable(const char *name);

/* Those names, comma-separated, for error messages. */
const char *gw_redis_allowable_names(void);

/* Allow the commands whose bits (1 << gw_redis_allowable(name)) are set
 * in 'mask', for the whole process (redis.allowCommands); 0 by default. */
void gw_redis_allow(unsigned long mask);

struct gw_sentinel; /* base/sentinel.h */

/* Make the clients created from now on find their Redis through 's' (NULL:
 * redis.url's host, the default), for the whole process: each attempt
 * asks the sentinels where the master is, checks that ROLE says master
 * there, and a client leaves for the new master as soon as the sentinels
 * name another one (commands sent to the old one get "redis unavailable").
 * redis.url still gives the user, password and db. 's' must outlive the
 * clients. */
void gw_redis_use_sentinel(struct gw_sentinel *s);

/* Called exactly once per command unless it was cancelled: with the reply
 * (valid only during the call; it may be an error reply) and err NULL, or
 * with reply NULL and err "redis unavailable" (connection lost or client
 * stopped) or "redis timeout" (no reply within the command timeout; the
 * reply, when it comes, is dropped). */
typedef void (*gw_redis_reply_fn)(void *ud, const struct redisReply *reply, const char *err);

/* Start a client on 'loop' and begin connecting to 'url' at once. Failing
 * to reach Redis is not an error: it is logged once per outage and
 * retried with backoff (100 ms doubling to 1 s); one attempt (connect,
 * AUTH, SELECT, PING) may take 2 s. 'command_timeout_ms' bounds every
 * command (0: no bound); when 3 sent commands in a row time out with no
 * reply between them, the connection is dropped (everything on it gets
 * "redis unavailable") and made again. At most 'max_pending' commands
 * wait for replies (timed-out ones count until their reply or the reset);
 * past it gw_redis_command fails at once. TCP connections use keepalive.
 * Returns NULL with a reason in 'err' only for a bad URL. */
struct gw_redis *gw_redis_new(uv_loop_t *loop, const char *url, long command_timeout_ms,
                              long max_pending, char *err, size_t errlen);

/* Stop: every pending command gets "redis unavailable" (its callback runs
 * now), the connection closes, and the client is freed once its handles
 * have closed, so the loop must run on. Accepts NULL. Not from inside a
 * gw_redis_reply_fn. */
void gw_redis_free(struct gw_redis *r);

/* 1 when commands go straight to Redis (connected, AUTH and SELECT done). */
int gw_redis_connected(const struct gw_redis *r);

/* Send a command (arguments are copied). While the connection is being
 * set up (connecting, AUTH, SELECT) it waits in a queue and is sent once
 * the connection is ready; while Redis is down, or while 'max_pending'
 * commands are waiting, it fails at once. Returns
 * the pending command, or NULL when it failed at once ('fn' is then never
 * called). */
struct gw_redis_cmd *gw_redis_command(struct gw_redis *r, int argc, const char **argv,
                                      const size_t *argvlen, gw_redis_reply_fn fn, void *ud);

/* The caller no longer wants the answer: 'fn' will not be called, and
 * the reply is dropped when it arrives. 'c' is invalid afterwards. */
void gw_redis_cancel(struct gw_redis_cmd *c);

/* A subscriber's news: a message published on one of its channels
 * ('channel' and 'msg' are valid only during the call), or, with 'channel'
 * NULL, "every channel is subscribed": after each connect, once Redis has
 * confirmed the SUBSCRIBE of every channel the client had then. */
typedef void (*gw_redis_message_fn)(void *ud, const char *channel, size_t channel_len,
                                    const char *msg, size_t len);

/* A client in subscriber mode for pub/sub: the same connecting, AUTH,
 * SELECT, backoff and logging as gw_redis_new, but no commands
 * (gw_redis_command on it is a bug); once connected, and again after each
 * reconnect, it subscribes to every channel given to gw_redis_subscribe.
 * Messages published while it is down are lost (Redis pub/sub). Free it
 * with gw_redis_free. NULL with a reason in 'err' only for a bad URL. */
struct gw_redis *gw_redis_new_subscriber(uv_loop_t *loop, const char *url, gw_redis_message_fn fn,
                                         void *ud, char *err, size_t errlen);

/* Add 'channel' (copied) to the subscriber's channels, subscribing now
 * when connected. GW_OK, or GW_ERR when out of memory. */
int gw_redis_subscribe(struct gw_redis *r, const char *channel);

#endif
