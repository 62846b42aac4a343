#!/usr/bin/env bash
# The Redis-backed actions (api.cache.load, a generic retrieve) over HTTP and WebSocket next
# to randomNumber on the same gateway, one worker, 50 connections, a private redis-server on a
# unix socket, and redis-benchmark GET as the ceiling. A shortcut for bench/compare.sh, which
# measures this and more in one run (see bench/README.md).
#
# Usage: bench/redis.sh     BENCH_DURATION=10 (seconds per load), BENCH_PIN=0, BENCH_SKIP_BUILD=1
set -euo pipefail
exec "$(dirname -- "${BASH_SOURCE[0]}")/compare.sh" --only http,ws,redis --workers 1 --conns 50 "$@"
