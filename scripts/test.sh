#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs the rotbench test suite: the unit and CLI suites in
# BUILD_DIR, then a 30 s libFuzzer run of every fuzz target (tests/fuzz, built by clang with
# ASan/UBSan in build-fuzz; issue 16). Ends with "N passed, N failed, N skipped" counted over individual
# TAP test cases (a fuzz target is one case).
# Usage: scripts/test.sh [BUILD_DIR] [extra meson setup args...]
# RB_TEST_TIMEOUT_MULTIPLIER=N scales every test's timeout (meson test -t N): sanitizer builds on a
# busy machine need 3-5. RB_TEST_FUZZ=0 skips the fuzz stage (its 13 targets count as skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || { echo "0 passed, 1 failed"; exit 1; }
build=${1:-build}
shift || true
if [ -d "$build" ] && [ -f "$build/build.ninja" ]; then
  meson setup --reconfigure "$build" "$@" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
else
  meson setup "$build" "$@" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$build" || { echo "0 passed, 1 failed"; exit 1; }
meson test -C "$build" --suite unit --suite cli --num-processes 2 --print-errorlogs \
  -t "${RB_TEST_TIMEOUT_MULTIPLIER:-1}"
rc=$?
logs=("$build/meson-logs/testlog.json")
n_fuzz=$(ls tests/fuzz/fuzz_*.c | wc -l) # one target per file
fuzz_skipped=0
if [ "${RB_TEST_FUZZ:-1}" = 0 ]; then
  echo "# SKIPPED: fuzz stage ($n_fuzz targets): RB_TEST_FUZZ=0" >&2; fuzz_skipped=$n_fuzz
elif ! bash scripts/fuzz.sh --build; then
  echo "fuzz stage: build failed (scripts/fuzz.sh --build)" >&2; rc=1
else
  meson test -C build-fuzz --suite fuzz --num-processes 2 --print-errorlogs -t "${RB_TEST_TIMEOUT_MULTIPLIER:-1}" || rc=1
  logs+=(build-fuzz/meson-logs/testlog.json)
fi
python3 scripts/tap_summary.py "${logs[@]}" --skipped "$fuzz_skipped"
src=$?
[ $rc -eq 0 ] && [ $src -eq 0 ]
