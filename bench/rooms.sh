#!/usr/bin/env bash
# Rooms benchmark (issue 17): one room of N WebSocket members spread over the gateway's
# workers (SO_REUSEPORT shares the connections out), a private redis-server on a unix socket,
# driven by bench/wsload.c's `room` mode. Measures the time from a `say` to its last
# delivery (p50/p99 over BENCH_MESSAGES messages said one at a time), the broadcasts per
# second the node sustains with BENCH_WINDOW broadcasts in flight, and the gateway's and
# Redis's memory per member.
#
# Usage: bench/rooms.sh            (from any directory)
#
# Environment:
#   BENCH_MEMBERS=10000       members of the room (each a WebSocket connection)
#   BENCH_WORKERS=2           gateway workers
#   BENCH_MESSAGES=100        says timed one at a time
#   BENCH_RATE_SECONDS=5      length of the broadcasts/s run
#   BENCH_WINDOW=4            broadcasts in flight during that run
#   BENCH_OPEN_TIMEOUT=60     seconds wsload may take to open all its connections
#   BENCH_SKIP_BUILD=1        use the existing build/gateway instead of running `make all`
#   BENCH_START_TIMEOUT=20    seconds to wait for the gateway to start listening
#   BENCH_KEEP=1              keep the temporary folder (logs, config) instead of removing it
#
# File descriptors: the gateway and wsload each hold one per member, so the soft limit
# (ulimit -n) must be at least BENCH_MEMBERS + 512; the script raises it up to the hard limit
# and says so when the hard limit is too low (raise it in /etc/security/limits.conf or with
# `ulimit -Hn` as root). See bench/README.md for what is measured and how to read it.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

MEMBERS=${BENCH_MEMBERS:-10000}
WORKERS=${BENCH_WORKERS:-2}
MESSAGES=${BENCH_MESSAGES:-100}
RATE_SECONDS=${BENCH_RATE_SECONDS:-5}
WINDOW=${BENCH_WINDOW:-4}
OPEN_TIMEOUT=${BENCH_OPEN_TIMEOUT:-60}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
START_TIMEOUT=${BENCH_START_TIMEOUT:-20}

GATEWAY_BIN=$ROOT/build/gateway
WSLOAD_SRC=$BENCH_DIR/wsload.c
WSLOAD_BIN=$ROOT/build/bench/wsload
WS_PATH=/ws

[[ $# -eq 0 ]] || die "no arguments expected (configure with BENCH_* environment variables)"
for v in MEMBERS WORKERS MESSAGES RATE_SECONDS WINDOW OPEN_TIMEOUT START_TIMEOUT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number (got '${!v}')"
done
command -v redis-server >/dev/null 2>&1 || die "redis-server is required (Debian: redis-server)"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli is required (Debian: redis-tools)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

need_fds=$((MEMBERS + 512))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need_fds)); then
  die "$MEMBERS members need an fd limit of at least $need_fds, but the hard limit is $hard" \
      "(lower BENCH_MEMBERS, or raise the hard limit as root)"
fi
if [[ $(ulimit -Sn) != unlimited ]] && (($(ulimit -Sn) < need_fds)); then
  ulimit -n "$need_fds" || die "could not raise the fd limit to $need_fds (ulimit -n)"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-roomsbench.XXXXXX")
GATEWAY_PID=
LOAD_PID=
REDIS_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID"; LOAD_PID=; fi
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; GATEWAY_PID=; fi
  if [[ -n $REDIS_PID ]]; then stop_pid "$REDIS_PID"; REDIS_PID=; fi
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf -- "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build

if [[ $SKIP_BUILD == 1 ]]; then
  log "BENCH_SKIP_BUILD=1: using the existing $GATEWAY_BIN"
else
  log "building the release binary: make -C $ROOT all"
  make -C "$ROOT" all >&2
fi
[[ -x $GATEWAY_BIN ]] || die "$GATEWAY_BIN was not built"
if [[ ! -x $WSLOAD_BIN || $WSLOAD_SRC -nt $WSLOAD_BIN ]]; then
  mkdir -p "$(dirname -- "$WSLOAD_BIN")"
  log "building $WSLOAD_BIN"
  cc -O2 -Wall -Wextra -o "$WSLOAD_BIN.tmp" "$WSLOAD_SRC"
  mv -f -- "$WSLOAD_BIN.tmp" "$WSLOAD_BIN"
fi

# ---------------------------------------------------------------- redis and the gateway

SOCK=$TMP/redis.sock
redis-server --port 0 --unixsocket "$SOCK" --dir "$TMP" --save "" --appendonly no \
  --logfile "$TMP/redis.log" &
REDIS_PID=$!
for ((i = 0; i < 100; i++)); do [[ -S $SOCK ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
log "redis-server pid $REDIS_PID on $SOCK"

redis_used() { redis-cli -s "$SOCK" info memory | awk -F: '/^used_memory:/ { print $2 + 0 }'; }

cfg=$TMP/gateway.lua
write_example_config "$cfg" "c.workers = $WORKERS
c.servers.websocket = c.servers.websocket or {}
c.servers.websocket.enabled = true
c.servers.websocket.path = \"$WS_PATH\"
c.general = c.general or {}
c.general.maxConnections = math.max(c.general.maxConnections or 0, $((MEMBERS + 64)))
c.redis = c.redis or {}
c.redis.url = [==[unix://$SOCK?db=0]==]
c.redis.prefix = 'bench:'"
launch_gateway "$cfg" "$TMP/gateway.stdout" "$TMP/gateway.stderr"
GW_PIDS=()
if ((WORKERS > 1)); then
  for ((i = 0; i < 100 && ${#GW_PIDS[@]} < WORKERS; i++)); do
    sleep 0.1
    mapfile -t GW_PIDS < <(children_of "$GATEWAY_PID")
  done
  ((${#GW_PIDS[@]} == WORKERS)) || die "found ${#GW_PIDS[@]} of $WORKERS workers"
else
  GW_PIDS=("$GATEWAY_PID")
fi
log "gateway pid $GATEWAY_PID on 127.0.0.1:$GATEWAY_PORT, workers ${GW_PIDS[*]}"
rss_kb() { local p t=0; for p in "${GW_PIDS[@]}"; do t=$((t + $(status_kb "$p" VmRSS))); done; echo "$t"; }

base_rss=$(rss_kb)
base_redis=$(redis_used)

# ---------------------------------------------------------------- the run

log "wsload room: $MEMBERS members, $MESSAGES says timed one at a time, then ${RATE_SECONDS}s with $WINDOW in flight"
WSLOAD_SERVER_PIDS="${GW_PIDS[*]}" WSLOAD_ROOM=bench WSLOAD_WINDOW=$WINDOW WSLOAD_OPEN_TIMEOUT=$OPEN_TIMEOUT WSLOAD_HOLD=120 \
  timeout "$((OPEN_TIMEOUT + RATE_SECONDS + 400))" "$WSLOAD_BIN" room 127.0.0.1 "$GATEWAY_PORT" \
  "$WS_PATH" "$MEMBERS" "$MESSAGES" "$RATE_SECONDS" >"$TMP/wsload.out" 2>"$TMP/wsload.err" &
LOAD_PID=$!
line=
while alive "$LOAD_PID"; do
  grep -q '^WSLOAD_HOLDING' "$TMP/wsload.out" && break
  sleep 0.2
done
line=$(grep -m1 '^WSLOAD_RESULT ' "$TMP/wsload.out" || true)
if [[ -z $line ]]; then
  stop_pid "$LOAD_PID"; LOAD_PID=
  cat "$TMP/wsload.out" "$TMP/wsload.err" >&2
  tail -n 20 "$TMP/gateway.stderr" >&2 || true
  die "wsload gave no result line"
fi
sleep 1
full_rss=$(rss_kb)
full_redis=$(redis_used)
members_in_redis=$(redis-cli -s "$SOCK" hlen bench:room:bench)
per_worker=()
for p in "${GW_PIDS[@]}"; do
  per_worker+=("$(ls /proc/"$p"/fd 2>/dev/null | wc -l)")
done
stop_pid "$LOAD_PID"; LOAD_PID=
[[ -s $TMP/wsload.err ]] && { log "wsload diagnostics:"; cat "$TMP/wsload.err" >&2; }

declare -A R=()
for kv in ${line#WSLOAD_RESULT }; do R[${kv%%=*}]=${kv#*=}; done
joined=${R[joined]:-0}
((joined > 0)) || die "nobody joined: $line"
gw_per=$(awk -v a="$full_rss" -v b="$base_rss" -v n="$joined" 'BEGIN { printf "%.2f", (a - b) / n }')
redis_per=$(awk -v a="$full_redis" -v b="$base_redis" -v n="$joined" 'BEGIN { printf "%.0f", (a - b) / n }')

stop_pid "$GATEWAY_PID"
gw_rc=$STOP_RC
GATEWAY_PID=
check_clean_exit "$gw_rc" "$TMP/gateway.stderr"
((${R[errors]:-1} == 0)) || fail_later "wsload saw errors: $line"
((members_in_redis == joined)) || fail_later "Redis lists $members_in_redis members, $joined joined"

cat <<EOF

### Rooms: one room of $joined WebSocket members, $WORKERS workers, private redis-server on a unix socket
(open fds per worker while full: ${per_worker[*]}; connections opened in ${R[open_s]} s, joined in ${R[join_s]} s)

| figure | value |
|---|---|
| say to last delivery, p50 (${R[messages]} says, one at a time) | ${R[p50_us]} µs |
| say to last delivery, p90 | ${R[p90_us]} µs |
| say to last delivery, p99 | ${R[p99_us]} µs |
| say to last delivery, max | ${R[max_us]} µs |
| broadcasts/s sustained ($WINDOW in flight, ${R[seconds]} s) | ${R[broadcast_rate]} |
| deliveries/s | ${R[delivery_rate]} |
| gateway CPU per broadcast (all workers) | ${R[server_cpu_us_per_broadcast]} µs |
| gateway CPU per delivery | ${R[server_cpu_ns_per_delivery]} ns |
| duplicates / errors | ${R[duplicates]} / ${R[errors]} |
| gateway RSS per member (connection included) | $gw_per KiB |
| gateway RSS: before / with the room full | $(mib "$base_rss") / $(mib "$full_rss") |
| Redis memory per member | $redis_per bytes |
EOF
finish
