#!/usr/bin/env bash
# Print one of the two commands of README.md's first code block: `run` is its
# first command, `test` its second. Fails unless the block holds exactly two
# (comments after `#` and blank lines aside), so .ci/run and the tests run the
# README's commands as written, never a copy that could drift.
# Usage: scripts/readme-commands.sh run|test [README]
set -euo pipefail
which=${1:-}
readme=${2:-"$(dirname "$0")/../README.md"}
case "$which" in run) n=1 ;; test) n=2 ;; *) echo "usage: $0 run|test [README]" >&2; exit 2 ;; esac
mapfile -t cmds < <(awk '
  /^```/ { if (inblock) exit; inblock = 1; next }
  inblock { sub(/[ \t]+#.*$/, ""); sub(/^#.*$/, ""); sub(/[ \t]+$/, ""); if ($0 != "") print }
' "$readme")
if [ "${#cmds[@]}" -ne 2 ]; then
  echo "$readme: the first code block must hold exactly two commands (run, test); it holds ${#cmds[@]}" >&2
  exit 1
fi
printf '%s\n' "${cmds[$((n - 1))]}"
