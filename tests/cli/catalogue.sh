#!/bin/bash
# The bad-input catalogue (docs/bad-inputs.md, issue 16) holds: every expect_fail case of tests/cli/*.sh is
# cited there, and every test it cites exists (scripts/check_bad_inputs.py, whose output is the diagnostic).
source "$(dirname "$0")/tap.sh"

SRC="${RB_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

out=$("$PY" "$SRC/scripts/check_bad_inputs.py" "$SRC" 2>&1); rc=$?
summary=$(printf '%s\n' "$out" | tail -n 1)
if [ "$rc" -eq 0 ]; then
  ok "docs/bad-inputs.md cites every expect_fail case and only existing tests ($summary)"
else
  mapfile -t lines <<< "$out"
  not_ok "docs/bad-inputs.md is out of step with the tests (scripts/check_bad_inputs.py exit $rc)" "${lines[@]}"
fi
done_testing
