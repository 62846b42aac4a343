#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by callgrind: the stable figure for
# before/after comparisons of the request path on a shared, noisy machine (wall-clock and CPU
# time vary by ±10 % from run to run; instruction counts by well under 1 %).
#
# Usage: bench/instructions.sh [--tree DIR] [--only http,ws] [--seconds S] [--conns N]
#   --tree DIR     measure DIR/build/gateway with DIR's example config, actions, middleware and
#                  public folder (default: this checkout); run it once per tree to compare two
#   --only LIST    http, ws or both (default both); `idle` adds a window without load (the
#                  instructions of timers and background work, printed as a total)
#   --seconds S    measured load per transport (default 4)
#   --conns N      connections (default 10)
#   --path P       the HTTP load's path (default /api/randomNumber; e.g. /api/nope for 404s)
#   --keep DIR     keep each transport's dump as DIR/callgrind.<transport> (callgrind_annotate)
#
# One worker under `valgrind --tool=callgrind` (metadata off, TCP server off, log level
# warning, cpuTimeout 0, a private redis-server when one is installed, else an unreachable
# Redis); per transport: 2 s of warm-up load, `callgrind_control -z`, the measured load
# (wrk on /api/randomNumber, keep-alive; bench/wsload on /ws with action randomNumber),
# `callgrind_control -d`, and the dump's total divided by the answers the client counted.
# Prints one line per transport: `INSTR transport=http requests=N ir=TOTAL ir_per_req=X`.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

TREE=$(cd -- "$BENCH_DIR/.." && pwd -P)
ONLY="http ws"
SECS=4
CONNS=10
KEEP=
URLPATH=/api/randomNumber
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($# > 0)); do
  case $1 in
    --tree) TREE=$(cd -- "${2:?}" && pwd -P); shift ;;
    --only) ONLY=${2:?}; ONLY=${ONLY//,/ }; shift ;;
    --seconds) SECS=${2:?}; shift ;;
    --conns) CONNS=${2:?}; shift ;;
    --keep) KEEP=${2:?}; shift ;;
    --path) URLPATH=${2:?}; shift ;;
    -h|--help) usage 0 ;;
    *) printf 'unknown argument: %s\n\n' "$1" >&2; usage 2 ;;
  esac
  shift
done
for t in valgrind callgrind_control wrk cc; do
  command -v "$t" >/dev/null 2>&1 || die "$t is needed (apt-get install valgrind wrk gcc)"
done
ROOT=$TREE   # write_example_config reads the example config and folders from ROOT
GATEWAY_BIN=$TREE/build/gateway
START_TIMEOUT=120
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN is missing (make -C $TREE)"
WSLOAD=$(cd -- "$BENCH_DIR/.." && pwd -P)/build/bench/wsload
if [[ ! -x $WSLOAD || $BENCH_DIR/wsload.c -nt $WSLOAD ]]; then
  mkdir -p "$(dirname -- "$WSLOAD")"
  cc -O2 -Wall -Wextra -o "$WSLOAD" "$BENCH_DIR/wsload.c"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-instr.XXXXXX")
GATEWAY_PID='' REDIS_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; fi
  if [[ -n $REDIS_PID ]]; then stop_pid "$REDIS_PID"; fi
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SOCK=$TMP/redis.sock
if command -v redis-server >/dev/null 2>&1; then
  redis-server --port 0 --unixsocket "$SOCK" --dir "$TMP" --save "" --appendonly no \
    --logfile "$TMP/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.05; done
  [[ -S $SOCK ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
fi
write_example_config "$TMP/gateway.lua" "c.general = c.general or {}
c.general.cpuTimeout = 0
c.redis = c.redis or {}
c.redis.url = [==[unix://$SOCK?db=0]==]
c.redis.prefix = 'instr:'
c.servers.websocket = c.servers.websocket or {}
c.servers.websocket.enabled = true
c.servers.websocket.path = '/ws'"
launch_gateway "$TMP/gateway.lua" "$TMP/out" "$TMP/err" \
  valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no \
  --callgrind-out-file="$TMP/callgrind.out.%p"
PORT=$GATEWAY_PORT
log "gateway (callgrind) pid $GATEWAY_PID on port $PORT; tree $TREE"

# The newest callgrind dump of the gateway's process, and its total Ir.
newest_dump() {
  local f newest=''
  for f in "$TMP"/callgrind.out.*; do
    [[ -z $newest || $f -nt $newest ]] && newest=$f
  done
  printf '%s\n' "$newest"
}
dump_ir() { awk '/^(summary|totals):/ { print $2; exit }' "$(newest_dump)"; }

measure() { # transport
  local tr=$1 n out
  if [[ $tr == http ]]; then
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT$URLPATH" >/dev/null
  else
    "$WSLOAD" load 127.0.0.1 "$PORT" /ws "$CONNS" 2 >/dev/null
  fi
  callgrind_control -z "$GATEWAY_PID" >/dev/null 2>&1
  if [[ $tr == http ]]; then
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$BENCH_DIR/wrk-report.lua" \
      "http://127.0.0.1:$PORT$URLPATH")
    n=$(sed -n 's/^BENCH_RESULT .*requests=\([0-9]*\).*/\1/p' <<<"$out")
    grep -qE 'http_errors=0 connect_errors=0 read_errors=0 write_errors=0 timeouts=0' <<<"$out" || log "wrk reported errors: $(grep BENCH_RESULT <<<"$out")"
  else
    out=$("$WSLOAD" load 127.0.0.1 "$PORT" /ws "$CONNS" "$SECS")
    n=$(sed -n 's/^WSLOAD_RESULT .* messages=\([0-9]*\).*/\1/p' <<<"$out")
    grep -q ' errors=0 ' <<<"$out" || log "wsload reported errors: $out"
  fi
  callgrind_control -d "$GATEWAY_PID" >/dev/null 2>&1
  [[ -n $n && $n -gt 0 ]] || die "$tr: no answers counted ($out)"
  local ir
  ir=$(dump_ir)
  echo "INSTR transport=$tr requests=$n ir=$ir ir_per_req=$(awk -v a="$ir" -v b="$n" 'BEGIN { printf "%.0f", a / b }')"
  if [[ -n $KEEP ]]; then mkdir -p "$KEEP"; cp "$(newest_dump)" "$KEEP/callgrind.$tr"; fi
  rm -f "$TMP"/callgrind.out.*.[0-9]*
}

for tr in $ONLY; do
  [[ $tr == http || $tr == ws || $tr == idle ]] || die "unknown transport '$tr' (http, ws)"
  if [[ $tr == idle ]]; then
    callgrind_control -z "$GATEWAY_PID" >/dev/null 2>&1; sleep "$SECS"; callgrind_control -d "$GATEWAY_PID" >/dev/null 2>&1
    echo "INSTR idle ir=$(dump_ir)"; rm -f "$TMP"/callgrind.out.*.[0-9]*; continue
  fi
  measure "$tr"
done
stop_pid "$GATEWAY_PID"
GATEWAY_PID=
check_clean_exit "$STOP_RC" "$TMP/err"
