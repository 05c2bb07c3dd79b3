#!/usr/bin/env bash
# Regenerates tests/ref/pinned.json (the pinned numbers of every registered method) for every BLAS
# core this CPU runs, and lists the cells that changed: put that list and the reason in the commit
# message. Usage: scripts/pin_numbers.sh [BUILD_DIR] [--cores Haswell,SkylakeX,...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build=$1; shift; fi
ninja -C "$build" rotbench >/dev/null
python3 tests/ref/pinned.py write --bin "$build/rotbench" "$@"
