#!/usr/bin/env bash
# WebSocket benchmark: the gateway's `randomNumber` action over ws://127.0.0.1:PORT/ws, driven
# by bench/wsload.c (one request outstanding per connection), plus the RSS cost of idle
# WebSocket connections.
#
# Usage: bench/ws.sh            (from any directory)
#
# Environment:
#   BENCH_DURATION=10s        length of each measured load (10, 10s, 2m)
#   BENCH_WARMUP=1s           unmeasured load (50 connections) before the measured ones; 0 = none
#   BENCH_CONNS="50 1"        connection counts of the measured loads, in that order
#   BENCH_IDLE_CONNS=10000    idle connections for the RSS-per-connection figure; 0 = skip
#   BENCH_IDLE_SETTLE=2       seconds to wait with the idle connections open before reading RSS
#   BENCH_OPEN_TIMEOUT=60     seconds wsload may take to open (upgrade) all its connections
#   BENCH_SKIP_BUILD=1        use the existing build/gateway instead of running `make all`
#   BENCH_PIN=1               pin the gateway to CPU 0 and wsload to the other CPUs (taskset)
#   BENCH_START_TIMEOUT=20    seconds to wait for the gateway to start listening
#
# wsload is compiled here (cc -O2, libc only) into build/bench/wsload when it is missing or
# older than bench/wsload.c. See bench/README.md for what is measured and how to read it.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-1s}
CONNS_LIST=${BENCH_CONNS:-50 1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-2}
OPEN_TIMEOUT=${BENCH_OPEN_TIMEOUT:-60}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
PIN=${BENCH_PIN:-0}
START_TIMEOUT=${BENCH_START_TIMEOUT:-20}

GATEWAY_BIN=$ROOT/build/gateway
EXAMPLE_CONFIG=$ROOT/gateway.lua.example
WSLOAD_SRC=$BENCH_DIR/wsload.c
WSLOAD_BIN=$ROOT/build/bench/wsload
WS_PATH=/ws
ACTION=randomNumber

# ---------------------------------------------------------------- arguments and durations

[[ $# -eq 0 ]] || die "no arguments expected (configure with BENCH_* environment variables)"
for v in START_TIMEOUT IDLE_CONNS IDLE_SETTLE OPEN_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
for n in $CONNS_LIST; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNS must list positive connection counts (got '$n')"
done
[[ -n ${CONNS_LIST// /} ]] || die "BENCH_CONNS is empty"
DURATION_S=$(duration_secs "$DURATION")
WARMUP_S=0
[[ $WARMUP == 0 || $WARMUP == 0s ]] || WARMUP_S=$(duration_secs "$WARMUP")

command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

# ---------------------------------------------------------------- file descriptor limit

# The gateway and wsload each hold one descriptor per connection; both inherit this limit.
max_conns=$IDLE_CONNS
for n in $CONNS_LIST; do ((n > max_conns)) && max_conns=$n; done
need_fds=$((max_conns + 512))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need_fds)); then
  die "$max_conns connections need an fd limit of at least $need_fds, but the hard limit is $hard" \
      "(lower BENCH_IDLE_CONNS, or raise the hard limit as root)"
fi
if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < need_fds)); then
  ulimit -n "$need_fds" || die "could not raise the fd limit to $need_fds (ulimit -n)"
fi

# ---------------------------------------------------------------- process bookkeeping

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-wsbench.XXXXXX")
GATEWAY_PID=
LOAD_PID=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID"; LOAD_PID=; fi
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; GATEWAY_PID=; fi
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

GW_PIDS=()   # the serving process(es): the gateway, or its workers if it forks
GW_ERR=

rss_kb() { # field -> sum over the serving processes
  local p total=0
  for p in "${GW_PIDS[@]}"; do total=$((total + $(status_kb "$p" "$1"))); done
  echo "$total"
}

check_gateway_alive() {
  [[ -n $GATEWAY_PID ]] || return 0
  alive "$GATEWAY_PID" && return 0
  local pid=$GATEWAY_PID
  GATEWAY_PID=
  stop_pid "$pid"
  if [[ -s $GW_ERR ]]; then log "gateway stderr (last lines):"; tail -n 20 "$GW_ERR" >&2; fi
  die "the gateway (pid $pid) died during the benchmark ($(exit_text "$STOP_RC"))"
}

LOAD_CPU=()
GW_CPU=()
if [[ $PIN == 1 ]]; then
  ncpu=$(nproc 2>/dev/null || echo 1)
  if command -v taskset >/dev/null 2>&1 && ((ncpu >= 2)); then
    GW_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c "1-$((ncpu - 1))")
  else
    log "BENCH_PIN=1 needs taskset and at least 2 CPUs; not pinning"
  fi
fi

declare -A RES=()

# ---------------------------------------------------------------- build

build() {
  if [[ $SKIP_BUILD == 1 ]]; then
    log "BENCH_SKIP_BUILD=1: using the existing $GATEWAY_BIN"
  else
    log "building the release binary: make -C $ROOT all"
    make -C "$ROOT" all >&2
  fi
  [[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN was not built"
  if [[ ! -x $WSLOAD_BIN || $WSLOAD_SRC -nt $WSLOAD_BIN ]]; then
    command -v cc >/dev/null 2>&1 || die "a C compiler (cc) is needed to build $WSLOAD_BIN"
    mkdir -p "$(dirname -- "$WSLOAD_BIN")"
    log "building $WSLOAD_BIN"
    cc -O2 -Wall -Wextra -o "$WSLOAD_BIN.tmp" "$WSLOAD_SRC"
    mv -f -- "$WSLOAD_BIN.tmp" "$WSLOAD_BIN"
  fi
}

# ---------------------------------------------------------------- gateway

start_gateway() {
  [[ -f $EXAMPLE_CONFIG ]] || die "$EXAMPLE_CONFIG not found"
  # A private config: the example as the benchmarks run it (bench/lib.sh), with the
  # WebSocket server on at $WS_PATH and room for every connection it opens.
  local cfg=$TMP/gateway.lua
  write_example_config "$cfg" "c.servers.websocket = c.servers.websocket or {}
c.servers.websocket.enabled = true
c.servers.websocket.path = \"$WS_PATH\"
c.general = c.general or {}
c.general.maxConnections = math.max(c.general.maxConnections or 0, $((max_conns + 64)))"
  GW_ERR=$TMP/gateway.stderr
  launch_gateway "$cfg" "$TMP/gateway.stdout" "$GW_ERR" "${GW_CPU[@]}"
  PORT=$GATEWAY_PORT
  local kids=()
  mapfile -t kids < <(children_of "$GATEWAY_PID")
  if ((${#kids[@]} > 0)); then GW_PIDS=("${kids[@]}"); else GW_PIDS=("$GATEWAY_PID"); fi
  log "gateway pid $GATEWAY_PID listening on 127.0.0.1:$PORT (measuring pid ${GW_PIDS[*]})"
}

# ---------------------------------------------------------------- wsload runs

# Run `wsload load` in the background (so that a signal to this script is handled at once),
# bounded by `timeout`. Sets LOAD_LINE to its WSLOAD_RESULT line; returns wsload's status.
LOAD_LINE=
run_wsload_load() { # conns seconds
  local conns=$1 secs=$2 rc=0
  LOAD_LINE=
  WSLOAD_ACTION=$ACTION WSLOAD_OPEN_TIMEOUT=$OPEN_TIMEOUT \
    timeout "$((secs + OPEN_TIMEOUT + 30))" "${LOAD_CPU[@]}" "$WSLOAD_BIN" load 127.0.0.1 "$PORT" \
    "$WS_PATH" "$conns" "$secs" >"$TMP/wsload.out" 2>"$TMP/wsload.err" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  LOAD_LINE=$(grep -m1 '^WSLOAD_RESULT ' "$TMP/wsload.out" || true)
  return "$rc"
}

check_ws() { # one connection, one second: the gateway must answer with status 200
  log "checking ws://127.0.0.1:$PORT$WS_PATH with {\"action\":\"$ACTION\",\"request_id\":K}"
  local rc=0
  run_wsload_load 1 1 || rc=$?
  check_gateway_alive
  if ((rc != 0)) || [[ -z $LOAD_LINE || $LOAD_LINE != *" errors=0 "* || $LOAD_LINE == *" messages=0 "* ]]; then
    cat "$TMP/wsload.out" "$TMP/wsload.err" >&2
    die "ws://127.0.0.1:$PORT$WS_PATH did not answer $ACTION with status 200 (wsload status $rc)"
  fi
  log "check: ${LOAD_LINE#WSLOAD_RESULT }"
}

measure_load() { # name conns seconds [warm]
  local name=$1 conns=$2 secs=$3 warm=${4:-} rc=0 kv
  if [[ -n $warm ]]; then log "warm-up ${secs}s, $conns connections"
  else log "load: ${secs}s, $conns connection(s), one request outstanding each"; fi
  run_wsload_load "$conns" "$secs" || rc=$?
  check_gateway_alive
  if [[ -z $LOAD_LINE ]]; then
    cat "$TMP/wsload.out" "$TMP/wsload.err" >&2
    die "wsload gave no result line (status $rc)"
  fi
  if [[ -s $TMP/wsload.err ]]; then log "wsload diagnostics:"; cat "$TMP/wsload.err" >&2; fi
  [[ -n $warm ]] && return 0
  for kv in ${LOAD_LINE#WSLOAD_RESULT }; do RES[$name.${kv%%=*}]=${kv#*=}; done
  RES[$name.rss_kb]=$(rss_kb VmRSS)
  RES[$name.hwm_kb]=$(rss_kb VmHWM)
  log "$name: ${RES[$name.rate]} msg/s, p50 ${RES[$name.p50_us]} us, p99 ${RES[$name.p99_us]} us," \
      "p99.9 ${RES[$name.p999_us]} us, errors ${RES[$name.errors]};" \
      "gateway VmRSS $(mib "${RES[$name.rss_kb]}"), VmHWM $(mib "${RES[$name.hwm_kb]}")"
  ((${RES[$name.errors]} == 0)) || fail_later "$name: ${RES[$name.errors]} errors: $LOAD_LINE"
}

measure_idle() { # conns
  local n=$1 tries line opened failed hold rc=0
  # Let the gateway finish closing the connections of the loads before the baseline.
  sleep "$IDLE_SETTLE"
  RES[idle.before_kb]=$(rss_kb VmRSS)
  hold=$((OPEN_TIMEOUT + IDLE_SETTLE + 60))
  log "idle: opening $n WebSocket connections (baseline VmRSS $(mib "${RES[idle.before_kb]}"))"
  WSLOAD_OPEN_TIMEOUT=$OPEN_TIMEOUT timeout "$((hold + 30))" "${LOAD_CPU[@]}" "$WSLOAD_BIN" idle \
    127.0.0.1 "$PORT" "$WS_PATH" "$n" "$hold" >"$TMP/idle.out" 2>"$TMP/idle.err" &
  LOAD_PID=$!
  line=
  for ((tries = (OPEN_TIMEOUT + 10) * 10; tries > 0; tries--)); do
    line=$(grep -m1 '^open ' "$TMP/idle.out" || true)
    [[ -n $line ]] && break
    alive "$LOAD_PID" || break
    sleep 0.1
  done
  check_gateway_alive
  if [[ -z $line ]]; then
    stop_pid "$LOAD_PID"; LOAD_PID=
    cat "$TMP/idle.out" "$TMP/idle.err" >&2
    die "wsload idle did not report its open connections (status $STOP_RC)"
  fi
  read -r _ opened _ failed <<<"$line"
  RES[idle.opened]=$opened
  RES[idle.failed]=$failed
  log "idle: $line; waiting ${IDLE_SETTLE}s before reading the gateway's RSS"
  sleep "$IDLE_SETTLE"
  check_gateway_alive
  RES[idle.with_kb]=$(rss_kb VmRSS)
  RES[idle.hwm_kb]=$(rss_kb VmHWM)
  stop_pid "$LOAD_PID"
  rc=$STOP_RC
  LOAD_PID=
  line=$(grep -m1 '^WSLOAD_RESULT ' "$TMP/idle.out" || true)
  for kv in ${line#WSLOAD_RESULT }; do RES[idle.${kv%%=*}]=${kv#*=}; done
  if [[ -s $TMP/idle.err ]]; then log "wsload diagnostics:"; cat "$TMP/idle.err" >&2; fi
  ((rc == 0)) || fail_later "wsload idle exited with status $rc: $line"
  if ((opened > 0)); then
    RES[idle.per_conn_b]=$(( (${RES[idle.with_kb]} - ${RES[idle.before_kb]}) * 1024 / opened ))
  else
    RES[idle.per_conn_b]=n/a
  fi
  log "idle: VmRSS $(mib "${RES[idle.before_kb]}") before, $(mib "${RES[idle.with_kb]}") with $opened open:" \
      "${RES[idle.per_conn_b]} bytes per connection"
  # After they are closed: does the gateway give the memory back, and does it still serve?
  sleep "$IDLE_SETTLE"
  check_gateway_alive
  RES[idle.after_kb]=$(rss_kb VmRSS)
  check_ws
}

# ---------------------------------------------------------------- run

build
log "repo $ROOT, duration $DURATION per load, warm-up $WARMUP, loads: $CONNS_LIST connection(s)," \
    "idle: $IDLE_CONNS, fd limit $(ulimit -n)"
start_gateway
RES[start.rss_kb]=$(rss_kb VmRSS)
check_ws
if ((WARMUP_S > 0)); then measure_load warmup 50 "$WARMUP_S" warm; fi
for n in $CONNS_LIST; do measure_load "c$n" "$n" "$DURATION_S"; done
if ((IDLE_CONNS > 0)); then measure_idle "$IDLE_CONNS"; fi
RES[end.hwm_kb]=$(rss_kb VmHWM)

stop_pid "$GATEWAY_PID"
RES[exit]=$STOP_RC
GATEWAY_PID=
check_clean_exit "${RES[exit]}" "$GW_ERR"
if [[ -s $GW_ERR ]]; then
  log "gateway stderr had $(wc -l <"$GW_ERR") line(s) at warning level or above; last ones:"
  tail -n 5 "$GW_ERR" >&2
fi

# ---------------------------------------------------------------- report

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
dirty=
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then dirty=", uncommitted changes"; fi
echo
echo "## WebSocket benchmark: {\"action\":\"$ACTION\"} over ws://127.0.0.1:PORT$WS_PATH"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -srm); CPUs: $(nproc 2>/dev/null || echo ?)" \
  "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true))"
echo "- gateway: $rev$dirty, 1 worker, log level warning; wsload: one request outstanding per" \
  "connection, $DURATION per load, warm-up $WARMUP, loopback, pinned:" \
  "$([[ ${#GW_CPU[@]} -gt 0 ]] && echo "gateway CPU 0, wsload CPUs 1+" || echo no)"
echo
echo "| load           | msg/s      | p50 (us) | p99 (us) | p99.9 (us) | errors | VmRSS after | VmHWM after |"
echo "|----------------|-----------:|---------:|---------:|-----------:|-------:|------------:|------------:|"
for n in $CONNS_LIST; do
  k=c$n
  printf '| %-14s | %10s | %8s | %8s | %10s | %6s | %11s | %11s |\n' "$n conn(s)" "${RES[$k.rate]}" \
    "${RES[$k.p50_us]}" "${RES[$k.p99_us]}" "${RES[$k.p999_us]}" "${RES[$k.errors]}" \
    "$(mib "${RES[$k.rss_kb]}")" "$(mib "${RES[$k.hwm_kb]}")"
done
echo
echo "gateway VmRSS right after startup: $(mib "${RES[start.rss_kb]}")"
if ((IDLE_CONNS > 0)); then
  echo
  echo "| idle connections | VmRSS before | VmRSS with them open | per connection | VmRSS after closing | not opened | closed by gateway |"
  echo "|-----------------:|-------------:|---------------------:|---------------:|--------------------:|-----------:|------------------:|"
  printf '| %16s | %12s | %20s | %14s | %19s | %10s | %17s |\n' "${RES[idle.opened]}" \
    "$(mib "${RES[idle.before_kb]}")" "$(mib "${RES[idle.with_kb]}")" "${RES[idle.per_conn_b]} B" \
    "$(mib "${RES[idle.after_kb]}")" "${RES[idle.failed]}" "${RES[idle.closed_during_hold]:-?}"
fi
echo
echo "gateway peak RSS over the whole run (VmHWM): $(mib "${RES[end.hwm_kb]}")"
echo "gateway exit status after SIGTERM: ${RES[exit]}"
finish
