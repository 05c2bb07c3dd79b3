#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs the rotbench test suite; ends with
# "N passed, N failed, N skipped" counted over individual TAP test cases.
# Usage: scripts/test.sh [BUILD_DIR] [extra meson setup args...]
# RB_TEST_TIMEOUT_MULTIPLIER=N scales every test's timeout (meson test -t N): sanitizer builds on a
# busy machine need 3-5.
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
python3 scripts/tap_summary.py "$build/meson-logs/testlog.json"
src=$?
[ $rc -eq 0 ] && [ $src -eq 0 ]
