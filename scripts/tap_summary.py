"""Counts individual TAP test cases in meson's testlog.json files (one per build directory) and
prints the closing line 'N passed, N failed, N skipped'. A test program without TAP output (the
fuzz short runs) counts as one case by its result; one that failed without reporting a failing case
counts as one failure. Exit status 1 when anything failed.
Usage: tap_summary.py TESTLOG.json [TESTLOG.json ...] [--skipped N] (N more skipped, e.g. a stage
that could not run)."""
import json
import re
import sys

passed = failed = skipped = 0
args = sys.argv[1:]
if "--skipped" in args:
    i = args.index("--skipped")
    skipped += int(args[i + 1])
    del args[i:i + 2]
for path in args:
    with open(path, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            out = t.get("stdout", "") or ""
            cases = [l for l in out.splitlines() if re.match(r"^(not )?ok\b", l)]
            p = sum(1 for l in cases if l.startswith("ok") and "# SKIP" not in l)
            s = sum(1 for l in cases if l.startswith("ok") and "# SKIP" in l)
            n = sum(1 for l in cases if l.startswith("not ok"))
            result = t.get("result")
            if not cases and result == "OK":
                p = 1  # a plain exit-status test
            elif not cases and result == "SKIP":
                s = 1
            if result not in ("OK", "SKIP", "EXPECTEDFAIL") and n == 0:
                n = 1  # crashed or timed out before reporting a failing case
            passed, failed, skipped = passed + p, failed + n, skipped + s
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
