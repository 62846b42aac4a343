/* Command line (SPEC §1): parse flags, load config and actions, then run
 * one server process, or a master that forks 'workers' of them sharing the
 * listeners with SO_REUSEPORT. */
#include "gw.h"
#include "gw_config.h"
#include "gw_listen.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_server.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: gateway [--config FILE] [--host ADDR] [--port N] [--workers N]\n"
            "               [--redis URL] [--log-level LEVEL] [--check] [--version] [--help]\n"
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
            "(flags beat the environment, which beats the config file).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi) return GW_ERR;
    *out = (int)v;
    return GW_OK;
}

static int run_worker(const char *config, const struct gw_config_overrides *ov, int web_fd,
                      int socket_fd, int print_listening) {
    char err[1024];
    struct gw_config cfg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct gw_lua *g = gw_lua_new(&loop, config, ov, &cfg, err, sizeof err);
    if (!g) {
        fprintf(stderr, "gateway: %s\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    struct gw_server *s = gw_server_new(&loop, g, web_fd, socket_fd, print_listening, err, sizeof err);
    if (!s) {
        fprintf(stderr, "gateway: %s\n", err);
        gw_lua_free(g);
        uv_loop_close(&loop);
        return 1;
    }
    int rc = gw_server_run(s);
    gw_lua_free(g);
    uv_loop_close(&loop);
    return rc;
}

static volatile sig_atomic_t master_signal;
static void master_on_signal(int sig) { master_signal = sig; }

/* Open the listener, fork 'n' workers that all accept on it, forward
 * SIGTERM/SIGINT/SIGHUP, restart a worker that dies unexpectedly, and exit
 * when all have stopped after a shutdown. */
static int run_master(int n, const char *config, struct gw_config_overrides *ov,
                      const struct gw_config *cfg) {
    char err[512];
    int web_fd = -1, socket_fd = -1, stopping = 0, status = 0, alive = 0, printed = 0;
    if ((cfg->web_enabled && (web_fd = gw_listen_open(cfg->web_host, cfg->web_port, err, sizeof err)) < 0) ||
        (cfg->socket_enabled &&
         (socket_fd = gw_listen_open(cfg->socket_host, cfg->socket_port, err, sizeof err)) < 0)) {
        fprintf(stderr, "gateway: %s\n", err);
        if (web_fd >= 0) close(web_fd);
        return 1;
    }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    pid_t master = getpid();

    struct sigaction sa = {0};
    sa.sa_handler = master_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    for (;;) {
        for (int i = 0; i < n && !stopping; i++) {
            if (pids[i]) continue;
            pid_t pid = fork();
            if (pid == 0) {
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                signal(SIGHUP, SIG_DFL);
                /* A master killed outright (SIGKILL, OOM killer) cannot forward a
                 * shutdown: have the kernel send it, so no worker keeps serving
                 * orphaned. A master already gone before this line is caught by
                 * getppid(). */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != master) exit(0);
                exit(run_worker(config, ov, web_fd, socket_fd, !printed));
            }
            if (pid < 0) {
                fprintf(stderr, "gateway: fork: %s\n", strerror(errno));
                return 1;
            }
            pids[i] = pid;
            alive++;
            printed = 1;
        }
        if (master_signal) {
            int sig = master_signal;
            master_signal = 0;
            if (sig != SIGHUP) stopping = 1;
            for (int i = 0; i < n; i++)
                if (pids[i]) kill(pids[i], sig);
        }
        if (stopping && alive == 0) break;
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (pids[i] != pid) continue;
            pids[i] = 0;
            alive--;
            if (!stopping) {
                gw_log(GW_LOG_ERROR, "worker %d (pid %d) exited with status %d; restarting", i,
                       (int)pid, WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws));
                if (WIFEXITED(ws) && WEXITSTATUS(ws) == 1) { /* startup error: do not loop */
                    stopping = 1;
                    status = 1;
                    for (int k = 0; k < n; k++)
                        if (pids[k]) kill(pids[k], SIGTERM);
                }
                sleep(0);
            }
        }
    }
    free(pids);
    if (web_fd >= 0) close(web_fd);
    if (socket_fd >= 0) close(socket_fd);
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
    struct gw_lua *g = gw_lua_new(&loop, config, &ov, &cfg, err, sizeof err);
    if (!g) {
        fprintf(stderr, "gateway: %s\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    if (check) {
        printf("config %s: ok\n", config ? config : "(defaults)");
        gw_lua_print_summary(g);
        gw_lua_free(g);
        uv_loop_close(&loop);
        return 0;
    }
    if (cfg.workers <= 1) {
        struct gw_server *s = gw_server_new(&loop, g, -1, -1, 1, err, sizeof err);
        if (!s) {
            fprintf(stderr, "gateway: %s\n", err);
            gw_lua_free(g);
            uv_loop_close(&loop);
            return 1;
        }
        int rc = gw_server_run(s);
        gw_lua_free(g);
        uv_loop_close(&loop);
        return rc;
    }
    gw_lua_free(g);
    uv_loop_close(&loop);
    return run_master(cfg.workers, config, &ov, &cfg);
}
