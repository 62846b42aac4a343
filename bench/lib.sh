# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): logging, durations, and stopping
# and measuring the processes a script starts, through /proc.

log() { printf '[bench] %s\n' "$*" >&2; }

die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

duration_secs() { # duration (10, 10s, 2m) -> whole seconds (rounded up to at least 1)
  local d=$1
  [[ $d =~ ^([0-9]+)([smh]?)$ ]] || die "bad duration '$d' (use e.g. 10s, 2m)"
  local n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
  case $unit in m) n=$((n * 60)) ;; h) n=$((n * 3600)) ;; esac
  ((n > 0)) || n=1
  echo "$n"
}

proc_state() { # pid -> state letter, or nothing when gone
  local stat
  { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 0
  stat=${stat##*) }
  echo "${stat%% *}"
}

alive() { local s; s=$(proc_state "$1"); [[ -n $s && $s != Z && $s != X ]]; }

children_of() { # pid -> pids of its direct children
  local parent=$1 f stat fields
  for f in /proc/[0-9]*/stat; do
    { stat=$(<"$f"); } 2>/dev/null || continue
    read -r -a fields <<<"${stat##*) }"
    if [[ ${fields[1]:-} == "$parent" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
  done
  return 0
}

# Stop one of our children: SIGTERM, wait up to 10 s, then SIGKILL. Sets STOP_RC to its exit
# status. Not to be called in a subshell: only this shell can `wait` for its children.
STOP_RC=  # read by the callers after stop_pid
# shellcheck disable=SC2034
stop_pid() {
  local pid=$1 rc=0 deadline
  STOP_RC=
  [[ -n $pid ]] || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || rc=$?
  STOP_RC=$rc
}

status_kb() { # pid key -> value in kB of a /proc/<pid>/status field (0 when unavailable)
  local v
  v=$(awk -v k="$2:" '$1 == k { print $2; exit }' "/proc/$1/status" 2>/dev/null || true)
  echo "${v:-0}"
}

mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }

exit_text() { # exit status -> readable text
  if (($1 > 128)); then echo "status $1, killed by signal $(kill -l "$(($1 - 128))" 2>/dev/null || echo $(($1 - 128)))"
  else echo "status $1"; fi
}

