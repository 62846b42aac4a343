# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): logging, durations, stopping and
# measuring the processes a script starts (through /proc), and writing the gateway's config
# and starting it (these read ROOT, GATEWAY_BIN and START_TIMEOUT from the script).

log() { printf '[bench] %s\n' "$*" >&2; }

die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# A run prints its figures whatever happened, then fails (exit 1) if a load had errors or
# the gateway died or did not exit 0 after SIGTERM: figures of a broken build are not figures.
BENCH_FAILURES=()
fail_later() { log "FAIL: $*"; BENCH_FAILURES+=("$*"); }
finish() { # exit status of the run, after the report
  ((${#BENCH_FAILURES[@]} == 0)) && return 0
  local f
  for f in "${BENCH_FAILURES[@]}"; do printf '[bench] failed: %s\n' "$f" >&2; done
  exit 1
}

# After stop_pid of the gateway: fail the run unless it exited 0; show its log's tail.
check_clean_exit() { # exit-status stderr-file
  if [[ $1 != 0 ]]; then
    fail_later "the gateway exited with $(exit_text "$1") after SIGTERM (expected 0)"
    tail -n 10 "$2" >&2 || true
  fi
}

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


# Write to $1 the config the benchmarks run: gateway.lua.example ($ROOT's) with every path
# made absolute (relative ones would resolve against the config's folder), one worker,
# loopback only, no response metadata, the TCP server off and warning-level logs. $2, Lua
# lines editing `c`, comes last.
write_example_config() { # file [extra lua]
  cat >"$1" <<EOF
local root = [==[$ROOT]==]
local c = dofile(root .. "/gateway.lua.example")
local function abs(p)
  if type(p) == "string" and p:sub(1, 1) ~= "/" then return root .. "/" .. p end
  return p
end
c.paths = c.paths or {}
c.paths.actions = c.paths.actions or { "actions" }
c.paths.middleware = c.paths.middleware or { "middleware" }
c.paths.routes = c.paths.routes or "routes.lua"
c.paths.public = c.paths.public or "public"
for k, v in pairs(c.paths) do
  if type(v) == "table" then
    for i, p in ipairs(v) do v[i] = abs(p) end
  else
    c.paths[k] = abs(v)
  end
end
for _, m in ipairs(c.modules or {}) do m.path = abs(m.path) end
c.workers = 1
c.servers = c.servers or {}
c.servers.web = c.servers.web or {}
c.servers.web.host = "127.0.0.1"
c.servers.web.metadata = false
if c.servers.socket then c.servers.socket.enabled = false end
c.logging = c.logging or {}
c.logging.level = "warning"
${2:-}
return c
EOF
}

# Start $GATEWAY_BIN with config $1, stdout to $2 and stderr to $3, under the command prefix
# in the remaining arguments (e.g. taskset -c 0), and wait up to $START_TIMEOUT seconds for
# its "listening web" line. Sets GATEWAY_PID and GATEWAY_PORT; dies, showing its output, when
# it exits or stays silent.
GATEWAY_PORT=
launch_gateway() { # config stdout stderr [prefix...]
  local cfg=$1 out=$2 err=$3 port='' tries
  shift 3
  log "starting the gateway"
  "$@" "$GATEWAY_BIN" --config "$cfg" --port 0 --log-level warning >"$out" 2>"$err" &
  GATEWAY_PID=$!
  for ((tries = START_TIMEOUT * 10; tries > 0; tries--)); do
    port=$(sed -n 's#^listening web http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$out" | head -n1)
    [[ -n $port ]] && break
    alive "$GATEWAY_PID" || break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    log "gateway stdout:"; cat "$out" >&2 || true
    log "gateway stderr:"; tail -n 30 "$err" >&2 || true
    if alive "$GATEWAY_PID"; then
      die "the gateway printed no 'listening web http://127.0.0.1:<port>' line within ${START_TIMEOUT}s"
    fi
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=
    die "the gateway exited during startup ($(exit_text "$STOP_RC"))"
  fi
  GATEWAY_PORT=$port
}
