#!/usr/bin/env bash
# Where the gateway's time goes under load: builds the gateway with frame pointers
# (build/fp), runs it on the benchmarks' config (1 worker), loads it with wrk (HTTP) or
# bench/wsload (WebSocket) at 50 connections, and records `perf record -g` on the serving
# process for a few seconds. Prints the self time grouped by layer (Lua VM, malloc/free,
# kernel, libwebsockets, libuv, cjson, our C, ...) and the top symbols.
#
# Usage: bench/profile.sh [--ws] [--seconds 5] [--conns 50] [--keep DIR]
#   --ws         profile the WebSocket path instead of HTTP
#   --keep DIR   copy perf.data (and the binary's path) to DIR for `perf report -i`
# Environment passed to the gateway as it is (for instance GATEWAY_BENCH_PROBE=fixed).
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$BENCH_DIR/.." && pwd -P)
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

TRANSPORT=http SECS=5 CONNS=50 KEEP=
while (($# > 0)); do
  case $1 in
    --ws) TRANSPORT=ws ;;
    --seconds) SECS=${2:?}; shift ;;
    --conns) CONNS=${2:?}; shift ;;
    --keep) KEEP=${2:?}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ $SECS =~ ^[1-9][0-9]*$ && $CONNS =~ ^[1-9][0-9]*$ ]] || die "--seconds and --conns take positive numbers"
for tool in perf wrk cc taskset timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required (scripts/ensure-deps.sh bench)"
done

# The Makefile's OPT is the place for code-generation flags; BUILD keeps this build apart.
log "building build/fp/gateway with -fno-omit-frame-pointer"
make -C "$ROOT" --no-print-directory BUILD=build/fp OPT="-O2 -g -fno-omit-frame-pointer" build/fp/gateway >&2
GATEWAY_BIN=$ROOT/build/fp/gateway START_TIMEOUT=20
WSLOAD=$ROOT/build/bench/wsload
if [[ ! -x $WSLOAD || $BENCH_DIR/wsload.c -nt $WSLOAD ]]; then
  mkdir -p "$(dirname -- "$WSLOAD")"
  cc -O2 -Wall -Wextra -o "$WSLOAD" "$BENCH_DIR/wsload.c"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gateway-profile.XXXXXX")
GATEWAY_PID='' LOAD_PID='' PERF_PID=''
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $PERF_PID ]]; then stop_pid "$PERF_PID"; fi
  if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID"; fi
  if [[ -n $GATEWAY_PID ]]; then stop_pid "$GATEWAY_PID"; fi
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

NCPU=$(nproc)
SRV=() CLI=()
if ((NCPU >= 2)); then SRV=(taskset -c 0); CLI=(taskset -c $((NCPU - 1))); fi
write_example_config "$TMP/gateway.lua" "c.servers.websocket = c.servers.websocket or {}
c.servers.websocket.enabled = true
c.servers.websocket.path = '/ws'
c.redis = c.redis or {}
c.redis.url = [==[unix://$TMP/no-redis.sock]==]"
launch_gateway "$TMP/gateway.lua" "$TMP/out" "$TMP/err" "${SRV[@]}"
PORT=$GATEWAY_PORT
log "gateway pid $GATEWAY_PID on port $PORT; load: $TRANSPORT, $CONNS connections, $((SECS + 3)) s"

if [[ $TRANSPORT == http ]]; then
  timeout $((SECS + 30)) "${CLI[@]}" wrk -t 1 -c "$CONNS" -d "$((SECS + 3))s" --timeout 5s \
    -s "$BENCH_DIR/wrk-report.lua" "http://127.0.0.1:$PORT/api/randomNumber" >"$TMP/load.out" 2>&1 &
else
  timeout $((SECS + 60)) "${CLI[@]}" "$WSLOAD" load 127.0.0.1 "$PORT" /ws "$CONNS" "$((SECS + 3))" \
    >"$TMP/load.out" 2>&1 &
fi
LOAD_PID=$!
sleep 1
perf record -q -g -o "$TMP/perf.data" -p "$GATEWAY_PID" -- sleep "$SECS" >"$TMP/perf.log" 2>&1 &
PERF_PID=$!
wait "$PERF_PID" || { cat "$TMP/perf.log" >&2; die "perf record failed"; }
PERF_PID=
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_PID=
alive "$GATEWAY_PID" || die "the gateway died under load"
result=$(grep -m1 -E '^(BENCH_RESULT|WSLOAD_RESULT) ' "$TMP/load.out" || true)
if ((rc != 0)) || [[ -z $result ]]; then cat "$TMP/load.out" >&2; die "the load failed (status $rc)"; fi
stop_pid "$GATEWAY_PID"
GATEWAY_PID=
check_clean_exit "$STOP_RC" "$TMP/err"

perf report -i "$TMP/perf.data" --no-children --sort dso,sym --stdio -g none --percent-limit 0 \
  2>/dev/null | grep -E '^ +[0-9.]+%' >"$TMP/self.txt" || true
[[ -s $TMP/self.txt ]] || die "perf report gave no samples"
samples=$(perf report -i "$TMP/perf.data" --stdio -g none 2>/dev/null | sed -n 's/^# Samples: \([^ ]*\) .*/\1/p' | head -n1)

echo
echo "## perf: gateway under $CONNS-connection $TRANSPORT load, ${SECS} s, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "- load: ${result#* }"
echo "- binary: build/fp/gateway (-O2 -g -fno-omit-frame-pointer); ${samples:-?} samples; system libraries as Debian builds them"
echo
echo "| layer | self time |"
echo "|---|---:|"
awk '
  { pct = $1; sub(/%/, "", pct); dso = $2; sym = $0; sub(/^.*\] /, "", sym)
    if (dso ~ /kernel|vmlinux|\[vdso\]/) k = "kernel"
    else if (dso ~ /liblua/) k = "Lua VM (liblua5.4)"
    else if (dso ~ /^libc[.-]/ && sym ~ /malloc|free|realloc|calloc|_int_|tcache|consolidate|arena|sysmalloc|unlink_chunk|alloc_perturb/) k = "malloc/free (glibc)"
    else if (dso ~ /^libc[.-]/ && sym ~ /^(epoll_|__libc_|__send|__recv|send|recv|read$|write|__GI___|accept|close$|getpeername|getsockname|setsockopt|__ioctl|ioctl)/) k = "libc syscall wrappers"
    else if (dso ~ /^libc[.-]/) k = "libc other (memcpy, strings, printf...)"
    else if (dso ~ /libwebsockets/) k = "libwebsockets"
    else if (dso ~ /libuv/) k = "libuv"
    else if (dso ~ /cjson/) k = "cjson"
    else if (dso ~ /pcre2/) k = "pcre2"
    else if (dso ~ /libm[.-]/) k = "libm"
    else if (dso == "gateway") k = "our C (gateway binary)"
    else k = "other: " dso
    t[k] += pct }
  END { for (k in t) printf "| %s | %.1f %% |\n", k, t[k] }' "$TMP/self.txt" | sort -t'|' -k3 -rn
echo
echo "Top symbols (self):"
echo
echo '```'
head -n 30 "$TMP/self.txt"
echo '```'
if [[ -n $KEEP ]]; then
  mkdir -p "$KEEP"
  cp "$TMP/perf.data" "$KEEP/perf.data"
  echo "perf data kept: perf report -i $KEEP/perf.data (binary $GATEWAY_BIN)"
fi
finish
