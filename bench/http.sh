#!/usr/bin/env bash
# HTTP only: the gateway's GET /api/randomNumber against nginx + Lua, plus the no-Lua floors,
# one worker each, 50 and 1 connections. A shortcut for bench/compare.sh, which measures
# this and more in one run (see bench/README.md).
#
# Usage: bench/http.sh      BENCH_DURATION=10 (seconds per load), BENCH_PIN=0, BENCH_SKIP_BUILD=1
set -euo pipefail
exec "$(dirname -- "${BASH_SOURCE[0]}")/compare.sh" --only http,floor --workers 1 "$@"
