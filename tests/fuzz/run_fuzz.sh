#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time and prints a one-line summary.
#   run_fuzz.sh EXE NAME SEED_DIR WORK_DIR SECONDS [libFuzzer args...]
# New inputs go to WORK_DIR/corpus (the seed directory is only read); a crash, leak, timeout or
# out-of-memory input is written to WORK_DIR/artifacts/ and the exit status is non-zero.
# The full libFuzzer log is WORK_DIR/fuzz.log (its tail is printed on failure).
set -u
exe=$1 name=$2 seeds=$3 work=$4 secs=$5
shift 5
mkdir -p "$work/corpus" "$work/artifacts"
# Seeds cut from ../shared/data (whole tokenizer files, a few task lines) never enter the repository:
# make_seeds.py writes them into the work directory when the shared data is present.
python3 "$(dirname "$0")/make_seeds.py" --shared-to "$work/shared-seeds" >/dev/null 2>&1 || true
extra=()
[ -d "$work/shared-seeds/$name" ] && extra=("$work/shared-seeds/$name")
# -detect_leaks=0 (the HDF5 targets: the library leaks on its own error paths) also turns off the
# exit-time leak report, which would otherwise be counted as a crash of the empty input
leaks=1
for a in "$@"; do [ "$a" = "-detect_leaks=0" ] && leaks=0; done
# every input is written to a file the parser opens: on a tmpfs that is 4x the executions of /tmp on disk
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=$leaks:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
log="$work/fuzz.log"
start=$(date +%s)
"$exe" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds" "${extra[@]}" >"$log" 2>&1 &
fpid=$!
wait $fpid
rc=$?
end=$(date +%s)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ -z "$execs" ]; then # killed before the final stats: the last status line
  execs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
fi
# The HDF5 targets fork probes (rb_h5_probe): a probe that libhdf5 crashes is refused by rotbench, but it
# is a fork of this libFuzzer process, so it prints its own sanitizer report and writes a crash-* file
# too. Only the fuzzer process's own end counts: its exit status (and its crash file). Reports of other
# pids are the probes', counted apart. slow-unit-* files are inputs that merely took long: not crashes.
crashes=0 artifact=
if [ $rc -ne 0 ]; then
  crashes=1
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | grep -v '/slow-unit-' | tail -n 1)
fi
probes=$(grep -Eo '^==[0-9]+==ERROR' "$log" | grep -vc "^==$fpid==")
echo "fuzz_$name: executions ${execs:-0}, crashes $crashes, $((end - start)) s, exit $rc${artifact:+, crash file $artifact}$([ "$probes" -gt 0 ] && echo ", $probes probe children crashed by libhdf5 (refused)")"
if [ $rc -ne 0 ]; then
  echo "---- tail of $log ----"
  grep -E 'ERROR|SUMMARY|#[0-9]+ 0x|Test unit|runtime error|timeout|out-of-memory|leak' "$log" | head -n 40
fi
exit $rc
