#!/usr/bin/env bash
# The gateway against nginx + lua-nginx-module, in one run, with the same clients: wrk for
# HTTP and bench/wsload for WebSocket, at 1 and 50 connections, 1 and 2 workers. Prints
# req/s, p50/p99 and the server's CPU time per request (from /proc), the ratios
# gateway/nginx+Lua, the Redis-backed actions (api.cache.load, a generic retrieve) against a
# private redis-server, and two floors with no Lua: nginx's `return 200` and the gateway's
# HTTP layer answering a fixed body (GATEWAY_BENCH_PROBE=fixed, when the binary has it).
#
# Usage: bench/compare.sh [--quick] [options]     (or: make bench)
#   --quick            3 s per load instead of 10 (about 2.5 minutes in all; default about 6)
#   --duration S       seconds per measured load (default 10)
#   --slice S          a load runs in slices of S seconds (default 2; 1 with --quick),
#                      alternating between the servers it compares
#   --warmup S         unmeasured load per server and transport before its cells (default 1; 0 = none)
#   --workers "1 2"    worker counts to measure
#   --conns "50 1"     connection counts to measure
#   --only LIST        any of http,ws,floor,redis,h2 (default: all but h2)
#   --h2-streams M     h2: requests in flight per HTTP/2 connection (default 1, as wrk's keep-alive)
#   --inflight K       WebSocket requests kept outstanding per connection (default 1: strict
#                      request/response, as wrk does for HTTP)
#   --no-pin           do not pin server and client to separate CPUs
# h2 loads both servers over cleartext HTTP/2 with prior knowledge (h2load, Debian's
# nghttp2-client; nginx with `listen ... http2`): `bench/compare.sh --only http,h2` puts HTTP/2
# next to HTTP/1.1 keep-alive.
#   --skip-build       use the existing build/gateway
# Environment: BENCH_DURATION, BENCH_WARMUP, BENCH_PIN=0, BENCH_SKIP_BUILD=1 do the same.
#
# Exits 1, after printing the figures, when a load reported errors, a server or one of its
# workers died, or the gateway did not exit 0 after SIGTERM. See bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-10}
SLICE=
WARMUP=${BENCH_WARMUP:-1}
WORKERS_LIST="1 2"
CONNS_LIST="50 1"
ONLY="http ws floor redis"
INFLIGHT=1
H2_STREAMS=1
PIN=${BENCH_PIN:-1}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
START_TIMEOUT=20
HEAD_CONNS=50   # the headline table: 1 worker, 50 connections; the Redis loads use it too

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case $1 in
    --quick) DURATION=3 ;;
    --duration) DURATION=${2:?}; shift ;;
    --slice) SLICE=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --workers) WORKERS_LIST=${2:?}; shift ;;
    --conns) CONNS_LIST=${2:?}; shift ;;
    --only) ONLY=${2:?}; ONLY=${ONLY//,/ }; shift ;;
    --inflight) INFLIGHT=${2:?}; shift ;;
    --h2-streams) H2_STREAMS=${2:?}; shift ;;
    --no-pin) PIN=0 ;;
    --skip-build) SKIP_BUILD=1 ;;
    -h|--help) usage 0 ;;
    *) printf 'unknown argument: %s\n\n' "$1" >&2; usage 2 ;;
  esac
  shift
done
DURATION=$(duration_secs "$DURATION")
if [[ -z $SLICE ]]; then if ((DURATION >= 4)); then SLICE=2; else SLICE=1; fi; fi
SLICE=$(duration_secs "$SLICE")
((SLICE <= DURATION)) || SLICE=$DURATION
NSLICES=$(((DURATION + SLICE / 2) / SLICE))
DURATION=$((NSLICES * SLICE))
if [[ $WARMUP == 0 || $WARMUP == 0s ]]; then WARMUP=0; else WARMUP=$(duration_secs "$WARMUP"); fi
for n in $WORKERS_LIST $CONNS_LIST $INFLIGHT $H2_STREAMS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "worker, connection and in-flight counts must be positive numbers (got '$n')"
done
for o in $ONLY; do
  [[ $o == http || $o == ws || $o == floor || $o == redis || $o == h2 ]] || die "unknown --only part '$o' (http, ws, floor, redis, h2)"
done
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools

GATEWAY_BIN=$ROOT/build/gateway
WSLOAD=$ROOT/build/bench/wsload
NGINX_BIN=$(nginx_bin)
NDK_MODULE=$(find_nginx_module ndk_http_module.so)
LUA_MODULE=$(find_nginx_module ngx_http_lua_module.so)
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[[ -n $NGINX_BIN ]] || need+=(nginx)
[[ -n $NDK_MODULE && -n $LUA_MODULE ]] || need+=(libnginx-mod-http-lua)
[[ -f /usr/share/lua/5.1/nginx/websocket/server.lua ]] || need+=(lua-nginx-websocket)
[[ -f /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ]] || need+=(lua-cjson)
if want redis; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
fi
command -v cc >/dev/null 2>&1 || need+=(gcc)
if want h2; then command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client); fi
((${#need[@]} == 0)) || die "missing: ${need[*]} (scripts/ensure-deps.sh bench installs them)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

if [[ $SKIP_BUILD == 1 ]]; then
  log "--skip-build: using the existing $GATEWAY_BIN"
else
  log "building: make -C $ROOT all"
  make -C "$ROOT" --no-print-directory all >&2
fi
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN was not built"
if [[ ! -x $WSLOAD || $BENCH_DIR/wsload.c -nt $WSLOAD ]]; then
  mkdir -p "$(dirname -- "$WSLOAD")"
  log "building $WSLOAD"
  cc -O2 -Wall -Wextra -o "$WSLOAD.tmp" "$BENCH_DIR/wsload.c"
  mv -f -- "$WSLOAD.tmp" "$WSLOAD"
fi

# ---------------------------------------------------------------- processes

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-compare.XXXXXX")
STARTED=()        # every server this script started, stopped by PID in reverse order
LOAD_PID=
declare -A SRV_PID=() SRV_KIND=() SRV_PORT=() SRV_H2PORT=() SRV_LOG=() SRV_KIDS=()
declare -A RES=()

cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID"; fi
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    pid=${STARTED[i]}
    [[ -n $pid ]] && stop_pid "$pid"
  done
  for pid in "${SRV_KIDS[@]}"; do   # workers orphaned if a master had to be killed
    # shellcheck disable=SC2086
    for p in $pid; do if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi; done
  done
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_started() { local i; for i in "${!STARTED[@]}"; do [[ ${STARTED[i]} != "$1" ]] || STARTED[i]=; done; }

# CPU sets. Server and client on separate cores when there are enough; with as many workers
# as cores they share one (reported in the output).
NCPU=$(nproc 2>/dev/null || echo 1)
PIN_OK=0
if [[ $PIN == 1 ]] && command -v taskset >/dev/null 2>&1 && ((NCPU >= 2)); then PIN_OK=1; fi
CLIENT_CPUS=
((PIN_OK == 0)) || CLIENT_CPUS=$((NCPU - 1))
server_cpus() { # workers -> CPU list for taskset, or nothing
  ((PIN_OK == 1)) || return 0
  if (($1 <= NCPU - 1)); then
    if (($1 == 1)); then echo 0; else echo "0-$(($1 - 1))"; fi
  else
    echo "0-$((NCPU - 1))"
  fi
}
pin_note() { # workers -> a sentence
  ((PIN_OK == 1)) || { echo "not pinned (--no-pin, no taskset or 1 CPU)"; return; }
  local s; s=$(server_cpus "$1")
  if (($1 <= NCPU - 1)); then echo "server on CPU $s, client on CPU $CLIENT_CPUS: separate"
  else echo "server on CPUs $s, client on CPU $CLIENT_CPUS: SHARED with a server worker ($1 workers, $NCPU CPUs)"; fi
}
on_cpus() { if [[ -n $1 ]]; then echo taskset -c "$1"; fi; }  # cpus -> command prefix

# Wait until a server has its workers: children of the master (none when workers = 1 for the
# gateway, which then serves in its only process). Records them so a death is noticed.
wait_workers() { # id want
  local id=$1 want=$2 kids tries
  for ((tries = START_TIMEOUT * 10; tries > 0; tries--)); do
    kids=$(cat /proc/"${SRV_PID[$id]}"/task/*/children 2>/dev/null | xargs || true)
    (($(wc -w <<<"$kids") >= want)) && break
    sleep 0.1
  done
  (($(wc -w <<<"$kids") >= want)) || die "$id: $want worker(s) expected, found: ${kids:-none}"
  SRV_KIDS[$id]=$kids
}

# Fails the run unless the server and each of its workers is still the one it started with.
check_server() { # id
  local id=$1 pid=${SRV_PID[$1]} p
  [[ -n $pid ]] || return 0
  if ! alive "$pid"; then
    stop_pid "$pid"; forget_started "$pid"; SRV_PID[$id]=
    log "$id log (last lines):"; tail -n 20 "${SRV_LOG[$id]}" >&2 || true
    die "$id (pid $pid) died under load ($(exit_text "$STOP_RC"))"
  fi
  for p in ${SRV_KIDS[$id]}; do
    if ! alive "$p"; then
      log "$id log (last lines):"; tail -n 20 "${SRV_LOG[$id]}" >&2 || true
      die "$id: worker $p died under load"
    fi
  done
}

start_nginx() { # id workers
  local id=$1 w=$2 prefix=$TMP/$1 port h2port conf tries cpus
  mkdir -p "$prefix"/{client_body,proxy,fastcgi,uwsgi,scgi,logs}
  port=$(free_port)
  h2port=$(free_port)
  conf=$(<"$BENCH_DIR/nginx/nginx.conf.in")
  conf=${conf//@PREFIX@/"$prefix"}
  conf=${conf//@PORT@/"$port"}
  conf=${conf//@H2PORT@/"$h2port"}
  conf=${conf//@WORKERS@/"$w"}
  conf=${conf//@NDK_MODULE@/"$NDK_MODULE"}
  conf=${conf//@LUA_MODULE@/"$LUA_MODULE"}
  printf '%s\n' "$conf" >"$prefix/nginx.conf"
  cpus=$(server_cpus "$w")
  # shellcheck disable=SC2046
  $(on_cpus "$cpus") "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
    -g 'daemon off;' >"$prefix/stdout.log" 2>&1 &
  SRV_PID[$id]=$!
  STARTED+=("${SRV_PID[$id]}")
  SRV_KIND[$id]=nginx SRV_PORT[$id]=$port SRV_H2PORT[$id]=$h2port SRV_LOG[$id]=$prefix/error.log
  for ((tries = START_TIMEOUT * 10; tries > 0; tries--)); do
    alive "${SRV_PID[$id]}" || break
    port_open "$port" && break
    sleep 0.1
  done
  if ! port_open "$port"; then
    cat "$prefix/stdout.log" "$prefix/error.log" >&2 || true
    die "nginx did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s"
  fi
  wait_workers "$id" "$w"
  log "$id: nginx master ${SRV_PID[$id]}, workers ${SRV_KIDS[$id]}, port $port, CPUs ${cpus:-any}"
}

start_gateway() { # id workers config [env assignments...]
  local id=$1 w=$2 cfg=$3 cpus
  shift 3
  cpus=$(server_cpus "$w")
  # shellcheck disable=SC2046
  launch_gateway "$cfg" "$TMP/$id.stdout" "$TMP/$id.stderr" env "$@" $(on_cpus "$cpus")
  STARTED+=("$GATEWAY_PID")
  SRV_PID[$id]=$GATEWAY_PID
  SRV_KIND[$id]=gateway SRV_PORT[$id]=$GATEWAY_PORT SRV_LOG[$id]=$TMP/$id.stderr
  GATEWAY_PID=
  if ((w > 1)); then wait_workers "$id" "$w"; else SRV_KIDS[$id]=; fi
  log "$id: gateway ${SRV_PID[$id]}${SRV_KIDS[$id]:+, workers ${SRV_KIDS[$id]}}, port ${SRV_PORT[$id]}, CPUs ${cpus:-any}"
}

stop_server() { # id
  local id=$1 pid=${SRV_PID[$1]}
  [[ -n $pid ]] || return 0
  check_server "$id"
  RES[$id.hwm_kb]=$(rss_sum "$id" VmHWM)
  stop_pid "$pid"
  forget_started "$pid"
  SRV_PID[$id]=
  RES[$id.exit]=$STOP_RC
  if [[ ${SRV_KIND[$id]} == gateway ]]; then
    check_clean_exit "$STOP_RC" "${SRV_LOG[$id]}"
  elif [[ $STOP_RC != 0 ]]; then
    fail_later "$id: nginx exited with $(exit_text "$STOP_RC") after SIGTERM"
  fi
}

rss_sum() { # id field -> kB over the serving processes (the workers, or the only process)
  local p t=0 procs=${SRV_KIDS[$1]:-${SRV_PID[$1]}}
  for p in $procs; do t=$((t + $(status_kb "$p" "$2"))); done
  echo "$t"
}

# ---------------------------------------------------------------- measured loads

now_us() { local t=${EPOCHREALTIME/[.,]/}; printf -v "$1" '%s' "${t#0}"; }  # var <- wall clock in µs

busy_ticks() { # CPU time the whole machine spent busy (/proc/stat: user nice system irq softirq steal)
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

add() { RES[$1]=$(awk -v a="${RES[$1]:-0}" -v b="$2" 'BEGIN { printf "%.0f", a + b }'); }  # key number

# h2load's summary as one line of key=value pairs, as wrk-report.lua prints (no percentiles:
# h2load reports none per request; its "time for request" line has only min, max, mean).
h2load_result() { # file
  awk '/^finished in/ { t = $3; sub(/s,$/, "", t); if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1000 } }
    /^requests:/ { done = $8; failed = $12; errored = $14; timeout = $16 }
    /^status codes:/ { bad = $5 + $7 + $9 }
    END { if (t == "") exit
      printf "BENCH_RESULT requests=%d duration_us=%.0f http_errors=%d connect_errors=%d read_errors=%d write_errors=0 timeouts=%d p50_us=- p99_us=-\n",
        done, t * 1e6, bad + failed, errored, 0, timeout }' "$1"
}

# One slice of a load: runs the tool once against a server and adds, under RES[key.*], the
# answers, the time, the server's, the client's and the whole machine's CPU time, the errors
# and the slice's percentiles. EXTRA_PID (redis-server) has its CPU time summed too.
EXTRA_PID=
run_slice() { # key id transport(http|ws) path conns seconds [warm]
  local key=$1 id=$2 tr=$3 path=$4 conns=$5 secs=$6 warm=${7:-} rc=0 line t0 t1 c0 c1 w0 w1 b0 b1 bw0 bw1 x0=0 x1=0
  local port=${SRV_PORT[$id]} out=$TMP/load.out err=$TMP/load.err
  [[ $tr != h2 ]] || port=${SRV_H2PORT[$id]:-$port}   # nginx serves h2c on a port of its own
  check_server "$id"
  now_us bw0
  b0=$(busy_ticks)
  [[ -z $EXTRA_PID ]] || x0=$(cpu_ticks "$EXTRA_PID")
  t0=$(cpu_ticks "${SRV_PID[$id]}")
  now_us w0
  children_cpu "$TMP/times"; c0=$CHILD_CPU_US   # last, so only the load tool runs until c1
  if [[ $tr == http ]]; then
    # shellcheck disable=SC2046
    timeout $((secs + 30)) $(on_cpus "$CLIENT_CPUS") wrk --latency -t 1 -c "$conns" -d "${secs}s" \
      --timeout 5s -s "$BENCH_DIR/wrk-report.lua" "http://127.0.0.1:$port$path" >"$out" 2>"$err" &
  elif [[ $tr == h2 ]]; then
    # shellcheck disable=SC2046
    timeout $((secs + 30)) $(on_cpus "$CLIENT_CPUS") h2load -t 1 -c "$conns" -m "$H2_STREAMS" -D "$secs" \
      "http://127.0.0.1:$port$path" >"$out" 2>"$err" &
  else
    # shellcheck disable=SC2046
    WSLOAD_ACTION=${WS_ACTION:-randomNumber} WSLOAD_ROUTE=${WS_ROUTE:-} \
      timeout $((secs + 90)) $(on_cpus "$CLIENT_CPUS") "$WSLOAD" load 127.0.0.1 "$port" "$path" \
      "$conns" "$secs" "$INFLIGHT" >"$out" 2>"$err" &
  fi
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  children_cpu "$TMP/times"; c1=$CHILD_CPU_US
  now_us w1
  t1=$(cpu_ticks "${SRV_PID[$id]}")
  [[ -z $EXTRA_PID ]] || x1=$(cpu_ticks "$EXTRA_PID")
  b1=$(busy_ticks)
  now_us bw1
  check_server "$id"
  [[ -n $warm ]] && return 0
  if [[ $tr == http ]]; then line=$(grep -m1 '^BENCH_RESULT ' "$out" || true)
  elif [[ $tr == h2 ]]; then line=$(h2load_result "$out")
  else line=$(grep -m1 '^WSLOAD_RESULT ' "$out" || true); fi
  if [[ -z $line ]]; then
    cat "$out" "$err" >&2
    die "$key: the load tool failed (status $rc) and printed no result"
  fi
  local kv errs
  declare -A f=()
  for kv in ${line#* }; do f[${kv%%=*}]=${kv#*=}; done
  if [[ $tr == http || $tr == h2 ]]; then
    add "$key.requests" "${f[requests]}"
    add "$key.tool_us" "${f[duration_us]}"
    errs=$((f[http_errors] + f[connect_errors] + f[read_errors] + f[write_errors] + f[timeouts]))
  else
    add "$key.requests" "${f[messages]}"
    add "$key.tool_us" "$(awk -v s="${f[seconds]}" 'BEGIN { printf "%.0f", s * 1e6 }')"
    errs=${f[errors]}
    if [[ -s $err ]]; then log "wsload diagnostics:"; head -n 6 "$err" >&2; fi
  fi
  if [[ ${f[p50_us]} != - ]]; then   # h2load reports no percentiles
    RES[$key.p50s]="${RES[$key.p50s]:-} ${f[p50_us]}"
    RES[$key.p99s]="${RES[$key.p99s]:-} ${f[p99_us]}"
  fi
  add "$key.errors" "$errs"
  add "$key.slices" 1
  add "$key.srv_us" "$(ticks_us $((t1 - t0)))"
  add "$key.extra_us" "$(ticks_us $((x1 - x0)))"
  add "$key.cli_us" $((c1 - c0))
  add "$key.busy_us" "$(ticks_us $((b1 - b0)))"
  add "$key.wall_us" $((w1 - w0))
  add "$key.busy_wall_us" $((bw1 - bw0))
  ((errs == 0)) || RES[$key.error_line]=$line
  ((rc == 0 || errs > 0)) || fail_later "$key: the load tool exited with status $rc: $line"
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[n++] = $1 } END {
  if (!n) { print "-"; exit }
  m = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; printf "%.0f", m }'; }

# After its slices: req/s (answers / the tools' measured time), p50 and p99 (medians of the
# slices' own percentiles), CPU per request of server, client and EXTRA_PID, the client's
# share of a core, and how many CPUs the whole machine kept busy meanwhile (this run's
# processes and everyone else's).
finish_cell() { # key
  local key=$1
  per() { awk -v a="${RES[$key.$1]:-0}" -v b="${RES[$key.$2]:-0}" -v m="$3" -v fmt="$4" \
    'BEGIN { if (b > 0) printf fmt, m * a / b; else print "-" }'; }
  RES[$key.rps]=$(per requests tool_us 1e6 "%.0f")
  RES[$key.p50]=$(median <<<"${RES[$key.p50s]:-}")
  RES[$key.p99]=$(median <<<"${RES[$key.p99s]:-}")
  RES[$key.cpu_us_req]=$(per srv_us requests 1 "%.1f")
  RES[$key.extra_us_req]=$(per extra_us requests 1 "%.1f")
  RES[$key.client_us_req]=$(per cli_us requests 1 "%.1f")
  RES[$key.client_pct]=$(per cli_us wall_us 100 "%.0f")
  RES[$key.busy]=$(per busy_us busy_wall_us 1 "%.1f")
  log "$key: ${RES[$key.rps]}/s, p50 ${RES[$key.p50]} µs, p99 ${RES[$key.p99]} µs," \
      "server CPU ${RES[$key.cpu_us_req]} µs/req, client CPU ${RES[$key.client_us_req]} µs/req" \
      "(${RES[$key.client_pct]}% of a core), machine busy ${RES[$key.busy]}/$NCPU CPUs, errors ${RES[$key.errors]}"
  ((RES[$key.errors] == 0)) || fail_later "$key: ${RES[$key.errors]} errors, e.g. ${RES[$key.error_line]}"
}

# Loads that are compared run in alternating slices (A B A B ...), so that both servers see
# the same machine: this one is shared with other work, which comes and goes.
run_cells() { # conns spec... (spec: key|id|transport|path[|ws action|ws route])
  local conns=$1 s spec key id tr path
  shift
  for ((s = 0; s < NSLICES; s++)); do
    for spec in "$@"; do
      IFS='|' read -r key id tr path WS_ACTION WS_ROUTE <<<"$spec"
      run_slice "$key" "$id" "$tr" "$path" "$conns" "$SLICE"
    done
  done
  WS_ACTION='' WS_ROUTE=''
  for spec in "$@"; do finish_cell "${spec%%|*}"; done
}

warm() { # id transport path
  ((WARMUP > 0)) || return 0
  log "$1: warm-up ${WARMUP}s, $2, $HEAD_CONNS connections"
  run_slice "warm" "$1" "$2" "$3" "$HEAD_CONNS" "$WARMUP" warm
}

# ---------------------------------------------------------------- checks before loading

BODY_RE='^\{"randomNumber":-?[0-9.]+(e[-+]?[0-9]+)?\}$'
check_http() { # id path body-regex -> 0 when it answers 200 with a matching body
  local resp body
  resp=$(http_request "${SRV_PORT[$1]}" GET "$2")
  body=$(http_body "$resp")
  RES[$1.sample.$2]=$body
  [[ $(http_status "$resp") == 200 && $body =~ $3 ]]
}

check_ws() { # id -> prints one answer; dies unless a 1-connection load got only 200s
  local line
  WSLOAD_ECHO=1 timeout 30 "$WSLOAD" load 127.0.0.1 "${SRV_PORT[$1]}" /ws 1 0.3 >"$TMP/check.out" 2>&1 || true
  line=$(grep -m1 '^WSLOAD_RESULT ' "$TMP/check.out" || true)
  RES[$1.sample.ws]=$(sed -n 's/^WSLOAD_ANSWER //p' "$TMP/check.out" | head -n1)
  if [[ -z $line || $line != *" errors=0 "* || $line == *" messages=0 "* ]]; then
    cat "$TMP/check.out" >&2
    die "$1: ws://127.0.0.1:${SRV_PORT[$1]}/ws did not answer randomNumber with status 200"
  fi
}

check_h2() { # id -> dies unless GET /api/randomNumber over h2c prior knowledge answers 200
  local port=${SRV_H2PORT[$1]:-${SRV_PORT[$1]}} body
  body=$(curl -s -f --http2-prior-knowledge --max-time 5 "http://127.0.0.1:$port/api/randomNumber") ||
    die "$1: GET /api/randomNumber over HTTP/2 (h2c, prior knowledge) failed on port $port"
  [[ $body =~ $BODY_RE ]] || die "$1: HTTP/2 answer: $body"
  RES[$1.sample.h2]=$body
}

# ---------------------------------------------------------------- the run

SECONDS=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ncells=0
for w in $WORKERS_LIST; do
  for c in $CONNS_LIST; do
    want http && ncells=$((ncells + 2))
    want ws && ncells=$((ncells + 2))
    want floor && ncells=$((ncells + 2))
    want h2 && ncells=$((ncells + 2))
  done
done
want redis && ncells=$((ncells + 4))
log "$ncells loads of ${DURATION}s ($NSLICES slices of ${SLICE}s; + ${WARMUP}s warm-ups): about $(( (ncells * (DURATION + 1) + 30) / 60 + 1 )) min;" \
    "load average now $LOAD_START"

# Redis first: the gateway's config points at it, so the 1-worker gateway serves the
# Redis-backed actions too and all gateway rows come from one configuration.
REDIS_PID=
SOCK=$TMP/redis.sock
if want redis; then
  # shellcheck disable=SC2046
  $(on_cpus "$CLIENT_CPUS") redis-server --port 0 --unixsocket "$SOCK" --dir "$TMP" --save "" \
    --appendonly no --logfile "$TMP/redis.log" &
  REDIS_PID=$!
  STARTED+=("$REDIS_PID")
  for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.05; done
  [[ -S $SOCK ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
  log "redis-server pid $REDIS_PID on $SOCK, CPU ${CLIENT_CPUS:-any}"
fi
gateway_config() { # workers -> path of the gateway's config for that many workers
  local cfg=$TMP/gateway$1.lua
  write_example_config "$cfg" "
c.workers = $1
table.insert(c.paths.actions, [==[$BENCH_DIR/redis_actions]==])
c.redis = c.redis or {}
c.redis.url = [==[unix://$SOCK?db=0]==]
c.redis.prefix = 'bench:'
c.servers.websocket = c.servers.websocket or {}
c.servers.websocket.enabled = true
c.servers.websocket.path = '/ws'"
  echo "$cfg"
}

PROBE_NOTE=
for w in $WORKERS_LIST; do
  log "---- $w worker(s): $(pin_note "$w")"
  RES[pin.$w]=$(pin_note "$w")
  ids=()
  if want http || want ws || want floor || want h2; then start_nginx "nginx$w" "$w"; ids+=("nginx$w"); fi
  if want http || want ws || want h2 || { want redis && ((w == 1)); }; then
    start_gateway "gw$w" "$w" "$(gateway_config "$w")"
    ids+=("gw$w")
  fi
  if want floor; then
    start_gateway "probe$w" "$w" "$(gateway_config "$w")" GATEWAY_BENCH_PROBE=fixed
    ids+=("probe$w")
  fi
  for id in "${ids[@]}"; do RES[$id.idle_kb]=$(rss_sum "$id" VmRSS); done

  # Same answers from both servers, before any load.
  if want http || want ws; then
    for id in "nginx$w" "gw$w"; do
      want http && { check_http "$id" /api/randomNumber "$BODY_RE" ||
        die "$id: GET /api/randomNumber answered: ${RES[$id.sample./api/randomNumber]}"; }
      want ws && check_ws "$id"
    done
  fi
  if want floor; then
    check_http "nginx$w" /fixed '^\{"ok":true\}$' || die "nginx$w: GET /fixed answered: ${RES[nginx$w.sample./fixed]}"
    if check_http "probe$w" /api/randomNumber '^\{"ok":true\}$'; then RES[probe$w.ok]=1
    else
      RES[probe$w.ok]=0
      PROBE_NOTE="GATEWAY_BENCH_PROBE=fixed answered ${RES[probe$w.sample./api/randomNumber]:0:80}, not {\"ok\":true}: the binary has no probe"
      log "probe$w: $PROBE_NOTE"
    fi
  fi

  # Cells: for each transport and connection count, nginx and the gateway in alternating
  # slices (run_cells), so both see the same machine load.
  if want http; then
    warm "nginx$w" http /api/randomNumber; warm "gw$w" http /api/randomNumber
    for c in $CONNS_LIST; do
      run_cells "$c" "http.nginx.$w.$c|nginx$w|http|/api/randomNumber" "http.gw.$w.$c|gw$w|http|/api/randomNumber"
    done
  fi
  if want ws; then
    warm "nginx$w" ws /ws; warm "gw$w" ws /ws
    for c in $CONNS_LIST; do
      run_cells "$c" "ws.nginx.$w.$c|nginx$w|ws|/ws" "ws.gw.$w.$c|gw$w|ws|/ws"
    done
  fi
  if want h2; then
    check_h2 "nginx$w"; check_h2 "gw$w"
    warm "nginx$w" h2 /api/randomNumber; warm "gw$w" h2 /api/randomNumber
    for c in $CONNS_LIST; do
      run_cells "$c" "h2.nginx.$w.$c|nginx$w|h2|/api/randomNumber" "h2.gw.$w.$c|gw$w|h2|/api/randomNumber"
    done
  fi
  if want floor; then
    warm "nginx$w" http /fixed
    [[ ${RES[probe$w.ok]} == 0 ]] || warm "probe$w" http /api/randomNumber
    for c in $CONNS_LIST; do
      if [[ ${RES[probe$w.ok]} == 1 ]]; then
        run_cells "$c" "floor.nginx.$w.$c|nginx$w|http|/fixed" "floor.gw.$w.$c|probe$w|http|/api/randomNumber"
      else
        run_cells "$c" "floor.nginx.$w.$c|nginx$w|http|/fixed"
      fi
    done
  fi

  # The Redis-backed actions, on the 1-worker gateway.
  if want redis && ((w == 1)); then
    port=${SRV_PORT[gw1]}
    for _ in $(seq 100); do
      [[ $(http_status "$(http_request "$port" GET /api/benchRedisGet)") == 200 ]] && break
      sleep 0.05
    done
    resp=$(http_request "$port" GET /api/benchCacheSeed)
    [[ $(http_status "$resp") == 200 ]] || die "benchCacheSeed failed: $resp"
    resp=$(http_request "$port" POST /api/bench_items/ '{"title":"hello"}')
    ITEM=$(http_body "$resp" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
    [[ -n $ITEM ]] || die "creating the bench item failed: $resp"
    EXTRA_PID=$REDIS_PID
    run_cells "$HEAD_CONNS" "redis.cache.http|gw1|http|/api/benchCacheLoad" \
      "redis.retrieve.http|gw1|http|/api/bench_items/$ITEM/" "redis.cache.ws|gw1|ws|/ws|benchCacheLoad|" \
      "redis.retrieve.ws|gw1|ws|/ws|retrieve|bench_items/$ITEM/"
    EXTRA_PID=
    # shellcheck disable=SC2046
    CEIL=$(timeout 60 $(on_cpus "$CLIENT_CPUS") redis-benchmark -s "$SOCK" -c "$HEAD_CONNS" -n 300000 -t get --csv 2>/dev/null | tail -n1 || true)
    RES[redis.ceiling.rps]=$(cut -d, -f2 <<<"$CEIL" | tr -d '"')
    RES[redis.ceiling.p99]=$(awk -v ms="$(cut -d, -f7 <<<"$CEIL" | tr -d '"')" 'BEGIN { printf "%.0f", ms * 1000 }')
    [[ -n ${RES[redis.ceiling.rps]} && ${RES[redis.ceiling.rps]} != 0* ]] || fail_later "redis-benchmark gave no result: $CEIL"
  fi

  for id in "${ids[@]}"; do stop_server "$id"; done
done
if [[ -n $REDIS_PID ]]; then stop_pid "$REDIS_PID"; forget_started "$REDIS_PID"; fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

num() { [[ -n ${RES[$1]:-} ]] && printf '%.0f' "${RES[$1]}" || printf -- '-'; }
val() { printf '%s' "${RES[$1]:--}"; }
ratio() { awk -v a="${RES[$1]:-}" -v b="${RES[$2]:-}" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "-" }'; }

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -z $(git -C "$ROOT" status --porcelain -- core lua bench 2>/dev/null) ]] || rev="$rev + uncommitted changes"
echo
echo "## gateway vs nginx + Lua: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "- machine: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $NCPU CPUs, $(uname -sr);" \
     "load average $LOAD_START at the start, $LOAD_END at the end"
echo "- gateway $rev (libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null || echo ?)," \
     "Lua $(pkg-config --modversion lua5.4 2>/dev/null || echo 5.4)), example config, metadata off, log level warning"
echo "- nginx $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: nginx\///'), lua-nginx-module" \
     "$(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo ?) (LuaJIT), cjson," \
     "lua-nginx-websocket $(dpkg-query -W -f='${Version}' lua-nginx-websocket 2>/dev/null || echo ?), access_log off"
echo "- clients: wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }') (1 thread, keep-alive) and bench/wsload" \
     "(1 thread, epoll, $INFLIGHT request(s) in flight per connection); ${DURATION}s per load in $NSLICES slices" \
     "of ${SLICE}s alternating between the servers compared, ${WARMUP}s warm-up"
for w in $WORKERS_LIST; do echo "- $w worker(s): ${RES[pin.$w]}"; done
echo "- server CPU = utime+stime of the server's processes (/proc/<pid>/stat, master and workers)" \
     "over the load / answers served; client CPU = the load tool's (wrk, wsload) CPU time / answers;" \
     "p50/p99 = median of the slices' percentiles; machine busy = CPUs kept busy (/proc/stat) by" \
     "everything, this run included: near $NCPU, the machine was saturated"
echo

hw=${WORKERS_LIST%% *}
if [[ " $WORKERS_LIST " == *" 1 "* ]]; then hw=1; fi
hc=$HEAD_CONNS
if [[ " $CONNS_LIST " != *" $hc "* ]]; then hc=${CONNS_LIST%% *}; fi
echo "### Headline: $hw worker(s), $hc connections"
echo
echo "| server | HTTP req/s | p50 µs | p99 µs | CPU µs/req | WS msg/s | p50 µs | p99 µs | CPU µs/msg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in nginx gw; do
  label=$([[ $s == nginx ]] && echo "nginx + Lua" || echo "**gateway**")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
    "$(num "http.$s.$hw.$hc.rps")" "$(val "http.$s.$hw.$hc.p50")" "$(val "http.$s.$hw.$hc.p99")" "$(val "http.$s.$hw.$hc.cpu_us_req")" \
    "$(num "ws.$s.$hw.$hc.rps")" "$(val "ws.$s.$hw.$hc.p50")" "$(val "ws.$s.$hw.$hc.p99")" "$(val "ws.$s.$hw.$hc.cpu_us_req")"
done
printf '| gateway / nginx+Lua | **%s×** | | | %s× | **%s×** | | | %s× |\n' \
  "$(ratio "http.gw.$hw.$hc.rps" "http.nginx.$hw.$hc.rps")" "$(ratio "http.gw.$hw.$hc.cpu_us_req" "http.nginx.$hw.$hc.cpu_us_req")" \
  "$(ratio "ws.gw.$hw.$hc.rps" "ws.nginx.$hw.$hc.rps")" "$(ratio "ws.gw.$hw.$hc.cpu_us_req" "ws.nginx.$hw.$hc.cpu_us_req")"
if want floor; then
  # shellcheck disable=SC2016  # Markdown code, not an expansion
  printf '| floor: nginx `return 200` (no Lua) | %s | %s | %s | %s | | | | |\n' \
    "$(num "floor.nginx.$hw.$hc.rps")" "$(val "floor.nginx.$hw.$hc.p50")" "$(val "floor.nginx.$hw.$hc.p99")" "$(val "floor.nginx.$hw.$hc.cpu_us_req")"
  if [[ ${RES[probe$hw.ok]:-0} == 1 ]]; then
    printf '| floor: gateway HTTP layer, fixed body (no Lua) | %s | %s | %s | %s | | | | |\n' \
      "$(num "floor.gw.$hw.$hc.rps")" "$(val "floor.gw.$hw.$hc.p50")" "$(val "floor.gw.$hw.$hc.p99")" "$(val "floor.gw.$hw.$hc.cpu_us_req")"
  else
    echo '| floor: gateway HTTP layer, fixed body (no Lua) | n/a (binary has no probe) | | | | | | | |'
  fi
fi
echo
echo "### Every load"
echo
echo "| transport | server | workers | conns | req/s | p50 µs | p99 µs | server CPU µs/req | client CPU µs/req | machine busy (CPUs of $NCPU) | errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
row() { # key transport server-label workers conns
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" "$3" "$4" "$5" "$(num "$1.rps")" \
    "$(val "$1.p50")" "$(val "$1.p99")" "$(val "$1.cpu_us_req")" "$(val "$1.client_us_req")" "$(val "$1.busy")" "$(val "$1.errors")"
}
for w in $WORKERS_LIST; do
  for c in $CONNS_LIST; do
    if want http; then
      row "http.nginx.$w.$c" HTTP "nginx + Lua" "$w" "$c"
      row "http.gw.$w.$c" HTTP gateway "$w" "$c"
    fi
    if want ws; then
      row "ws.nginx.$w.$c" WebSocket "nginx + Lua" "$w" "$c"
      row "ws.gw.$w.$c" WebSocket gateway "$w" "$c"
    fi
    if want floor; then
      row "floor.nginx.$w.$c" "HTTP fixed" "nginx \`return 200\`" "$w" "$c"
      if [[ ${RES[probe$w.ok]:-0} == 1 ]]; then row "floor.gw.$w.$c" "HTTP fixed" "gateway probe" "$w" "$c"
      else printf '| HTTP fixed | gateway probe | %s | %s | n/a (binary has no probe) | | | | | | |\n' "$w" "$c"; fi
    fi
  done
done
if want http || want ws; then
  echo
  echo "### Ratios gateway / nginx+Lua (throughput: higher is better; CPU per request: lower is better)"
  echo
  echo "| transport | workers | conns | throughput | CPU per request |"
  echo "|---|---:|---:|---:|---:|"
  for tr in http ws; do
    want "$tr" || continue
    for w in $WORKERS_LIST; do
      for c in $CONNS_LIST; do
        printf '| %s | %s | %s | %s× | %s× |\n' "$([[ $tr == http ]] && echo HTTP || echo WebSocket)" "$w" "$c" \
          "$(ratio "$tr.gw.$w.$c.rps" "$tr.nginx.$w.$c.rps")" "$(ratio "$tr.gw.$w.$c.cpu_us_req" "$tr.nginx.$w.$c.cpu_us_req")"
      done
    done
  done
fi
if want h2; then
  echo
  echo "### HTTP/2 (cleartext, prior knowledge): h2load, $H2_STREAMS request(s) in flight per connection"
  echo
  echo "| server | workers | conns | req/s | server CPU µs/req | client CPU µs/req | errors | CPU vs nginx h2 | CPU vs its HTTP/1.1 |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for w in $WORKERS_LIST; do
    for c in $CONNS_LIST; do
      for s in nginx gw; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s× | %s× |\n' "$([[ $s == nginx ]] && echo "nginx + Lua" || echo gateway)" \
          "$w" "$c" "$(num "h2.$s.$w.$c.rps")" "$(val "h2.$s.$w.$c.cpu_us_req")" "$(val "h2.$s.$w.$c.client_us_req")" \
          "$(val "h2.$s.$w.$c.errors")" "$(ratio "h2.$s.$w.$c.cpu_us_req" "h2.nginx.$w.$c.cpu_us_req")" \
          "$(ratio "h2.$s.$w.$c.cpu_us_req" "http.$s.$w.$c.cpu_us_req")"
      done
    done
  done
fi
if want redis; then
  echo
  echo "### Redis-backed actions: gateway, 1 worker, $HEAD_CONNS connections, private redis-server on a unix socket"
  echo
  echo "| action | transport | req/s | p50 µs | p99 µs | gateway CPU µs/req | redis CPU µs/req | errors | vs randomNumber |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  for tr in http ws; do
    trl=$([[ $tr == http ]] && echo HTTP || echo WebSocket)
    if [[ -n ${RES[$tr.gw.1.$HEAD_CONNS.rps]:-} ]]; then
      printf '| randomNumber (no Redis) | %s | %s | %s | %s | %s | | %s | 1.00 |\n' "$trl" "$(num "$tr.gw.1.$HEAD_CONNS.rps")" \
        "$(val "$tr.gw.1.$HEAD_CONNS.p50")" "$(val "$tr.gw.1.$HEAD_CONNS.p99")" "$(val "$tr.gw.1.$HEAD_CONNS.cpu_us_req")" "$(val "$tr.gw.1.$HEAD_CONNS.errors")"
    fi
    for name in cache retrieve; do
      k=redis.$name.$tr
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$([[ $name == cache ]] && echo 'api.cache.load' || echo 'generic retrieve')" "$trl" "$(num "$k.rps")" \
        "$(val "$k.p50")" "$(val "$k.p99")" "$(val "$k.cpu_us_req")" "$(val "$k.extra_us_req")" "$(val "$k.errors")" \
        "$(ratio "$k.rps" "$tr.gw.1.$HEAD_CONNS.rps")"
    done
  done
  printf '| redis-benchmark GET (ceiling) | unix socket | %s | | %s | | | | |\n' "$(num redis.ceiling.rps)" "$(val redis.ceiling.p99)"
fi
echo
echo "### Memory (serving processes: the workers, or the only process)"
echo
echo "| server | workers | idle RSS | peak RSS (VmHWM) | exit after SIGTERM |"
echo "|---|---:|---:|---:|---:|"
for w in $WORKERS_LIST; do
  for id in "nginx$w" "gw$w" "probe$w"; do
    [[ -n ${RES[$id.idle_kb]:-} ]] || continue
    printf '| %s | %s | %s | %s | %s |\n' "${id%"$w"}" "$w" "$(mib "${RES[$id.idle_kb]}")" "$(mib "${RES[$id.hwm_kb]:-0}")" "${RES[$id.exit]:--}"
  done
done
echo
if want http || want ws || want h2; then
  w=${WORKERS_LIST%% *}
  echo "Answers checked before the loads ($w worker(s)):"
  for id in "nginx$w" "gw$w"; do
    want http && echo "- $id HTTP: ${RES[$id.sample./api/randomNumber]:-}"
    want ws && echo "- $id WebSocket: ${RES[$id.sample.ws]:-}"
    want h2 && echo "- $id HTTP/2: ${RES[$id.sample.h2]:-}"
  done
fi
[[ -z $PROBE_NOTE ]] || echo "- $PROBE_NOTE"
hot=()
for k in "${!RES[@]}"; do
  [[ $k == *.client_pct ]] || continue
  [[ ${RES[$k]} != - ]] && ((RES[$k] >= 90)) && hot+=("${k%.client_pct} (${RES[$k]}%)")
done
if ((${#hot[@]} > 0)); then
  echo "- client near one full CPU (figure may be the client's limit): ${hot[*]}"
fi
echo "- total time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
finish
