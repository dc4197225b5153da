#!/bin/sh
# Runs each fuzz harness for FUZZ_SECONDS (default 60) on a fresh copy of its
# seed corpus and prints one table of what each did (`make fuzz`; see
# tests/fuzz/README.md). Usage: tests/fuzz/run.sh BUILD_DIR NAME...
#
# Inputs that crash, leak, time out or allocate too much are left in
# BUILD_DIR/fuzz/crashes/NAME/ and make the script fail; the full libFuzzer
# output is in BUILD_DIR/fuzz/logs/NAME.log.
set -u
build=$1
shift
secs=${FUZZ_SECONDS:-60}
here=$(cd "$(dirname "$0")" && pwd)
# The harnesses' temporary files, in memory when possible, removed at the
# end even when an input crashed a harness before it could clean up.
base=${TMPDIR:-}
if [ -z "$base" ]; then
    base=/tmp
    [ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
fi
work=$(mktemp -d "$base/kerasc-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
TMPDIR=$work
export TMPDIR

# named datasets are never downloaded while fuzzing
KERASC_OFFLINE=1
export KERASC_OFFLINE

# stacks for UBSan reports too
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export UBSAN_OPTIONS

# Largest input per harness: a few times the largest seed.
max_len() {
    case $1 in
    keras_archive | checkpoint | safetensors | npz) echo 16384 ;;
    config | keras_json) echo 12288 ;;
    *) echo 4096 ;;
    esac
}

# The last value of "KEY: N" in a log, or -.
last_stat() {
    v=$(grep -o "$2 *[0-9][0-9]*" "$1" | tail -n 1 | grep -o '[0-9][0-9]*$')
    echo "${v:--}"
}

status=0
failed=""
table=$work/table
printf '%-14s %10s %8s %8s %7s  %s\n' harness execs cov ft corpus result >"$table"
for name in "$@"; do
    bin=$build/fuzz/fuzz_$name
    corpus=$build/fuzz/corpus/$name
    crashes=$build/fuzz/crashes/$name
    log=$build/fuzz/logs/$name.log
    rm -rf "$corpus"
    mkdir -p "$corpus" "$crashes" "$build/fuzz/logs"
    cp "$here/seeds/$name"/* "$corpus"/
    set -- -max_total_time="$secs" -max_len="$(max_len "$name")" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 \
        -artifact_prefix="$crashes/"
    [ -f "$here/$name.dict" ] && set -- "$@" -dict="$here/$name.dict"
    echo "== fuzz_$name for ${secs}s"
    "$bin" "$@" "$corpus" >"$log" 2>&1
    rc=$?
    execs=$(last_stat "$log" 'stat::number_of_executed_units:')
    cov=$(last_stat "$log" 'cov:')
    ft=$(last_stat "$log" 'ft:')
    units=$(ls "$corpus" | wc -l)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        status=1
        failed="$failed $name"
        unit=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
        result="FAILED (exit $rc) ${unit:-see $log}"
        grep -m 1 -E 'ERROR|runtime error|invariant broken|out-of-memory|timeout' "$log" | cut -c1-200
    fi
    printf '%-14s %10s %8s %8s %7s  %s\n' "$name" "$execs" "$cov" "$ft" "$units" "$result" >>"$table"
done
echo
cat "$table"
if [ $status -ne 0 ]; then
    echo
    echo "make fuzz: failures in:$failed"
    echo "Logs are in $build/fuzz/logs/. Reproduce one with $build/fuzz/fuzz_NAME FILE;"
    echo "keep it as a regression test in tests/fuzz/crashes/NAME/ (tests/fuzz/README.md)."
fi
exit $status
