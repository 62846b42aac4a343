#!/usr/bin/env bash
# HTTP benchmark: the gateway's GET /api/randomNumber against nginx + Lua (OpenResty's
# lua-nginx-module) serving the same JSON, one worker each, over loopback, with wrk.
#
# Usage: bench/http.sh            (from any directory)
#
# Environment:
#   BENCH_DURATION=10s       length of each measured wrk run (wrk syntax: 10, 10s, 2m)
#   BENCH_WARMUP=1s          unmeasured wrk run (50 connections) before each server's loads; 0 = none
#   BENCH_TARGETS="gateway nginx"   which servers to measure (either or both)
#   BENCH_SKIP_BUILD=1       use the existing build/gateway instead of running `make all`
#   BENCH_PIN=1              pin the server to CPU 0 and wrk to the other CPUs (taskset)
#   BENCH_VERBOSE=1          also print wrk's own report for every run
#   BENCH_START_TIMEOUT=20   seconds to wait for a server to start listening
#
# See bench/README.md for what is measured and how to read the figures.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-1s}
TARGETS=${BENCH_TARGETS:-gateway nginx}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
PIN=${BENCH_PIN:-0}
VERBOSE=${BENCH_VERBOSE:-0}
START_TIMEOUT=${BENCH_START_TIMEOUT:-20}

GATEWAY_BIN=$ROOT/build/gateway
EXAMPLE_CONFIG=$ROOT/gateway.lua.example
NGINX_TEMPLATE=$BENCH_DIR/nginx/nginx.conf.in
WRK_SCRIPT=$BENCH_DIR/wrk-report.lua
PATH_UNDER_TEST=/api/randomNumber
APT_PACKAGES=(wrk nginx libnginx-mod-http-lua)

# name | connections | threads
LOADS=("c50|50|2" "c1|1|1")

want() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- arguments and durations

[[ $# -eq 0 ]] || die "no arguments expected (configure with BENCH_* environment variables)"
for t in $TARGETS; do
  [[ $t == gateway || $t == nginx ]] || die "unknown target '$t' in BENCH_TARGETS (gateway, nginx)"
done
[[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "BENCH_START_TIMEOUT must be whole seconds"
DURATION_S=$(duration_secs "$DURATION")
WARMUP_S=0
[[ $WARMUP == 0 || $WARMUP == 0s ]] || WARMUP_S=$(duration_secs "$WARMUP")

# ---------------------------------------------------------------- dependencies

find_nginx_module() { # file name -> absolute path, or nothing
  local name=$1 dir conf rel
  for dir in /usr/lib/nginx/modules /usr/share/nginx/modules /usr/lib64/nginx/modules \
             /usr/local/lib/nginx/modules /etc/nginx/modules; do
    if [[ -f $dir/$name ]]; then echo "$dir/$name"; return 0; fi
  done
  # Debian's modules-available/*.conf name the module relative to nginx's prefix.
  for conf in /usr/share/nginx/modules-available/*.conf /etc/nginx/modules-enabled/*.conf; do
    [[ -f $conf ]] || continue
    rel=$(sed -n "s#^[[:space:]]*load_module[[:space:]]\{1,\}\"\{0,1\}\([^\";]*$name\)\"\{0,1\};.*#\1#p" "$conf" | head -n1)
    [[ -n $rel ]] || continue
    [[ $rel == /* ]] || rel=/usr/share/nginx/$rel
    if [[ -f $rel ]]; then echo "$rel"; return 0; fi
  done
  return 0
}

nginx_bin() { # nginx is in /usr/sbin, which a normal user's PATH may lack
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

missing_deps() {
  command -v wrk >/dev/null 2>&1 || echo wrk
  if want nginx; then
    [[ -n $(nginx_bin) ]] || echo nginx
    [[ -n $(find_nginx_module ngx_http_lua_module.so) && -n $(find_nginx_module ndk_http_module.so) ]] ||
      echo libnginx-mod-http-lua
  fi
  return 0
}

ensure_deps() {
  local missing
  missing=$(missing_deps | tr '\n' ' ')
  [[ -z ${missing// /} ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "missing: $missing"
    echo "Install the benchmark tools first:"
    echo "  sudo apt-get update && sudo apt-get install -y ${APT_PACKAGES[*]}"
    exit 1
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing $missing and no apt-get; install ${APT_PACKAGES[*]} by hand"
  log "installing ${APT_PACKAGES[*]} (missing: $missing)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PACKAGES[@]}"
  missing=$(missing_deps | tr '\n' ' ')
  [[ -z ${missing// /} ]] || die "still missing after apt-get install: $missing"
}

ensure_deps
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"
NGINX_BIN=$(nginx_bin)

# ---------------------------------------------------------------- process bookkeeping

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")
GATEWAY_PID=
NGINX_PID=
NGINX_WORKERS=()
WRK_PID=

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [[ -n $WRK_PID ]]; then stop_pid "$WRK_PID"; WRK_PID=; fi
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; GATEWAY_PID=; fi
  if [[ -n $NGINX_PID ]]; then stop_pid "$NGINX_PID"; NGINX_PID=; fi
  for pid in "${NGINX_WORKERS[@]}"; do   # orphaned workers if the master had to be killed
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return 0
  fi
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! port_open "$p"; then echo "$p"; return 0; fi
  done
  die "could not find a free loopback port"
}

http_get() { # port path -> raw HTTP response (5 s limit)
  # shellcheck disable=SC2016  # $1 and $2 are expanded by the inner bash
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    cat <&3' _ "$1" "$2" 2>/dev/null || true
}

check_endpoint() { # name port
  local resp status
  resp=$(http_get "$2" "$PATH_UNDER_TEST" | tr -d '\r')
  status=$(head -n1 <<<"$resp")
  if [[ $status != "HTTP/1.1 200"* || $resp != *'"randomNumber"'* ]]; then
    printf '%s\n' "$resp" | head -n 20 >&2
    die "$1: GET $PATH_UNDER_TEST did not answer 200 with a randomNumber (status: ${status:-none})"
  fi
  if [[ $resp == *serverInformation* || $resp == *requesterInformation* ]]; then
    log "warning: $1 still sends response metadata; the comparison is not like for like"
    RES[$1.metadata]=1
  fi
  log "$1: GET $PATH_UNDER_TEST -> ${status#HTTP/1.1 }, body $(grep -m1 '{' <<<"$resp" | head -c 120)"
}

SERVER_CPU=()
WRK_CPU=()
if [[ $PIN == 1 ]]; then
  ncpu=$(nproc 2>/dev/null || echo 1)
  if command -v taskset >/dev/null 2>&1 && ((ncpu >= 2)); then
    SERVER_CPU=(taskset -c 0)
    WRK_CPU=(taskset -c "1-$((ncpu - 1))")
  else
    log "BENCH_PIN=1 needs taskset and at least 2 CPUs; not pinning"
  fi
fi

declare -A RES=()
SERVER_PID=   # the server under load, checked after every wrk run
SERVER_LOG=   # its log, shown when it dies

check_server_alive() { # name
  [[ -n $SERVER_PID ]] || return 0
  alive "$SERVER_PID" && return 0
  local pid=$SERVER_PID
  SERVER_PID=
  stop_pid "$pid"
  [[ $pid == "$GATEWAY_PID" ]] && GATEWAY_PID=
  [[ $pid == "$NGINX_PID" ]] && NGINX_PID=
  if [[ -n $SERVER_LOG && -s $SERVER_LOG ]]; then log "$1 log (last lines):"; tail -n 20 "$SERVER_LOG" >&2; fi
  die "$1 (pid $pid) died under load ($(exit_text "$STOP_RC"))"
}

run_wrk() { # server-name load-name connections threads port [warmup]
  local name=$1 load=$2 conns=$3 threads=$4 port=$5 warm=${6:-}
  local dur=$DURATION secs=$DURATION_S out line kv
  if [[ -n $warm ]]; then dur=$WARMUP; secs=$WARMUP_S; fi
  local url="http://127.0.0.1:$port$PATH_UNDER_TEST"
  if [[ -n $warm ]]; then
    log "$name: warm-up $dur, $conns connections"
  else
    log "$name: $dur, $conns connection(s), $threads thread(s)"
  fi
  # In the background so that a signal to this script is handled at once, not after the run.
  timeout "$((secs + 30))" "${WRK_CPU[@]}" wrk --latency -t "$threads" -c "$conns" \
    -d "$dur" --timeout 5s -s "$WRK_SCRIPT" "$url" >"$TMP/wrk.out" 2>&1 &
  WRK_PID=$!
  if ! wait "$WRK_PID"; then
    WRK_PID=
    cat "$TMP/wrk.out" >&2
    check_server_alive "$name"
    die "$name: wrk failed"
  fi
  WRK_PID=
  check_server_alive "$name"
  out=$(<"$TMP/wrk.out")
  [[ -n $warm ]] && return 0
  [[ $VERBOSE == 1 ]] && printf '%s\n' "$out" >&2
  line=$(grep -m1 '^BENCH_RESULT ' <<<"$out" || true)
  [[ -n $line ]] || { printf '%s\n' "$out" >&2; die "$name: no BENCH_RESULT line from wrk"; }
  for kv in ${line#BENCH_RESULT }; do RES[$name.$load.${kv%%=*}]=${kv#*=}; done
  local errs=$((RES[$name.$load.http_errors] + RES[$name.$load.connect_errors] + \
                RES[$name.$load.read_errors] + RES[$name.$load.write_errors] + RES[$name.$load.timeouts]))
  RES[$name.$load.errors]=$errs
  log "$name: ${RES[$name.$load.rps]} req/s, p50 ${RES[$name.$load.p50_us]} us, p99 ${RES[$name.$load.p99_us]} us, errors $errs"
  ((errs == 0)) || fail_later "$name, $load: $errs errors: $line"
}

run_loads() { # server-name port
  local spec load conns threads
  if ((WARMUP_S > 0)); then run_wrk "$1" warmup 50 2 "$2" warm; fi
  for spec in "${LOADS[@]}"; do
    IFS='|' read -r load conns threads <<<"$spec"
    run_wrk "$1" "$load" "$conns" "$threads" "$2"
  done
}

# ---------------------------------------------------------------- gateway

bench_gateway() {
  [[ -f $EXAMPLE_CONFIG ]] || die "$EXAMPLE_CONFIG not found"
  if [[ $SKIP_BUILD == 1 ]]; then
    log "BENCH_SKIP_BUILD=1: using the existing $GATEWAY_BIN"
  else
    log "building the release binary: make -C $ROOT all"
    make -C "$ROOT" all >&2
  fi
  [[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN was not built"

  # A private config: the example as the benchmarks run it (bench/lib.sh).
  local cfg=$TMP/gateway.lua out=$TMP/gateway.stdout err=$TMP/gateway.stderr
  write_example_config "$cfg"
  launch_gateway "$cfg" "$out" "$err" "${SERVER_CPU[@]}"
  local port=$GATEWAY_PORT
  log "gateway pid $GATEWAY_PID listening on 127.0.0.1:$port"
  SERVER_PID=$GATEWAY_PID SERVER_LOG=$err

  # If the gateway forks workers, the serving processes are its children.
  local pids=() kids=()
  mapfile -t kids < <(children_of "$GATEWAY_PID")
  if ((${#kids[@]} > 0)); then pids=("${kids[@]}"); else pids=("$GATEWAY_PID"); fi
  RES[gateway.procs]="${pids[*]}"
  local p idle=0
  for p in "${pids[@]}"; do idle=$((idle + $(status_kb "$p" VmRSS))); done
  RES[gateway.idle_kb]=$idle

  check_endpoint gateway "$port"
  run_loads gateway "$port"

  local hwm=0 total=0
  for p in "${pids[@]}"; do hwm=$((hwm + $(status_kb "$p" VmHWM))); done
  RES[gateway.hwm_kb]=$hwm
  if [[ ${pids[0]} != "$GATEWAY_PID" ]]; then total=$(($(status_kb "$GATEWAY_PID" VmHWM) + hwm)); else total=$hwm; fi
  RES[gateway.total_kb]=$total
  check_server_alive gateway
  SERVER_PID=

  local rc
  stop_pid "$GATEWAY_PID"
  rc=$STOP_RC
  GATEWAY_PID=
  check_clean_exit "$rc" "$err"
  RES[gateway.exit]=$rc
  if [[ -s $err ]]; then
    log "gateway stderr had $(wc -l <"$err") line(s) at warning level or above; last ones:"
    tail -n 5 "$err" >&2
  fi
}

# ---------------------------------------------------------------- nginx + Lua

bench_nginx() {
  local ndk lua prefix=$TMP/nginx port conf tries
  ndk=$(find_nginx_module ndk_http_module.so)
  lua=$(find_nginx_module ngx_http_lua_module.so)
  [[ -n $ndk && -n $lua ]] || die "nginx Lua modules not found (apt-get install -y libnginx-mod-http-lua)"
  mkdir -p "$prefix"/{client_body,proxy,fastcgi,uwsgi,scgi,logs}
  port=$(free_port)
  conf=$(<"$NGINX_TEMPLATE")
  conf=${conf//@PREFIX@/"$prefix"}
  conf=${conf//@PORT@/"$port"}
  conf=${conf//@NDK_MODULE@/"$ndk"}
  conf=${conf//@LUA_MODULE@/"$lua"}
  printf '%s\n' "$conf" >"$prefix/nginx.conf"

  log "starting nginx ($("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), modules $lua, $ndk)"
  "${SERVER_CPU[@]}" "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
    -g 'daemon off;' >"$prefix/stdout.log" 2>&1 &
  NGINX_PID=$!
  local workers=()
  for ((tries = START_TIMEOUT * 10; tries > 0; tries--)); do
    alive "$NGINX_PID" || break
    if port_open "$port"; then
      mapfile -t workers < <(children_of "$NGINX_PID")
      ((${#workers[@]} == 0)) || break
    fi
    sleep 0.1
  done
  if ((${#workers[@]} == 0)); then
    cat "$prefix/stdout.log" >&2 || true
    tail -n 20 "$prefix/error.log" >&2 || true
    die "nginx did not start listening on 127.0.0.1:$port within ${START_TIMEOUT}s"
  fi
  NGINX_WORKERS=("${workers[@]}")
  log "nginx master pid $NGINX_PID, worker pid(s) ${NGINX_WORKERS[*]}, listening on 127.0.0.1:$port"
  SERVER_PID=$NGINX_PID SERVER_LOG=$prefix/error.log

  local p idle=0
  for p in "${NGINX_WORKERS[@]}"; do idle=$((idle + $(status_kb "$p" VmRSS))); done
  RES[nginx.idle_kb]=$idle
  RES[nginx.procs]="${NGINX_WORKERS[*]}"

  check_endpoint "nginx+lua" "$port"
  run_loads nginx "$port"

  local hwm=0
  for p in "${NGINX_WORKERS[@]}"; do
    alive "$p" || die "the nginx worker $p died during the benchmark (see error.log)"
    hwm=$((hwm + $(status_kb "$p" VmHWM)))
  done
  SERVER_PID=
  RES[nginx.hwm_kb]=$hwm
  RES[nginx.total_kb]=$((hwm + $(status_kb "$NGINX_PID" VmHWM)))
  stop_pid "$NGINX_PID"
  NGINX_PID=
  if grep -qE '\[(error|crit|alert|emerg)\]' "$prefix/error.log" 2>/dev/null; then
    log "nginx error.log:"; tail -n 5 "$prefix/error.log" >&2
  fi
}

# ---------------------------------------------------------------- run

log "repo $ROOT, duration $DURATION per load, warm-up $WARMUP, targets: $TARGETS"
want gateway && bench_gateway
want nginx && bench_nginx

# ---------------------------------------------------------------- report

label() { case $1 in gateway) echo "gateway" ;; nginx) echo "nginx+lua" ;; esac; }
load_label() { case $1 in c50) echo "50 conns, 2 threads" ;; c1) echo "1 conn, 1 thread" ;; esac; }

echo
echo "## HTTP benchmark: GET $PATH_UNDER_TEST"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -srm); CPUs: $(nproc 2>/dev/null || echo ?)" \
  "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true))"
echo "- wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), keep-alive, $DURATION per load, warm-up $WARMUP," \
  "loopback, pinned: $([[ ${#SERVER_CPU[@]} -gt 0 ]] && echo "server CPU 0, wrk CPUs 1+" || echo no)"
if want gateway; then
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  dirty=
  if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then dirty=", uncommitted changes"; fi
  meta="metadata off"
  [[ -z ${RES[gateway.metadata]:-} ]] || meta="metadata ON (config not honoured; not like for like)"
  echo "- gateway: $rev$dirty, 1 worker, $meta, log level warning"
fi
want nginx && echo "- nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, access_log off, lua_code_cache on"
echo
echo "| server    | load                | req/s      | p50 (us) | p99 (us) | errors |"
echo "|-----------|---------------------|-----------:|---------:|---------:|-------:|"
for s in gateway nginx; do
  want "$s" || continue
  for spec in "${LOADS[@]}"; do
    load=${spec%%|*}
    printf '| %-9s | %-19s | %10s | %8s | %8s | %6s |\n' "$(label "$s")" "$(load_label "$load")" \
      "${RES[$s.$load.rps]}" "${RES[$s.$load.p50_us]}" "${RES[$s.$load.p99_us]}" "${RES[$s.$load.errors]}"
  done
done
echo
echo "| server    | idle RSS    | peak RSS (VmHWM) | processes measured |"
echo "|-----------|-------------|------------------|--------------------|"
if want gateway; then
  printf '| %-9s | %-11s | %-16s | %-18s |\n' gateway "$(mib "${RES[gateway.idle_kb]}")" \
    "$(mib "${RES[gateway.hwm_kb]}")" "pid ${RES[gateway.procs]}"
fi
if want nginx; then
  printf '| %-9s | %-11s | %-16s | %-18s |\n' "nginx+lua" "$(mib "${RES[nginx.idle_kb]}")" \
    "$(mib "${RES[nginx.hwm_kb]}")" "worker ${RES[nginx.procs]}"
fi
echo
if want nginx; then
  echo "nginx master + worker peak: $(mib "${RES[nginx.total_kb]}")"
fi
if want gateway && [[ ${RES[gateway.total_kb]} != "${RES[gateway.hwm_kb]}" ]]; then
  echo "gateway master + workers peak: $(mib "${RES[gateway.total_kb]}")"
fi
if want gateway && want nginx; then
  for spec in "${LOADS[@]}"; do
    load=${spec%%|*}
    awk -v g="${RES[gateway.$load.rps]}" -v n="${RES[nginx.$load.rps]}" -v l="$(load_label "$load")" \
      'BEGIN { printf "ratio gateway / nginx+lua req/s, %s: %.3g\n", l, (n > 0 ? g / n : 0) }'
  done
fi
if want gateway; then
  echo "gateway exit status after SIGTERM: ${RES[gateway.exit]}"
fi
finish
