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

# ---------------------------------------------------------------- process trees and CPU time

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

tree_pids() { # pid -> it and its descendants, one per line (nothing when it is gone)
  local queue=("$1") p kids
  while ((${#queue[@]} > 0)); do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    alive "$p" || continue
    echo "$p"
    if [[ -r /proc/$p/task/$p/children ]]; then
      kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
    else
      kids=$(children_of "$p")
    fi
    # shellcheck disable=SC2206  # a list of pids
    [[ -z ${kids// /} ]] || queue+=($kids)
  done
}

# CPU time of a server in clock ticks: utime + stime of the process and of every live
# descendant (/proc/<pid>/stat fields 14 and 15), plus the root's cutime + cstime (16, 17:
# children it already reaped), so a worker that exits between two readings is still counted.
cpu_ticks() { # root-pid -> ticks
  local pids
  mapfile -t pids < <(tree_pids "$1")
  ((${#pids[@]} > 0)) || { echo 0; return 0; }
  local files=() p
  for p in "${pids[@]}"; do files+=("/proc/$p/stat"); done
  awk -v root="/proc/$1/stat" '
    { f = FILENAME; sub(/^.*\) /, ""); n = split($0, v, " ")
      t += v[12] + v[13]; if (f == root) t += v[14] + v[15] }
    END { printf "%d\n", t }' "${files[@]}" 2>/dev/null || echo 0
}

ticks_us() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%d", t * 1000000 / hz }'; }

# User + system CPU time of this shell's reaped children, in µs, from the `times` builtin
# (its second line). Runs in this shell: `$(times)` would report a fresh subshell's zeros.
CHILD_CPU_US=0  # read by the callers after children_cpu
# shellcheck disable=SC2034
children_cpu() { # tmp-file -> sets CHILD_CPU_US
  times >"$1"
  CHILD_CPU_US=$(awk 'NR == 2 {
      t = 0
      for (i = 1; i <= 2; i++) { s = $i; m = s; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", s); sub(/s$/, "", s)
                                  t += m * 60 + s }
      printf "%d", t * 1000000 }' "$1")
}

# ---------------------------------------------------------------- plain HTTP over /dev/tcp

# One request on a fresh connection (Connection: close), 5 s limit. Prints the raw answer,
# with \r removed.
http_request() { # port method path [json-body]
  # shellcheck disable=SC2016  # expanded by the inner bash
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    if [[ -n $4 ]]; then
      printf "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" "$2" "$3" "${#4}" "$4" >&3
    else
      printf "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" "$3" >&3
    fi
    cat <&3' _ "$1" "$2" "$3" "${4:-}" 2>/dev/null | tr -d '\r' || true
}

http_status() { head -n1 <<<"$1" | awk '{ print $2 }'; }  # raw answer -> status code
http_body() { sed '1,/^$/d' <<<"$1"; }                     # raw answer -> body

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() { # a loopback port nobody listens on now
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return 0
  fi
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! port_open "$p"; then echo "$p"; return 0; fi
  done
  die "could not find a free loopback port"
}

# ---------------------------------------------------------------- nginx

nginx_bin() { # nginx is in /usr/sbin, which a normal user's PATH may lack
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

find_nginx_module() { # file name -> absolute path, or nothing
  local name=$1 dir conf rel
  for dir in /usr/lib/nginx/modules /usr/share/nginx/modules /usr/lib64/nginx/modules \
             /usr/local/lib/nginx/modules /etc/nginx/modules; do
    if [[ -f $dir/$name ]]; then echo "$dir/$name"; return 0; fi
  done
  # Debian's modules-available/*.conf name the module relative to nginx's prefix.
  for conf in /usr/share/nginx/modules-available/*.conf /etc/nginx/modules-enabled/*.conf; do
    [[ -f $conf ]] || continue
    rel=$(sed -n "s#^[[:space:]]*load_module[[:space:]]\{1,\}\"\{0,1\}\([^\";]*$name\)\"\{0,1\};.*#\1#p" "$conf" | head -n1)
    [[ -n $rel ]] || continue
    [[ $rel == /* ]] || rel=/usr/share/nginx/$rel
    if [[ -f $rel ]]; then echo "$rel"; return 0; fi
  done
  return 0
}
