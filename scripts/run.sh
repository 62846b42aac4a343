#!/usr/bin/env bash
# `make run`: the gateway with gateway.lua (or gateway.lua.example) and, unless a
# Redis URL is given (GATEWAY_REDIS_URL or --redis), a private redis-server on a unix
# socket in a temporary folder, with appendonly on. Both stop when this script does.
set -euo pipefail
cd "$(dirname "$0")/.."

config=gateway.lua
[ -f "$config" ] || config=gateway.lua.example
args=(--config "$config" "$@")

redis_pid=
tmp=
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${GATEWAY_REDIS_URL:-}" ] && [[ " $* " != *" --redis "* ]] && command -v redis-server >/dev/null; then
  tmp=$(mktemp -d)
  redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --dir "$tmp" \
    --appendonly yes --save "" --daemonize no --logfile "$tmp/redis.log" &
  redis_pid=$!
  for _ in $(seq 50); do [ -S "$tmp/redis.sock" ] && break; sleep 0.1; done
  echo "redis: private redis-server at unix://$tmp/redis.sock (data in $tmp)" >&2
  args+=(--redis "unix://$tmp/redis.sock?db=0")
fi

build/gateway "${args[@]}" &
gw=$!
trap 'kill -TERM $gw 2>/dev/null || true' INT TERM
wait "$gw" || status=$?
wait "$gw" 2>/dev/null || true
exit "${status:-0}"
