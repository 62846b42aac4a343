#!/bin/sh
# Run libFuzzer targets for a fixed time each (make fuzz-run, test-fuzz, fuzz-long):
#   scripts/fuzz.sh [-j JOBS] FUZZ_DIR SECONDS TARGET...
# Each target replays fuzz/corpus/<target> (the seeds, read-only) and
# FUZZ_DIR/corpus-<target> (what earlier runs found), then explores for
# SECONDS, writing new inputs to FUZZ_DIR/corpus-<target>, a crash to
# FUZZ_DIR/crash-<target>-*, its output to FUZZ_DIR/<target>.log, and one
# line per run to FUZZ_DIR/runs.log (date, target, seconds, executions,
# result) so the time fuzzed adds up. JOBS targets run at once (default 1).
# fuzz/<target>.options, when there is one, holds more libFuzzer flags.
# Exits non-zero if any target found a crash, a leak or a timeout.
set -eu
jobs=1
if [ "${1:-}" = "-j" ]; then jobs=$2; shift 2; fi
dir=$1 seconds=$2
shift 2
mkdir -p "$dir"

one() {
    t=$1
    mkdir -p "$dir/corpus-$t"
    start=$(date +%s)
    status=ok
    # -timeout: one input may not take 10 s; -rss_limit_mb: nor grow past 2 GB.
    # fuzz/<target>.options adds flags of its own.
    opts=$(cat "fuzz/$t.options" 2>/dev/null || true)
    # shellcheck disable=SC2086
    "$dir/$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/crash-$t-" $opts \
        "$dir/corpus-$t" "fuzz/corpus/$t" >"$dir/$t.log" 2>&1 || status=FAILED
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$t.log" | tail -n 1)
    printf '%s %s %ss %s execs %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$t" "$((end - start))" \
        "${execs:-?}" "$status" >>"$dir/runs.log"
    echo "== fuzz $t: $((end - start)) s, ${execs:-?} executions, $status"
    if [ "$status" != ok ]; then
        tail -n 60 "$dir/$t.log"
        return 1
    fi
}

if [ "$jobs" -le 1 ]; then
    failed=0
    for t in "$@"; do one "$t" || failed=1; done
    exit $failed
fi
# In parallel: JOBS lanes, target i in lane i mod JOBS, each lane in turn.
failed=0
pids=""
lane=0
while [ "$lane" -lt "$jobs" ]; do
    (
        i=0 rc=0
        for t in "$@"; do
            if [ $((i % jobs)) -eq "$lane" ]; then one "$t" || rc=1; fi
            i=$((i + 1))
        done
        exit $rc
    ) &
    pids="$pids $!"
    lane=$((lane + 1))
done
for p in $pids; do wait "$p" || failed=1; done
exit $failed
