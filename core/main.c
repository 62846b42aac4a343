/* Command line (SPEC §1): parse flags, load config and actions, then run
 * one server process, or a master that forks 'workers' of them, each with
 * listening sockets of its own in a SO_REUSEPORT group (one shared socket
 * where SO_REUSEPORT is unavailable), and restarts those that crash. */
#include "base/gw.h"
#include "vm/config.h"
#include "net/listen.h"
#include "base/log.h"
#include "runtime/runtime.h"
#include "runtime/cli.h"
#include "net/server.h"
#include "net/tls.h"
#include "base/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: gateway [--config FILE] [--host ADDR] [--port N] [--workers N]\n"
            "               [--redis URL] [--log-level LEVEL] [--check] [--version] [--help]\n"
            "       gateway generate action|middleware|handler|task NAME [--dir DIR]\n"
            "       gateway new DIR   create a project in DIR (gateway.lua, actions/, ...)\n"
            "       gateway openapi [--config FILE]   print the OpenAPI 3 document (JSON)\n"
            "\n"
            "  --config FILE     config file (default: ./gateway.lua if present)\n"
            "  --host ADDR       web listener address (servers.web.host)\n"
            "  --port N          web listener port, 0 picks a free one (servers.web.port)\n"
            "  --workers N       processes sharing the listeners (workers)\n"
            "  --redis URL       Redis URL (redis.url)\n"
            "  --log-level L     debug, info, notice, warning, error or crit\n"
            "  --check           load config, actions, middleware and routes, then exit\n"
            "\n"
            "Environment: GATEWAY_PORT, GATEWAY_REDIS_URL, GATEWAY_LOG_LEVEL\n"
            "(flags beat the environment, which beats the config file);\n"
            "GATEWAY_LUA_DIR: the Lua runtime's folder (see man gateway).\n");
}

#ifndef GW_LUA_DIR
#define GW_LUA_DIR "lua"
#endif

/* `gateway generate`'s file system, for lua/gateway/generate.lua: what plain
 * Lua lacks. fs.exists(path) -> bool */
static int fs_exists(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

/* fs.mkdir(path) -> true | nil, err: the folder and its parents (mkdir -p). */
static int fs_mkdir(lua_State *L) {
    char path[4096];
    const char *arg = luaL_checkstring(L, 1);
    if (gw_fmt(path, sizeof path, "%s", arg) == NULL || strlen(arg) >= sizeof path)
        return luaL_error(L, "path too long");
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            lua_pushnil(L);
            lua_pushfstring(L, "cannot create %s: %s", path, strerror(errno));
            return 2;
        }
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s is not a folder", path);
            return 2;
        }
        *p = c;
        if (c == '\0') break;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.create(path, text) -> true | nil, err: a new file; one that exists is
 * never overwritten (O_EXCL). */
static int fs_create(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot create %s: %s", path, strerror(errno));
        return 2;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            lua_pushnil(L);
            lua_pushfstring(L, "cannot write %s: %s", path, strerror(errno));
            return 2;
        }
        off += (size_t)n;
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* [-0, +1] generate(argc, argv): require("gateway.generate").main(args, fs, dir). */
static int generate_main(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = lua_touserdata(L, 2);
    const char *dir = getenv("GATEWAY_LUA_DIR");
    if (!dir || !*dir) dir = GW_LUA_DIR;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gateway.generate");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    static const luaL_Reg fs[] = {{"exists", fs_exists}, {"mkdir", fs_mkdir}, {"create", fs_create}, {NULL, NULL}};
    luaL_newlib(L, fs);
    lua_pushstring(L, dir);
    lua_call(L, 3, 1);
    return 1;
}

/* gateway generate KIND NAME [--dir DIR] (lua/gateway/generate.lua). */
static int run_generate(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "gateway: not enough memory\n");
        return 1;
    }
    lua_pushcfunction(L, generate_main);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int rc = 1;
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) fprintf(stderr, "gateway: generate: %s\n", lua_tostring(L, -1));
    else rc = (int)lua_tointeger(L, -1);
    lua_close(L);
    return rc;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi) return GW_ERR;
    *out = (int)v;
    return GW_OK;
}

/* A listener as the master prepared it for its workers. */
struct listener {
    const char *host;
    int port;      /* the real one: port 0 resolved by the master */
    int fd;        /* -1: not enabled */
    int reuseport; /* 1: 'fd' only holds the address; each worker opens its own */
};

/* The listening fd a worker serves on: its own in the SO_REUSEPORT group,
 * or the one the master shares; -1 when disabled or on error. */
static int worker_listen(const struct listener *l, char *err, size_t errlen) {
    if (l->fd < 0) return -1;
    if (!l->reuseport) return l->fd;
    return gw_listen_open_reuseport(l->host, l->port, err, errlen);
}

static int run_worker(const char *config, const struct gw_config_overrides *ov,
                      const struct listener *web, const struct listener *sock,
                      const struct listener *metrics, const struct listener *redirect,
                      int print_listening) {
    char err[1024];
    struct gw_config cfg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* The master's reserving sockets are no business of a worker's. */
    if (web->reuseport) close(web->fd);
    if (sock->reuseport) close(sock->fd);
    if (metrics->reuseport) close(metrics->fd);
    if (redirect->reuseport) close(redirect->fd);
    struct gw_runtime *rt = gw_runtime_new(&loop, config, ov, &cfg, err, sizeof err);
    if (!rt) {
        fprintf(stderr, "gateway: %s\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    /* Listen only once loaded: the kernel routes connections to a socket
     * as soon as it listens. */
    struct gw_server *s = NULL;
    int web_fd = -1, socket_fd = -1, metrics_fd = -1, redirect_fd = -1;
    if ((web->fd < 0 || (web_fd = worker_listen(web, err, sizeof err)) >= 0) &&
        (sock->fd < 0 || (socket_fd = worker_listen(sock, err, sizeof err)) >= 0) &&
        (metrics->fd < 0 || (metrics_fd = worker_listen(metrics, err, sizeof err)) >= 0) &&
        (redirect->fd < 0 || (redirect_fd = worker_listen(redirect, err, sizeof err)) >= 0))
        s = gw_server_new(&loop, rt, web_fd, socket_fd, metrics_fd, redirect_fd, print_listening, err,
                          sizeof err);
    if (!s) {
        fprintf(stderr, "gateway: %s\n", err);
        gw_runtime_free(rt);
        uv_loop_close(&loop);
        return 1;
    }
    int rc = gw_server_run(s);
    gw_runtime_free(rt);
    uv_loop_close(&loop);
    return rc;
}

static int master_listen(struct listener *l, const char *host, int port, char *err, size_t errlen) {
    l->host = host;
    if ((l->fd = gw_listen_reserve(host, port, &l->reuseport, err, errlen)) < 0) return GW_ERR;
    l->port = gw_listen_port(l->fd);
    if (l->reuseport)
        gw_log(GW_LOG_INFO, "each worker listens on %s port %d with a socket of its own (SO_REUSEPORT)",
               host, l->port);
    else
        gw_log(GW_LOG_WARNING, "%s: the workers share one listening socket on %s port %d", err, host,
               l->port);
    return GW_OK;
}

/* A crashed worker is forked again after a delay that doubles from
 * RESTART_MIN_MS to RESTART_MAX_MS while it keeps crashing, and starts over
 * once a worker has lived RESTART_RESET_MS. */
#define RESTART_MIN_MS 100
#define RESTART_MAX_MS 5000
#define RESTART_RESET_MS 10000

struct worker {
    pid_t pid;         /* 0: not running */
    double started;    /* gw_now_ms() at its fork */
    double restart_at; /* when to fork it again */
    int delay_ms;      /* the last restart delay; 0 before the first */
};

static void schedule_restart(struct worker *w, double now) {
    if (w->delay_ms == 0 || now - w->started >= RESTART_RESET_MS) w->delay_ms = RESTART_MIN_MS;
    else w->delay_ms = w->delay_ms * 2 < RESTART_MAX_MS ? w->delay_ms * 2 : RESTART_MAX_MS;
    w->restart_at = now + w->delay_ms;
}

static void signal_workers(const struct worker *w, int n, int sig) {
    for (int i = 0; i < n; i++)
        if (w[i].pid) kill(w[i].pid, sig);
}

/* Reserve the listeners, fork 'n' workers, forward SIGTERM/SIGINT/SIGHUP,
 * restart a worker that dies unexpectedly (with a backoff), and exit when
 * all have stopped after a shutdown. Signals are blocked and taken with
 * sigtimedwait(), so none can slip in between a check and the wait. */
static int run_master(int n, const char *config, struct gw_config_overrides *ov,
                      const struct gw_config *cfg) {
    char err[512];
    struct listener web = {NULL, 0, -1, 0}, sock = {NULL, 0, -1, 0}, metrics = {NULL, 0, -1, 0},
                    redirect = {NULL, 0, -1, 0};
    if ((cfg->web_enabled && master_listen(&web, cfg->web_host, cfg->web_port, err, sizeof err) != GW_OK) ||
        (cfg->socket_enabled &&
         master_listen(&sock, cfg->socket_host, cfg->socket_port, err, sizeof err) != GW_OK) ||
        (cfg->web_enabled && cfg->metrics_port >= 0 &&
         master_listen(&metrics, cfg->metrics_host, cfg->metrics_port, err, sizeof err) != GW_OK) ||
        (cfg->web_enabled && cfg->tls_cert[0] && cfg->tls_redirect_port >= 0 &&
         master_listen(&redirect, cfg->web_host, cfg->tls_redirect_port, err, sizeof err) != GW_OK)) {
        fprintf(stderr, "gateway: %s\n", err);
        if (web.fd >= 0) close(web.fd);
        if (sock.fd >= 0) close(sock.fd);
        if (metrics.fd >= 0) close(metrics.fd);
        return 1;
    }
    struct worker *w = calloc((size_t)n, sizeof *w);
    if (!w) gw_panic("out of memory");
    /* The restart count, in a page the workers share, so each worker's
     * /metrics shows the master's count as it is now (base/metrics.h). */
    void *page = mmap(NULL, sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) gw_metrics.worker_restarts = page;
    pid_t master = getpid();
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);

    int stopping = 0, status = 0, alive = 0, printed = 0;
    for (;;) {
        double now = gw_now_ms(), next = -1;
        for (int i = 0; i < n && !stopping; i++) {
            if (w[i].pid) continue;
            if (w[i].restart_at > now) {
                if (next < 0 || w[i].restart_at < next) next = w[i].restart_at;
                continue;
            }
            pid_t pid = fork();
            if (pid == 0) {
                /* A SIGHUP forwarded while this worker still loads would kill it:
                 * ignore it until the server takes it over. The worker loads the
                 * files as they are now anyway. */
                signal(SIGHUP, SIG_IGN);
                sigprocmask(SIG_SETMASK, &old, NULL);
                /* A master killed outright (SIGKILL, OOM killer) cannot forward a
                 * shutdown: have the kernel send it, so no worker keeps serving
                 * orphaned. A master already gone before this line is caught by
                 * getppid(). */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != master) exit(0);
                gw_metrics.worker = i;
                exit(run_worker(config, ov, &web, &sock, &metrics, &redirect, !printed));
            }
            if (pid < 0) {
                w[i].started = now; /* so that failing again doubles the delay */
                schedule_restart(&w[i], now);
                gw_log(GW_LOG_ERROR, "fork: %s; trying worker %d again in %d ms", strerror(errno), i,
                       w[i].delay_ms);
                continue;
            }
            w[i].pid = pid;
            w[i].started = now;
            alive++;
            printed = 1;
            gw_log(GW_LOG_INFO, "worker %d started (pid %d)", i, (int)pid);
        }
        if (stopping && alive == 0) break;

        struct timespec ts, *timeout = NULL;
        if (next >= 0) {
            double ms = next - gw_now_ms();
            if (ms < 0) ms = 0;
            ts.tv_sec = (time_t)(ms / 1000);
            ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
            timeout = &ts;
        }
        int sig = sigtimedwait(&set, NULL, timeout);
        if (sig == SIGHUP) {
            signal_workers(w, n, SIGHUP);
        } else if (sig == SIGTERM || sig == SIGINT) {
            stopping = 1;
            signal_workers(w, n, sig);
        }

        int ws;
        pid_t pid;
        while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
            for (int i = 0; i < n; i++) {
                if (w[i].pid != pid) continue;
                w[i].pid = 0;
                alive--;
                if (stopping) break;
                int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
                if (WIFEXITED(ws) && code == 1) { /* startup error: do not loop */
                    gw_log(GW_LOG_ERROR, "worker %d (pid %d) exited with status 1; stopping", i,
                           (int)pid);
                    stopping = 1;
                    status = 1;
                    signal_workers(w, n, SIGTERM);
                    break;
                }
                schedule_restart(&w[i], gw_now_ms());
                if (gw_metrics.worker_restarts) (*gw_metrics.worker_restarts)++;
                gw_log(GW_LOG_ERROR, "worker %d (pid %d) exited with status %d; restarting in %d ms", i,
                       (int)pid, code, w[i].delay_ms);
            }
        }
    }
    free(w);
    if (gw_metrics.worker_restarts) munmap((void *)gw_metrics.worker_restarts, sizeof(long));
    gw_metrics.worker_restarts = NULL;
    if (web.fd >= 0) close(web.fd);
    if (sock.fd >= 0) close(sock.fd);
    if (metrics.fd >= 0) close(metrics.fd);
    if (redirect.fd >= 0) close(redirect.fd);
    return status;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},   {"workers", required_argument, NULL, 'w'},
        {"redis", required_argument, NULL, 'r'},  {"log-level", required_argument, NULL, 'l'},
        {"check", no_argument, NULL, 'k'},        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    struct gw_config_overrides ov = {NULL, -1, -1, NULL, NULL};
    const char *config = NULL;
    int check = 0, c;

    if (argc >= 2 && strcmp(argv[1], "generate") == 0) return run_generate(argc - 2, argv + 2);
    /* Commands: the first argument names one (gateway new DIR). */
    if (argc >= 2 && strcmp(argv[1], "new") == 0) return gw_cli_run("gateway.new", argc - 2, argv + 2);

    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'H': ov.host = optarg; break;
        case 'p':
            if (parse_int(optarg, 0, 65535, &ov.port) != GW_OK) {
                fprintf(stderr, "gateway: --port needs a number from 0 to 65535, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'w':
            if (parse_int(optarg, 1, 256, &ov.workers) != GW_OK) {
                fprintf(stderr, "gateway: --workers needs a number from 1 to 256, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'r': ov.redis_url = optarg; break;
        case 'l':
            if (gw_log_level_parse(optarg) < 0) {
                fprintf(stderr, "gateway: --log-level must be debug, info, notice, warning, error or crit\n");
                return 2;
            }
            ov.log_level = optarg;
            break;
        case 'k': check = 1; break;
        case 'v': printf("gateway %s\n", GW_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "gateway: unknown or incomplete option \"%s\"\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    /* `gateway openapi`: load as --check does, print the document instead. */
    int openapi = 0;
    if (optind < argc && strcmp(argv[optind], "openapi") == 0) {
        openapi = 1;
        optind++;
    }
    if (optind < argc) {
        fprintf(stderr, "gateway: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!config && access("gateway.lua", F_OK) == 0) config = "gateway.lua";

    /* Load once in this process: --check, startup errors before forking,
     * and the effective worker count. */
    char err[1024];
    struct gw_config cfg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct gw_runtime *rt = gw_runtime_new(&loop, config, &ov, &cfg, err, sizeof err);
    if (!rt) {
        fprintf(stderr, "gateway: %s\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    if (openapi) {
        int rc = gw_runtime_print_openapi(rt) == GW_OK ? 0 : 1;
        gw_runtime_free(rt);
        uv_loop_close(&loop);
        return rc;
    }
    /* The certificate and key, read once here so that --check and a
     * startup (before any fork) name a bad file; each process then loads
     * its own context. */
    if (cfg.web_enabled && cfg.tls_cert[0]) {
        struct gw_tls *tls = gw_tls_new(cfg.tls_cert, cfg.tls_key, cfg.tls_min_version, err, sizeof err);
        if (!tls) {
            fprintf(stderr, "gateway: %s\n", err);
            gw_runtime_free(rt);
            uv_loop_close(&loop);
            return 1;
        }
        gw_tls_free(tls);
    }
    if (check) {
        printf("config %s: ok\n", config ? config : "(defaults)");
        printf("lua %s\n", gw_runtime_lua_dir());
        gw_runtime_print_summary(rt);
        gw_runtime_free(rt);
        uv_loop_close(&loop);
        return 0;
    }
    if (cfg.workers <= 1) {
        struct gw_server *s = gw_server_new(&loop, rt, -1, -1, -1, -1, 1, err, sizeof err);
        if (!s) {
            fprintf(stderr, "gateway: %s\n", err);
            gw_runtime_free(rt);
            uv_loop_close(&loop);
            return 1;
        }
        int rc = gw_server_run(s);
        gw_runtime_free(rt);
        uv_loop_close(&loop);
        return rc;
    }
    gw_runtime_free(rt);
    uv_loop_close(&loop);
    return run_master(cfg.workers, config, &ov, &cfg);
}
