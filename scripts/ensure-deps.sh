#!/usr/bin/env bash
# Make sure the Debian packages a target needs are installed.
# Usage: scripts/ensure-deps.sh build|test|run|bench
# As root it installs what is missing (apt-get update once first); otherwise
# it prints the exact apt-get line to run and fails.
set -euo pipefail

build=(make gcc pkg-config liblua5.4-dev libwebsockets-dev libwebsockets-evlib-uv
       libuv1-dev libpcre2-dev libhiredis-dev lua-cjson-dev lua-cjson
       libhttp-parser-dev libssl-dev
       libnghttp2-dev)   # HTTP/2 framing and HPACK (core/net/h2.c)
case "${1:-build}" in
  build) want=("${build[@]}") ;;
  run)   want=("${build[@]}" redis-server) ;;
  test)  want=("${build[@]}" redis-server libcmocka-dev lua5.4 lua-busted
               python3 python3-pytest python3-websockets curl openssl groff-base systemd procps iproute2
               clang libclang-rt-14-dev
               chromium    # the browser client's tests (headless, over DevTools)
               nghttp2-client python3-h2)   # HTTP/2 clients for tests/integration/test_http2.py
         # The OpenAPI validator (tests/integration/openapi/install.sh) needs node and npm:
         # Debian's, unless a Node.js with its own npm is there already (NodeSource's
         # nodejs bundles npm and conflicts with Debian's npm package).
         command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm) ;;
  bench) want=("${build[@]}" wrk nghttp2-client nginx libnginx-mod-http-lua lua-nginx-websocket
               redis-server redis-tools linux-perf) ;;
  *) echo "usage: $0 build|run|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "missing packages; run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
