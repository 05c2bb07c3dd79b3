#!/usr/bin/env python3
"""Mean ± sd over seeds of a sweep directory, as a markdown table (the tables of
docs/results-stories260K.md).

  scripts/seed_table.py DIR [--metric ppl|kl] [--by order|batch|samples] [--corpus NAME] [--rotbench PATH]
  scripts/seed_table.py DIR --paired BASELINE [--metric ppl|kl] [--corpus NAME]

Rows are method labels (with --by: calibration order / batch / samples, one column pair per
method); columns are the quantization settings ("W4A4KV4 GPTQ"). --paired BASELINE: per method,
the mean ± sd over seeds of (method − BASELINE) on the same seed and setting (runs of one seed share
calibration windows), and how many seeds it is negative. --corpus: the evaluation corpus (data.eval name)
to tabulate; default the first one of the sweep. Reads `rotbench export DIR --csv`
and, for --by, each run's config.yaml. Python standard library only."""
import argparse
import collections
import csv
import re
import statistics
import subprocess
import sys


def fmt(v, metric):
    f = "%.3f" if metric == "kl" else "%.2f"
    if not v:
        return "—"
    s = f % statistics.mean(v)
    return s + (" ± " + f % statistics.stdev(v) if len(v) > 1 else "")


def calib_value(run_dir, key):
    text = open(run_dir + "/config.yaml", encoding="utf-8").read()
    m = re.search(r"^  calib:\n(?:    .*\n)*?    " + key + r": (\S+)$", text, re.M)
    return m.group(1) if m else "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--metric", default="ppl", choices=["ppl", "kl"])
    ap.add_argument("--by", choices=["order", "batch", "samples"])
    ap.add_argument("--rotbench", default="build/rotbench")
    ap.add_argument("--paired", metavar="BASELINE")
    ap.add_argument("--corpus", metavar="NAME")
    a = ap.parse_args()
    out = subprocess.run([a.rotbench, "export", a.dir, "--csv"], capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr.strip())
    rows = [r for r in csv.DictReader(out.stdout.splitlines()) if r["status"] == "done"]
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    corpus = a.corpus or (corpora[0] if corpora else None)
    if corpus not in corpora and rows:
        sys.exit("no corpus %r in %s (have: %s)" % (corpus, a.dir, ", ".join(corpora)))
    rows = [r for r in rows if r["corpus"] == corpus]
    if len(corpora) > 1:
        print("corpus %s (of %s)" % (corpus, ", ".join(corpora)), file=sys.stderr)
    if a.paired:
        return paired(rows, a.paired, a.metric)
    cells = collections.defaultdict(list)
    methods, settings, keys = [], [], []
    for r in rows:
        setting = r["quant"] + " " + r["w_algo"].upper()
        key = calib_value(a.dir + "/" + r["dir"], a.by) if a.by else r["method"]
        col = (r["method"], setting) if a.by else setting
        for lst, v in ((methods, r["method"]), (settings, setting), (keys, key)):
            if v not in lst:
                lst.append(v)
        cells[(key, col)].append(float(r[a.metric]))
    if a.by:
        cols = [(m, s) for s in settings for m in methods]
        print("| %s | %s |" % (a.by, " | ".join("%s %s" % (m, s) for m, s in cols)))
    else:
        cols = settings
        print("| method | %s |" % " | ".join(cols))
    print("|---" * (len(cols) + 1) + "|")
    # methods in run order; the labels of one method in natural order ("rank=8" before "rank=16")
    base = lambda k: str(k).split("[")[0]
    first = {}
    for k in keys:
        first.setdefault(base(k), len(first))
    natural = lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(k))]
    keys.sort(key=lambda k: (first[base(k)], natural(k)))
    for k in keys:
        print("| %s | %s |" % (k, " | ".join(fmt(cells[(k, c)], a.metric) for c in cols)))


def paired(rows, base, metric):
    val = {(r["method"], r["quant"] + " " + r["w_algo"].upper(), r["seed"]): float(r[metric]) for r in rows}
    settings = list(dict.fromkeys(k[1] for k in val))
    methods = [m for m in dict.fromkeys(k[0] for k in val) if m != base]
    f = "%+.3f" if metric == "kl" else "%+.2f"
    print("| %s − %s | %s |" % (metric, base, " | ".join(settings)))
    print("|---" * (len(settings) + 1) + "|")
    for m in methods:
        cells = []
        for st in settings:
            d = [v - val[(base, st, sd)] for (mm, ss, sd), v in val.items() if mm == m and ss == st and (base, st, sd) in val]
            if not d:
                cells.append("—")
                continue
            sdv = (" ± " + f % statistics.stdev(d)).replace("+", "") if len(d) > 1 else ""
            cells.append("%s%s (%d/%d seeds lower)" % (f % statistics.mean(d), sdv, sum(x < 0 for x in d), len(d)))
        print("| %s | %s |" % (m, " | ".join(cells)))


if __name__ == "__main__":
    main()
