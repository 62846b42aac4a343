#!/usr/bin/env bash
# Redis-backed actions under load: api.cache.load of a small value and a generic retrieve,
# over HTTP (wrk, 50 connections) and WebSocket (bench/wsload, 50 connections, one request
# outstanding each), next to the no-Redis randomNumber on the same gateway and to
# redis-benchmark GET on the same Redis (the ceiling). Everything on loopback / a unix socket.
#
# Usage: bench/redis.sh      BENCH_DURATION=10 (seconds per load), BENCH_CONNS=50
# See bench/README.md for the figures and how to read them.
set -euo pipefail
BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-50}
DURATION=${DURATION%s}

# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"
for tool in wrk redis-server redis-cli redis-benchmark curl timeout cc; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install wrk redis-server curl gcc)"
done

make -C "$ROOT" --no-print-directory all >&2
WSLOAD=$ROOT/build/bench/wsload
if [[ ! -x $WSLOAD || $BENCH_DIR/wsload.c -nt $WSLOAD ]]; then
  mkdir -p "$ROOT/build/bench" && cc -O2 -Wall -o "$WSLOAD" "$BENCH_DIR/wsload.c"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench-redis.XXXXXX")
REDIS_PID='' GATEWAY_PID='' LOAD_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID"; fi
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; fi
  if [[ -n $REDIS_PID ]]; then stop_pid "$REDIS_PID"; fi
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SOCK=$TMP/redis.sock
redis-server --port 0 --unixsocket "$SOCK" --dir "$TMP" --save "" --appendonly no \
  --logfile "$TMP/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
redis-cli -s "$SOCK" SET bench:raw hello >/dev/null

cat >"$TMP/gateway.lua" <<LUA
return {
  paths = { actions = { "$ROOT/actions", "$BENCH_DIR/redis_actions" }, middleware = { "$ROOT/middleware" },
            routes = "$TMP/none.lua", public = "$TMP" },
  servers = { web = { port = 0, metadata = false } },
  redis = { url = "unix://$SOCK?db=0", prefix = "bench:" },
  logging = { level = "warning" },
}
LUA
GATEWAY_BIN=$ROOT/build/gateway START_TIMEOUT=20
launch_gateway "$TMP/gateway.lua" "$TMP/out" "$TMP/err"
PORT=$GATEWAY_PORT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 40); do
  curl -sf "$BASE/api/benchRedisGet" >/dev/null && break; sleep 0.05   # connected to Redis
done
curl -sf "$BASE/api/benchCacheSeed" >/dev/null || die "benchCacheSeed failed: $(curl -s "$BASE/api/benchCacheSeed")"
CREATED=$(curl -s -X POST -H 'Content-Type: application/json' -d '{"title":"hello"}' "$BASE/api/bench_items/")
ITEM=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$CREATED")
[[ -n $ITEM ]] || die "creating the bench item failed: $CREATED"

check_gateway_alive() {
  alive "$GATEWAY_PID" && return 0
  local pid=$GATEWAY_PID
  GATEWAY_PID=
  stop_pid "$pid"
  log "gateway stderr (last lines):"; tail -n 20 "$TMP/err" >&2 || true
  die "the gateway (pid $pid) died under load ($(exit_text "$STOP_RC"))"
}

# Runs a load tool in the background (a signal to this script is handled at once), then
# checks the gateway survived; dies when the tool fails or prints no result line.
RESULT=
run_load() { # name result-prefix command...
  local name=$1 prefix=$2 rc=0
  shift 2
  "$@" >"$TMP/load.out" 2>"$TMP/load.err" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  check_gateway_alive
  RESULT=$(grep -m1 "^$prefix " "$TMP/load.out" || true)
  if ((rc != 0)) || [[ -z $RESULT ]]; then
    cat "$TMP/load.out" "$TMP/load.err" >&2
    die "$name: the load failed (status $rc${RESULT:+, }${RESULT:-, no $prefix line})"
  fi
}

ROWS=()
record() { # name transport rps p99 errors
  ROWS+=("$1|$2|$3|$4|$5")
  [[ ${5:-0} == 0 ]] || fail_later "$1 over $2: $5 errors"
}
http_load() { # name path
  run_load "$1 (http)" BENCH_RESULT timeout $((DURATION + 30)) wrk --latency -t 2 -c "$CONNS" \
    -d "${DURATION}s" --timeout 5s -s "$BENCH_DIR/wrk-report.lua" "$BASE$2"
  local errs=0 k
  for k in http_errors connect_errors read_errors write_errors timeouts; do
    errs=$((errs + $(field "$k" "$RESULT")))
  done
  record "$1" http "$(field rps "$RESULT")" "$(field p99_us "$RESULT")" "$errs"
}
ws_load() { # name action route
  run_load "$1 (websocket)" WSLOAD_RESULT env WSLOAD_ACTION="$2" WSLOAD_ROUTE="$3" \
    timeout $((DURATION + 60)) "$WSLOAD" load 127.0.0.1 "$PORT" /ws "$CONNS" "$DURATION"
  record "$1" websocket "$(field rate "$RESULT")" "$(field p99_us "$RESULT")" "$(field errors "$RESULT")"
}
field() { local v; v=$(sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2" | head -n1); echo "${v:-0}"; }

log "loads: ${DURATION}s each, $CONNS connections"
http_load randomNumber /api/randomNumber
http_load "api.cache.load" /api/benchCacheLoad
http_load "generic retrieve" "/api/bench_items/$ITEM/"
ws_load randomNumber randomNumber ""
ws_load "api.cache.load" benchCacheLoad ""
ws_load "generic retrieve" retrieve "bench_items/$ITEM/"

CEIL=$(redis-benchmark -s "$SOCK" -c "$CONNS" -n 300000 -t get --csv 2>/dev/null | tail -n1)
CEIL_RPS=$(cut -d, -f2 <<<"$CEIL" | tr -d '"')
[[ -n $CEIL_RPS && $CEIL_RPS != 0* ]] || fail_later "redis-benchmark gave no result: $CEIL"
CEIL_P99=$(cut -d, -f7 <<<"$CEIL" | tr -d '"')

printf '\n| action | transport | req/s | p99 (µs) | errors | vs randomNumber |\n'
printf '|---|---|---:|---:|---:|---:|\n'
declare -A BASE_RPS
for r in "${ROWS[@]}"; do
  IFS='|' read -r name transport rps p99 errs <<<"$r"
  [[ $name == randomNumber ]] && BASE_RPS[$transport]=$rps
  ratio=$(awk -v a="$rps" -v b="${BASE_RPS[$transport]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf '| %s | %s | %.0f | %s | %s | %s |\n' "$name" "$transport" "${rps:-0}" "${p99:--}" "${errs:--}" "$ratio"
done
printf '| redis-benchmark GET (ceiling) | unix socket | %.0f | %s | | |\n' "${CEIL_RPS:-0}" \
  "$(awk -v ms="${CEIL_P99:-0}" 'BEGIN { printf "%.0f", ms * 1000 }')"
grep -E ' (error|crit|warning) ' "$TMP/err" | head -n5 >&2 || true
stop_pid "$GATEWAY_PID"
GATEWAY_PID=
check_clean_exit "$STOP_RC" "$TMP/err"
finish
