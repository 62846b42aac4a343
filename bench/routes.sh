#!/usr/bin/env bash
# Route matching benchmark: µs per match with 10, 100 and 1,000 web routes and handler
# patterns, in process (no network), using the gateway's Lua router and pcre2 binding.
#
# Usage: bench/routes.sh     BENCH_ROUTES_SECONDS=0.3 (time per measurement)
# See bench/README.md for the figures and how to read them.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
make --no-print-directory build/lua/gateway/core.so >&2
exec lua5.4 bench/routes.lua
