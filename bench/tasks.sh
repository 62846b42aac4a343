#!/usr/bin/env bash
# Tasks (docs/tasks.md): jobs/s of an empty task run by 1 and 2 worker processes, and the
# latency of api.tasks.enqueue (p50/p99) as an action sees it. A private redis-server on a
# unix socket (appendonly off: this measures the gateway, not the disk); every process it
# starts is stopped by PID and its temp dir removed.
#
# Usage: bench/tasks.sh   BENCH_JOBS=20000 (jobs per run), BENCH_CONCURRENCY="1 16"
#                         (tasks.concurrency per process), BENCH_SKIP_BUILD=1
set -euo pipefail
here=$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
jobs=${BENCH_JOBS:-20000}
concs=${BENCH_CONCURRENCY:-"1 16"}
for tool in redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || { echo "bench/tasks.sh: $tool is missing (apt-get install redis-server redis-tools curl)" >&2; exit 1; }
done
[ -n "${BENCH_SKIP_BUILD:-}" ] || make -C "$root" --no-print-directory -s all >/dev/null
gateway="$root/build/gateway"

tmp=$(mktemp -d)
redis_pid=
gw_pid=
enq_pid=
cleanup() {
  [ -n "$enq_pid" ] && kill -TERM "$enq_pid" 2>/dev/null && wait "$enq_pid" 2>/dev/null || true
  [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

sock="$tmp/redis.sock"
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$tmp" --save "" \
  --appendonly no --daemonize no --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
rc() { redis-cli -s "$sock" "$@"; }

# config NAME WORKERS ENABLED CONCURRENCY
config() {
  cat > "$tmp/$1.lua" <<LUA
return {
  workers = $2,
  paths = { actions = { "$here/tasks/actions" }, middleware = {}, tasks = { "$here/tasks/tasks" } },
  servers = { web = { port = 0 }, websocket = { enabled = false } },
  redis = { url = "unix://$sock?db=0", prefix = "bench:" },
  general = { actionTimeout = 600000 },
  logging = { level = "warning" },
  tasks = { enabled = $3, concurrency = $4, queues = { "bench" }, pollInterval = 100 },
}
LUA
}

# start CONFIG -> sets gw_pid and port
start() {
  "$gateway" --config "$tmp/$1.lua" >"$tmp/$1.out" 2>"$tmp/$1.err" &
  gw_pid=$!
  port=
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening web http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/$1.out" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "gateway did not start:"; cat "$tmp/$1.err"; exit 1; }
}
stop() {
  kill -TERM "$gw_pid"
  local status=0
  wait "$gw_pid" || status=$?
  gw_pid=
  [ "$status" = 0 ] || { echo "gateway exited $status"; cat "$tmp"/*.err; exit 1; }
}
now_ms() { date +%s%3N; }

# Enqueue latency, and the jobs for each run, from a gateway that runs none.
config enq 1 false 1
start enq
enq_pid=$gw_pid
gw_pid=
enq_port=$port
echo "enqueue latency (api.tasks.enqueue in an action, one after the other, $jobs jobs):"
out=$(curl -sf "http://127.0.0.1:$enq_port/api/benchEnqueue?n=$jobs")
field() { echo "$out" | sed -n "s/.*\"$1\":\([0-9.e-]*\).*/\1/p"; }
awk -v p50="$(field p50)" -v p99="$(field p99)" -v max="$(field max)" -v total="$(field totalMs)" -v n="$jobs" \
  'BEGIN { printf "  p50 %.3f ms  p99 %.3f ms  max %.3f ms  (%.0f enqueues/s)\n", p50, p99, max, n / (total / 1000) }'
rc DEL bench:tasks:queue:bench >/dev/null

echo "jobs/s of the empty task ($jobs jobs queued, then the workers started):"
for workers in 1 2; do
  for c in $concs; do
    curl -sf "http://127.0.0.1:$enq_port/api/benchEnqueue?n=$jobs" >/dev/null
    config run "$workers" true "$c"
    t0=$(now_ms)
    start run
    # One redis-cli every 20 ms (a lighter look than the workers' own load).
    for _ in $(seq 15000); do
      read -r left busy < <(rc EVAL "return redis.call('LLEN', KEYS[1]) .. ' ' .. redis.call('ZCARD', KEYS[2])" \
        2 bench:tasks:queue:bench bench:tasks:processing)
      [ "$left" = 0 ] && [ "$busy" = 0 ] && break
      sleep 0.02
    done
    t1=$(now_ms)
    stop
    [ "$left" = 0 ] && [ "$busy" = 0 ] || { echo "jobs left: $left queued, $busy running"; exit 1; }
    failed=$(rc LLEN bench:tasks:failed)
    [ "$failed" = 0 ] || { echo "$failed jobs failed"; exit 1; }
    awk -v n="$jobs" -v ms=$((t1 - t0)) -v w="$workers" -v c="$c" \
      'BEGIN { printf "  %d worker process%s, concurrency %2d: %8.0f jobs/s (%d ms, start included)\n", w, w == 1 ? "" : "es", c, n / (ms / 1000), ms }'
  done
done
gw_pid=$enq_pid
enq_pid=
stop
