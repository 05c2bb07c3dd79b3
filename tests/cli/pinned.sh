#!/bin/bash
# Pinned numbers of every registered method (tests/ref/pinned.py; regenerate: scripts/pin_numbers.sh).
set -u
exec python3 "${RB_SOURCE_ROOT:?}/tests/ref/pinned.py" check --bin "${RB_BIN:?}"
