/* See gw_server.h. Shutdown order: mark the runtime as shutting down (new
 * actions get 503), close the listeners, wait for in-flight calls up to
 * general.shutdownTimeout, destroy the lws context, let the loop finish. */
#include "gw_server.h"
#include "gw.h"
#include "gw_call.h"
#include "gw_http.h"
#include "gw_lib.h"
#include "gw_log.h"

#include <errno.h>
#include <libwebsockets.h>
#include <lauxlib.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


struct gw_server {
    uv_loop_t *loop;
    struct gw_lua *g;
    struct lws_context *ctx;
    struct lws_protocols protocols[2];
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    double drain_started;
    int stopping;
};

static void lws_emit(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    gw_log(level == LLL_ERR ? GW_LOG_ERROR : GW_LOG_WARNING, "lws: %.*s", (int)n, line);
}

/* Bind a throwaway socket to report "address in use" precisely; lws only
 * says that it failed. */
static int probe_listen(const char *host, int port, int share, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *ai = NULL;
    char ps[16];
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0) {
        gw_fmt(err, errlen, "servers.web.host: \"%s\" is not a numeric IP address", host);
        return GW_ERR;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1, rc = GW_OK;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (share) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        gw_fmt(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        rc = GW_ERR;
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return rc;
}

static void on_signal(uv_signal_t *h, int signum);

struct gw_server *gw_server_new(uv_loop_t *loop, struct gw_lua *g, int share_port,
                                int print_listening, char *err, size_t errlen) {
    const struct gw_config *cfg = gw_lua_config(g);
    struct gw_server *s = calloc(1, sizeof *s);
    if (!s) gw_panic("out of memory");
    s->loop = loop;
    s->g = g;

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
    gw_http_init(g);
    s->protocols[0].name = "http";
    s->protocols[0].callback = gw_http_callback;
    s->protocols[0].per_session_data_size = gw_http_session_size();

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *foreign[1] = {loop};
    info.foreign_loops = foreign;
    info.options = LWS_SERVER_OPTION_LIBUV;
    if (share_port) info.options |= LWS_SERVER_OPTION_ALLOW_LISTEN_SHARE;
    if (!strchr(cfg->web_host, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.protocols = s->protocols;
    info.port = cfg->web_enabled ? cfg->web_port : CONTEXT_PORT_NO_LISTEN;
    info.iface = cfg->web_host;
    info.max_http_header_data = 16384;
    info.keepalive_timeout = 60;
    info.timeout_secs = 30;
    info.user = s;

    if (cfg->web_enabled && probe_listen(cfg->web_host, cfg->web_port, share_port, err, errlen) != GW_OK)
        goto fail;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        gw_fmt(err, errlen, "cannot start the web server on %s:%d", cfg->web_host, cfg->web_port);
        goto fail;
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

    if (print_listening && cfg->web_enabled) {
        int port = lws_get_vhost_listen_port(lws_get_vhost_by_name(s->ctx, "default"));
        const char *fmt = strchr(cfg->web_host, ':') ? "listening web http://[%s]:%d\n"
                                                     : "listening web http://%s:%d\n";
        printf(fmt, cfg->web_host, port);
        fflush(stdout);
        gw_log(GW_LOG_NOTICE, "web server listening on %s port %d", cfg->web_host, port);
    }
    return s;
fail:
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
    gw_loop_shutdown(); /* timers nobody is waiting for any more */
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
}

static void drain_tick(uv_timer_t *h) {
    struct gw_server *s = h->data;
    long limit = gw_lua_config(s->g)->shutdown_timeout;
    if (gw_call_count() == 0 || gw_now_ms() - s->drain_started >= (double)limit) {
        if (gw_call_count())
            gw_log(GW_LOG_WARNING, "shutdownTimeout reached with %d actions still running", gw_call_count());
        finish_shutdown(s);
    }
}

static void start_shutdown(struct gw_server *s) {
    if (s->stopping) return;
    s->stopping = 1;
    gw_log(GW_LOG_NOTICE, "shutting down: waiting for %d in-flight actions", gw_call_count());
    lua_State *L = gw_lua_state(s->g);
    gw_lua_push_runtime(s->g, "shutdown");
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        gw_log(GW_LOG_ERROR, "runtime.shutdown: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lws_context_deprecate(s->ctx, NULL); /* closes the listeners only */
    s->drain_started = gw_now_ms();
    uv_timer_start(&s->drain, drain_tick, 0, 20);
}

static void on_signal(uv_signal_t *h, int signum) {
    struct gw_server *s = h->data;
    if (signum == SIGHUP) {
        gw_log(GW_LOG_NOTICE, "SIGHUP: reloading actions, middleware and routes");
        if (gw_lua_reload(s->g) == GW_OK) gw_log(GW_LOG_NOTICE, "reload done");
        return;
    }
    start_shutdown(s);
}

int gw_server_run(struct gw_server *s) {
    uv_run(s->loop, UV_RUN_DEFAULT);
    if (s->ctx) lws_context_destroy(s->ctx);
    free(s);
    return 0;
}
