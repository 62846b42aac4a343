/* See gw_server.h. The server makes the three transports (gw_http, gw_ws,
 * gw_socket) with the runtime and owns them. Shutdown order: mark the
 * runtime as shutting down (new actions get 503), close the listeners,
 * wait up to general.shutdownTimeout until the drain registry holds no
 * call in flight and no unsent answer, no api.timer.after callback due
 * before the deadline is pending and none is running, close the persistent connections
 * (up to CLOSE_GRACE_MS, until it holds none), stop the Redis client,
 * close the web connections, destroy the lws context, let the loop finish,
 * free the transports. */
#include "net/server.h"
#include "base/gw.h"
#include "runtime/drain.h"
#include "net/http.h"
#include "vm/libs.h"
#include "net/listen.h"
#include "base/log.h"
#include "vm/vm.h"
#include "base/redis.h"
#include "base/sentinel.h"
#include "net/socket.h"
#include "net/ws.h"
#include "net/conncap.h"
#include "base/metrics.h"
#include "net/notify.h"
#include "net/tls.h"

#include <libwebsockets.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>


#define WS_RX_BUFFER 1024
#define CLOSE_GRACE_MS 500 /* for clients to answer our close at shutdown */

struct gw_server {
    uv_loop_t *loop;
    struct gw_runtime *rt;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    struct gw_listener web;
    int web_fd;
    struct gw_http *http;
    /* The metrics listener of its own (servers.web.metrics.port >= 0). */
    struct gw_listener metrics;
    int metrics_fd;
    struct gw_http *metrics_http;
    /* TLS on the web listener (servers.web.tls), this process's context,
     * and the plain listener that redirects to it (tls.redirectPort). */
    struct gw_tls *tls;
    struct gw_listener redirect;
    int redirect_fd;
    struct gw_http *redirect_http;
    struct gw_ws *ws;
    struct gw_socket *socket;
    struct gw_redis *redis;
    struct gw_sentinel *sentinel; /* NULL without redis.sentinels */
    int socket_fd, own_socket_fd;
    struct lws_protocols protocols[2];
    lws_retry_bo_t idle_policy; /* WebSocket pings; lws keeps a pointer to it */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    double drain_started, close_started;
    uint64_t drain_deadline; /* loop time: timers due by then are waited for */
    int stopping, closing_conns;
};

static void lws_emit(int level, const char *line) {
    /* lws 4.1 reports every adoption with a read buffer at error level. */
    if (strstr(line, "adopt_socket_readbuf: calling service")) return;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    gw_log(level == LLL_ERR ? GW_LOG_ERROR : GW_LOG_WARNING, "lws: %.*s", (int)n, line);
}

static void on_web_accept(void *ud, int fd) {
    struct gw_server *s = ud;
    gw_http_accept(s->http, fd);
}

static void on_redirect_accept(void *ud, int fd) {
    struct gw_server *s = ud;
    gw_http_accept(s->redirect_http, fd);
}

/* Is there a plain listener redirecting to the TLS one? */
static int own_redirect(const struct gw_config *cfg) {
    return cfg->web_enabled && cfg->tls_cert[0] && cfg->tls_redirect_port >= 0;
}

static void on_metrics_accept(void *ud, int fd) {
    struct gw_server *s = ud;
    gw_http_accept(s->metrics_http, fd);
}

/* Is there a metrics listener of its own? */
static int own_metrics(const struct gw_config *cfg) { return cfg->web_enabled && cfg->metrics_port >= 0; }

/* The one lws protocol: WebSocket connections gw_http hands over with
 * their upgrade request (lws binds upgrades without a subprotocol to the
 * first protocol). Plain HTTP never reaches lws. */
static int web_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len) {
    if (gw_ws_handles(reason)) return gw_ws_callback(wsi, reason, user, in, len);
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void print_listener(const char *kind, const char *scheme, const char *host, int fd) {
    int port = gw_listen_port(fd);
    const char *fmt = strchr(host, ':') ? "listening %s %s://[%s]:%d\n" : "listening %s %s://%s:%d\n";
    printf(fmt, kind, scheme, host, port);
    fflush(stdout);
    gw_log(GW_LOG_NOTICE, "%s server listening on %s port %d", kind, host, port);
}

static void on_signal(uv_signal_t *h, int signum);

/* Whole seconds, rounded up (lws times its pings in seconds), at most
 * 'max'. */
static long ms_to_secs(long ms, long max) {
    long secs = (ms + 999) / 1000;
    return secs > max ? max : secs;
}

/* WebSocket liveness, run by lws for every connection of the vhost: after
 * pingInterval without a pong (or since the upgrade) it sends a ping, and
 * it drops the connection when pongTimeout more pass without one. The
 * hangup must come later than the ping, or lws hangs up without pinging;
 * a hangup time of 0 turns the checks off. */
static void set_idle_policy(struct gw_server *s, const struct gw_config *cfg,
                            struct lws_context_creation_info *info) {
    if (cfg->ws_ping_interval > 0) {
        long ping = ms_to_secs(cfg->ws_ping_interval, 65534);
        long hangup = ms_to_secs(cfg->ws_ping_interval + cfg->ws_pong_timeout, 65535);
        s->idle_policy.secs_since_valid_ping = (uint16_t)ping;
        s->idle_policy.secs_since_valid_hangup = (uint16_t)(hangup > ping ? hangup : ping + 1);
    }
    info->retry_and_idle_policy = &s->idle_policy;
}

struct gw_server *gw_server_new(uv_loop_t *loop, struct gw_runtime *rt, int web_fd, int socket_fd,
                                int metrics_fd, int redirect_fd, int print_listening, char *err,
                                size_t errlen) {
    const struct gw_config *cfg = gw_runtime_config(rt);
    struct gw_server *s = calloc(1, sizeof *s);
    if (!s) gw_panic("out of memory");
    s->loop = loop;
    s->rt = rt;
    gw_metrics.start_wall_ms = gw_wall_ms();
    gw_conncap_init(cfg->max_connections, cfg->max_connections_per_ip);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
    s->ws = gw_ws_new(rt);
    s->protocols[0].name = "http";
    s->protocols[0].callback = web_callback;
    s->protocols[0].user = s->ws; /* where gw_ws_callback finds it */
    s->protocols[0].per_session_data_size = gw_ws_session_size();
    /* lws gives every WebSocket a receive buffer of this size for its whole
     * life (default 4 KiB). Most messages are far smaller; larger ones
     * arrive in pieces that gw_ws reassembles. */
    s->protocols[0].rx_buffer_size = WS_RX_BUFFER;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *foreign[1] = {loop};
    info.foreign_loops = foreign;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.protocols = s->protocols;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* we listen; lws serves what we adopt */
    info.max_http_header_data = 16384;
    info.keepalive_timeout = 60;
    info.timeout_secs = 30;
    info.user = s;
    set_idle_policy(s, cfg, &info);

    s->web_fd = web_fd;
    if (cfg->web_enabled && s->web_fd < 0 &&
        (s->web_fd = gw_listen_open(cfg->web_host, cfg->web_port, err, errlen)) < 0)
        goto fail;
    s->metrics_fd = metrics_fd;
    if (own_metrics(cfg) && s->metrics_fd < 0 &&
        (s->metrics_fd = gw_listen_open(cfg->metrics_host, cfg->metrics_port, err, errlen)) < 0)
        goto fail;
    s->redirect_fd = redirect_fd;
    if (own_redirect(cfg) && s->redirect_fd < 0 &&
        (s->redirect_fd = gw_listen_open(cfg->web_host, cfg->tls_redirect_port, err, errlen)) < 0)
        goto fail;
    /* Each process loads its own context (a worker after its fork). */
    if (cfg->web_enabled && cfg->tls_cert[0] &&
        !(s->tls = gw_tls_new(cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, err, errlen)))
        goto fail;
    s->socket_fd = socket_fd;
    if (cfg->socket_enabled && s->socket_fd < 0) {
        if ((s->socket_fd = gw_listen_open(cfg->socket_host, cfg->socket_port, err, errlen)) < 0) goto fail;
        s->own_socket_fd = 1;
    }
    s->ctx = lws_create_context(&info);
    if (!s->ctx || !(s->vhost = lws_get_vhost_by_name(s->ctx, "default"))) {
        gw_fmt(err, errlen, "cannot start libwebsockets");
        goto fail;
    }
    if (cfg->web_enabled && gw_listener_start(&s->web, loop, s->web_fd, on_web_accept, s) != GW_OK) {
        gw_fmt(err, errlen, "cannot poll the web listener");
        goto fail;
    }
    if (own_metrics(cfg) && gw_listener_start(&s->metrics, loop, s->metrics_fd, on_metrics_accept, s) != GW_OK) {
        gw_fmt(err, errlen, "cannot poll the metrics listener");
        goto fail;
    }
    if (own_redirect(cfg) && gw_listener_start(&s->redirect, loop, s->redirect_fd, on_redirect_accept, s) != GW_OK) {
        gw_fmt(err, errlen, "cannot poll the redirect listener");
        goto fail;
    }
    if (cfg->socket_enabled && !(s->socket = gw_socket_new(rt, loop, s->socket_fd))) {
        gw_fmt(err, errlen, "cannot poll the socket listener");
        goto fail;
    }
    /* Its handles live on the loop until gw_http_close_all, so it comes
     * after everything that can fail; nothing is accepted before the loop
     * runs. */
    s->http = gw_http_new(rt, loop, s->vhost, s->ws);
    if (s->tls) gw_http_use_tls(s->http, s->tls);
    if (own_redirect(cfg)) {
        s->redirect_http = gw_http_new(rt, loop, s->vhost, s->ws);
        gw_http_serve_redirect(s->redirect_http, gw_listen_port(s->web_fd));
    }
    if (own_metrics(cfg)) {
        s->metrics_http = gw_http_new(rt, loop, s->vhost, s->ws);
        gw_http_serve_ops_only(s->metrics_http);
    }

    uv_signal_init(loop, &s->sigterm);
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sighup);
    s->sigterm.data = s->sigint.data = s->sighup.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sighup, on_signal, SIGHUP);
    uv_timer_init(loop, &s->drain);
    s->drain.data = s;

    /* Last, as nothing after it can fail; Redis being down is not an error. */
    gw_redis_allow(cfg->redis_allow);
    if (cfg->redis_sentinel.n) s->sentinel = gw_sentinel_new(loop, &cfg->redis_sentinel);
    gw_redis_use_sentinel(s->sentinel);
    if (!(s->redis = gw_redis_new(loop, cfg->redis_url, cfg->redis_command_timeout,
                                  cfg->redis_max_pending, err, errlen)))
        gw_panic("redis.url passed the config check but not gw_redis_new: %s", err);
    gw_runtime_set_redis(rt, s->redis);
    if (cfg->cluster_enabled &&
        gw_pubsub_start(s->redis, cfg->redis_url, cfg->cluster_heartbeat, err, errlen) != GW_OK)
        gw_panic("redis.url passed the config check but not the subscriber: %s", err);
    /* runtime.start: background work (the tasks worker and scheduler) begins
     * with the loop; --check and the spec helper never get here. */
    lua_State *L = gw_vm_state(gw_runtime_vm(rt));
    gw_runtime_push(rt, "start");
    if (gw_vm_pcall(gw_runtime_vm(rt), 0, 0) != LUA_OK) {
        gw_log(GW_LOG_ERROR, "runtime.start: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }

    if (print_listening && cfg->web_enabled) print_listener("web", s->tls ? "https" : "http", cfg->web_host, s->web_fd);
    if (print_listening && own_redirect(cfg)) print_listener("redirect", "http", cfg->web_host, s->redirect_fd);
    if (print_listening && cfg->socket_enabled) print_listener("socket", "tcp", cfg->socket_host, s->socket_fd);
    if (print_listening && own_metrics(cfg)) print_listener("metrics", "http", cfg->metrics_host, s->metrics_fd);
    /* systemd (Type=notify): ready once the first process listens. */
    if (print_listening) gw_notify("READY=1");
    return s;
fail:
    if (s->ctx) lws_context_destroy(s->ctx);
    gw_ws_free(s->ws);
    if (s->web_fd >= 0 && web_fd < 0) close(s->web_fd);
    if (s->metrics_fd >= 0 && metrics_fd < 0) close(s->metrics_fd);
    if (s->redirect_fd >= 0 && redirect_fd < 0) close(s->redirect_fd);
    if (s->own_socket_fd) close(s->socket_fd);
    gw_tls_free(s->tls);
    free(s);
    return NULL;
}

static void finish_shutdown(struct gw_server *s) {
    uv_timer_stop(&s->drain);
    uv_close((uv_handle_t *)&s->drain, NULL);
    uv_signal_stop(&s->sigterm);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sighup);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    /* Tasks still waiting on Redis (timer callbacks; actions past the
     * drain were aborted) get "redis unavailable" and may run on a little,
     * so this comes before the timers are cancelled and lws goes. */
    gw_runtime_set_redis(s->rt, NULL);
    gw_pubsub_stop();
    gw_redis_free(s->redis);
    s->redis = NULL;
    gw_redis_use_sentinel(NULL);
    gw_sentinel_free(s->sentinel);
    s->sentinel = NULL;
    gw_loop_shutdown();        /* timer.after callbacks not yet started: logged as dropped */
    /* Started ones still waiting (api.sleep, modules). */
    int stopped = gw_task_abort_unowned(gw_runtime_vm(s->rt));
    if (stopped > 0)
        gw_log(GW_LOG_WARNING, "shutdown: stopped %d api.timer.after callback%s still running", stopped,
               stopped == 1 ? "" : "s");
    if (s->socket) gw_socket_close(s->socket, 0);
    gw_http_close_all(s->http);
    if (s->metrics_http) gw_http_close_all(s->metrics_http);
    if (s->redirect_http) gw_http_close_all(s->redirect_http);
    gw_conncap_close_all();
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
}

/* Shutdown in two steps, both bounded: wait for in-flight actions and for
 * their answers to reach the sockets (shutdownTimeout), then close the
 * persistent connections politely (WebSocket 1001, TCP after its queue)
 * and give clients CLOSE_GRACE_MS to finish the close handshake. */
static void drain_tick(uv_timer_t *h) {
    struct gw_server *s = h->data;
    double now = gw_now_ms();
    if (!s->closing_conns) {
        long limit = gw_runtime_config(s->rt)->shutdown_timeout;
        int calls = gw_drain_count(GW_DRAIN_CALLS), unsent = gw_drain_count(GW_DRAIN_UNSENT);
        /* Work actions left for later: timers due before the deadline, and
         * timer callbacks that have started and not ended. */
        int timers = gw_loop_timers_due(s->drain_deadline);
        int callbacks = gw_vm_unowned_count(gw_runtime_vm(s->rt));
        int busy = calls > 0 || unsent > 0 || timers > 0 || callbacks > 0;
        if (busy && now - s->drain_started < (double)limit) return;
        if (busy)
            gw_log(GW_LOG_WARNING,
                   "shutdownTimeout reached with %d actions still running, %d answers unsent, "
                   "%d timer callbacks running",
                   calls, unsent, callbacks);
        s->closing_conns = 1;
        s->close_started = now;
        gw_ws_close_all(s->ws);
        if (s->socket) gw_socket_close(s->socket, 1);
        return;
    }
    if (gw_drain_count(GW_DRAIN_CONNS) == 0 || now - s->close_started >= CLOSE_GRACE_MS) finish_shutdown(s);
}

static void start_shutdown(struct gw_server *s) {
    if (s->stopping) return;
    s->stopping = 1;
    gw_notify("STOPPING=1");
    gw_log(GW_LOG_NOTICE, "shutting down: waiting for %d in-flight actions",
           gw_drain_count(GW_DRAIN_CALLS));
    lua_State *L = gw_vm_state(gw_runtime_vm(s->rt));
    gw_runtime_push(s->rt, "shutdown");
    if (gw_vm_pcall(gw_runtime_vm(s->rt), 0, 0) != LUA_OK) {
        gw_log(GW_LOG_ERROR, "runtime.shutdown: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    if (gw_runtime_config(s->rt)->web_enabled) gw_listener_stop(&s->web, 1);
    gw_http_stop(s->http);
    if (s->metrics_http) {
        gw_listener_stop(&s->metrics, 1);
        gw_http_stop(s->metrics_http);
    }
    if (s->redirect_http) {
        gw_listener_stop(&s->redirect, 1);
        gw_http_stop(s->redirect_http);
    }
    if (s->socket) gw_socket_stop_accepting(s->socket);
    s->drain_started = gw_now_ms();
    gw_loop_shutdown_begin();
    uv_update_time(s->loop);
    s->drain_deadline = uv_now(s->loop) + (uint64_t)gw_runtime_config(s->rt)->shutdown_timeout;
    uv_timer_start(&s->drain, drain_tick, 0, 20);
}

/* SIGHUP: the certificate and key read again (rotation: new connections
 * get them, open ones keep theirs); on an error the ones in use stay. */
static void reload_tls(struct gw_server *s, const struct gw_config *cfg) {
    char err[512];
    if (!cfg->web_enabled || !s->tls != !cfg->tls_cert[0]) {
        if (cfg->web_enabled)
            gw_log(GW_LOG_WARNING, "reload: turning TLS %s needs a restart: not applied",
                   s->tls ? "off" : "on");
        return;
    }
    if (!s->tls) return;
    if (gw_tls_reload(s->tls, cfg->tls_cert, cfg->tls_key, cfg->tls_min_version, err, sizeof err) != GW_OK)
        gw_log(GW_LOG_ERROR, "reload: %s; still serving the certificate loaded before", err);
    else
        gw_log(GW_LOG_NOTICE, "reload: TLS certificate and key read again from %s and %s", cfg->tls_cert,
               cfg->tls_key);
}

static void on_signal(uv_signal_t *h, int signum) {
    struct gw_server *s = h->data;
    if (signum == SIGHUP) {
        gw_log(GW_LOG_NOTICE, "SIGHUP: reloading the config, actions, middleware and routes");
        int rc = gw_runtime_reload(s->rt);
        /* The caps are the one live limit kept outside the config. */
        const struct gw_config *cfg = gw_runtime_config(s->rt);
        gw_conncap_init(cfg->max_connections, cfg->max_connections_per_ip);
        if (rc == GW_OK) reload_tls(s, cfg);
        if (rc == GW_OK) gw_log(GW_LOG_NOTICE, "reload done");
        return;
    }
    start_shutdown(s);
}

int gw_server_run(struct gw_server *s) {
    uv_run(s->loop, UV_RUN_DEFAULT);
    if (s->ctx) lws_context_destroy(s->ctx);
    if (s->socket) gw_socket_free(s->socket);
    gw_http_free(s->http);
    gw_http_free(s->metrics_http);
    gw_http_free(s->redirect_http);
    gw_ws_free(s->ws);
    gw_tls_free(s->tls);
    if (s->own_socket_fd) close(s->socket_fd);
    free(s);
    return 0;
}
