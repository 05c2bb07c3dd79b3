#!/usr/bin/python3
"""Pinned numbers of every registered runnable rotation method (issue 10 section 1).

For the generated models `make-model --preset tiny|gqa --seed 0`, every runnable method of
`rotbench methods` with each of its cheap test variants (the registry's `test_variants`), at
W4A4KV4 with RTN and with GPTQ weights, runs `rotbench ppl` on a synthetic text produced here
(no shared data needed) and records perplexity, FP perplexity, KL and the largest orthogonality
error of the rotation set. `check` compares against the committed reference file and prints TAP;
`write` regenerates it and lists every cell that changed (paste that list into the commit
message, with the reason).

BLAS kernels round differently (PERF.md: OPENBLAS_CORETYPE), and 4-bit rounding decisions flip
with them, so the file holds one set of cells per BLAS core name. `check` uses the set of the core
the binary reports (tight tolerance) and falls back to the Haswell set with a loose tolerance when
there is none. `write --cores A,B` regenerates the named cores (OPENBLAS_CORETYPE=A, ...); a core
this CPU cannot run is dropped from the file, with a message.

    pinned.py check --bin build/rotbench [--ref tests/ref/pinned.json]
    pinned.py write --bin build/rotbench [--ref tests/ref/pinned.json] [--cores Haswell,SkylakeX,...]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

# Same BLAS core (and build): the numbers are deterministic, so any difference beyond summation-
# order noise is a behaviour change. 1e-6 leaves room for a reordered double reduction (~1e-12)
# flipping a handful of 4-bit rounding decisions (each moves ppl by ~1e-7 relative here) and
# still catches every real change seen so far (the smallest one moved a cell by 3e-5).
PIN_REL_TOL = 1e-6
# Another BLAS core (e.g. OPENBLAS_CORETYPE unset: AVX-512 kernels) rounds sgemm differently and
# flips many quantization decisions; only gross breakage is caught then.
PIN_REL_TOL_OTHER_CORE = 2e-2
# Orthogonality errors are rounding noise (1e-16..1e-12): a cell fails only when the error grows
# beyond this factor of the pinned value (floored at PIN_ORTH_FLOOR) or past the library's bound.
PIN_ORTH_FACTOR = 100.0
PIN_ORTH_FLOOR = 1e-14
RB_ROT_ORTH_TOL = 1e-10

MODELS = ("tiny", "gqa")
ALGOS = ("rtn", "gptq")
QUANT = "W4A4KV4"
SEQLEN = 64
WINDOWS = 8
CALIB_SAMPLES = 8
CALIB_BATCH = 2
SEED = 0


def synthetic_text():
    """About 30 KB of word soup from a fixed LCG: deterministic on every platform."""
    words = ("the a little girl boy dog cat sun tree house big small happy sad ran jumped saw found "
             "played with in on under over and but then one day she he they was were said look at "
             "very good bad friend mom dad ball park red blue green water flower bird fish car toy "
             "book to of").split()
    x, out = 12345, []
    for _ in range(6000):
        x = (1103515245 * x + 12345) % 2**31
        out.append(words[(x >> 8) % len(words)])
        if (x >> 4) % 11 == 0:
            out.append(".\n")
    return " ".join(out) + "\n"


# The core whose set a check on an unknown core falls back to (the documented machines' setting).
FALLBACK_CORE = "Haswell"
DEFAULT_CORES = "Haswell,SkylakeX,Cooperlake,Prescott"


def run(cmd, core=None):
    env = dict(os.environ)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), p.stderr[-2000:]))
    return p.stdout


def cells(rb):
    """(model, method, options, algo) of every cell, in a stable order."""
    methods = json.loads(run([rb, "methods"]))
    out = []
    for model in MODELS:
        for m in methods:
            if not m["runnable"]:
                continue
            for opts in m.get("test_variants") or [""]:
                for algo in ALGOS:
                    out.append((model, m["name"], opts, algo))
    return out


def key(c):
    model, method, opts, algo = c
    return "%s %s[%s] %s" % (model, method, opts, algo)


def measure(rb, tmp, c, core=None):
    model, method, opts, algo = c
    text = os.path.join(tmp, "text.txt")
    cmd = [rb, "ppl", os.path.join(tmp, model), "--text", text, "--text-range", "0.5:1", "--seqlen", str(SEQLEN),
           "--max-windows", str(WINDOWS), "--quant", QUANT, "--w-algo", algo, "--calib", text, "--calib-range",
           "0:0.5", "--calib-samples", str(CALIB_SAMPLES), "--calib-batch", str(CALIB_BATCH), "--seed", str(SEED),
           "--rotation", method]
    if opts:
        cmd += ["--rot-opt", opts]
    j = json.loads(run(cmd, core).strip().splitlines()[-1])
    return {"ppl": j["ppl"], "ppl_fp": j["ppl_fp"], "kl": j["kl"], "orth_error": j.get("orth_error", 0.0),
            "blas_core": j["blas_core"], "threads": j["threads"]}


def prepare(rb, tmp):
    with open(os.path.join(tmp, "text.txt"), "w") as f:
        f.write(synthetic_text())
    for m in MODELS:
        run([rb, "make-model", os.path.join(tmp, m), "--preset", m, "--seed", "0"])


def rel(a, b):
    if a is None or b is None:
        return math.inf if a != b else 0.0
    return abs(a - b) / max(abs(b), 1e-300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("check", "write"))
    ap.add_argument("--bin", required=True)
    ap.add_argument("--ref", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "pinned.json"))
    ap.add_argument("--cores", default=DEFAULT_CORES, help="write: OPENBLAS_CORETYPE values to regenerate")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rbpin.")
    try:
        prepare(a.bin, tmp)
        cs = cells(a.bin)
        if a.mode == "write":
            return write(a, tmp, cs)
        return check(a, tmp, cs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write(a, tmp, cs):
    doc = {"cores": {}}
    if os.path.exists(a.ref):
        with open(a.ref) as f:
            doc = json.load(f)
    for want in a.cores.split(","):
        try:
            got = measure(a.bin, tmp, cs[0], want)["blas_core"]
        except RuntimeError as e:
            print("core %s: cannot run here (%s): dropped" % (want, str(e).splitlines()[0]))
            doc["cores"].pop(want, None)
            continue
        if got != want:
            print("core %s: OpenBLAS ran %s instead: dropped" % (want, got))
            doc["cores"].pop(want, None)
            continue
        old = {c["cell"]: c for c in doc["cores"].get(want, {}).get("cells", [])}
        rows, threads = [], None
        for c in cs:
            r = measure(a.bin, tmp, c, want)
            r.pop("blas_core")
            threads = r.pop("threads")
            rows.append(dict(cell=key(c), **r))
            o = old.pop(key(c), None)
            if o is None:
                print("%-10s new      %s: ppl %.10g kl %.6g" % (want, key(c), r["ppl"], r["kl"]))
            elif any(rel(r[k], o[k]) > 0 for k in ("ppl", "ppl_fp", "kl")):
                print("%-10s changed  %s: ppl %.10g -> %.10g, kl %.6g -> %.6g, ppl_fp %.10g -> %.10g" %
                      (want, key(c), o["ppl"], r["ppl"], o["kl"], r["kl"], o["ppl_fp"], r["ppl_fp"]))
        for k in old:
            print("%-10s removed  %s" % (want, k))
        doc["cores"][want] = {"threads": threads, "cells": rows}
        print("core %s: %d cells (%d threads)" % (want, len(rows), threads))
    doc["about"] = "pinned numbers of every registered method, per BLAS core; regenerate with scripts/pin_numbers.sh"
    doc["setup"] = {"models": list(MODELS), "quant": QUANT, "seqlen": SEQLEN, "windows": WINDOWS,
                    "calib_samples": CALIB_SAMPLES, "calib_batch": CALIB_BATCH, "seed": SEED}
    doc["cores"] = dict(sorted(doc["cores"].items()))
    with open(a.ref, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s" % a.ref)
    return 0


def check(a, tmp, cs):
    with open(a.ref) as f:
        ref = json.load(f)["cores"]
    core = measure(a.bin, tmp, cs[0])["blas_core"]
    tol = PIN_REL_TOL
    if core not in ref:
        tol = PIN_REL_TOL_OTHER_CORE
        print("# no pinned numbers for BLAS core %s: comparing with %s at relative tolerance %g" %
              (core, FALLBACK_CORE, tol))
        core = FALLBACK_CORE
    pinned = {c["cell"]: c for c in ref[core]["cells"]}
    n = fails = 0

    def tap(ok, name, *why):
        nonlocal n, fails
        n += 1
        fails += not ok
        print("%s %d - %s" % ("ok" if ok else "not ok", n, name))
        for w in why:
            print("#   " + w)

    for c in cs:
        k = key(c)
        try:
            r = measure(a.bin, tmp, c)
        except RuntimeError as e:
            tap(False, k, str(e).splitlines()[0])
            continue
        p = pinned.pop(k, None)
        if p is None:
            tap(False, k, "no pinned value: run scripts/pin_numbers.sh and commit the file")
            continue
        bad = ["%s %.10g, pinned %.10g (rel %.2g > %g)" % (f, r[f], p[f], rel(r[f], p[f]), tol)
               for f in ("ppl", "ppl_fp", "kl") if not rel(r[f], p[f]) <= tol]
        orth_bound = min(max(PIN_ORTH_FACTOR * p["orth_error"], PIN_ORTH_FLOOR), RB_ROT_ORTH_TOL)
        if not r["orth_error"] <= orth_bound:
            bad.append("orth_error %.3g above %.3g (pinned %.3g)" % (r["orth_error"], orth_bound, p["orth_error"]))
        tap(not bad, "%s: ppl %.6f kl %.3e orth %.1e" % (k, r["ppl"], r["kl"], r["orth_error"]), *bad)
    for k in pinned:
        tap(False, k, "pinned but no longer run (method or variant removed?): regenerate the file")
    print("1..%d" % n)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
