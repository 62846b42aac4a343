#!/usr/bin/env bash
# The README's two commands, on a bare Debian (a `debian:bookworm` root shell
# has no make, compiler or pkg-config): install the Debian packages the target
# needs when missing (scripts/ensure-deps.sh: as root with apt-get, otherwise
# it prints the apt-get line and fails), then `make run` or `make test`.
# Usage: scripts/bootstrap.sh run|test [make arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  run|test) target=$1; shift ;;
  *) echo "usage: $0 run|test [make arguments]" >&2; exit 2 ;;
esac
scripts/ensure-deps.sh "$target"
exec make --no-print-directory "$target" "$@"
