#!/usr/bin/python3
"""Independent float64 reference for rotbench's zero-shot task scoring.

Scores the first --limit documents of each task file with the stories260K HF
model (the float64 forward in ppl_ref.py, reused as is) and writes a golden
JSON file.  Prompt construction and request scoring follow
lm-evaluation-harness (loglikelihood / multiple_choice requests, the
context/continuation token split, left truncation to max_length) and, for the
HellaSwag text file, llama.cpp's llama-perplexity --hellaswag scoring.  The
rules are written here from their description (see README.md in this folder);
no code is shared with the C sources or copied from either project.

Only Debian's /usr/bin/python3 with numpy and python3-sentencepiece is needed.
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ppl_ref import Model, check_reference  # noqa: E402  (independent float64 HF-Llama forward)


# --------------------------------------------------------------------------
# model: log-softmax rows

def log_softmax(logits):
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Scorer:
    """Runs many token sequences through the model, batching sequences of equal length.

    Every sequence is an independent forward that starts at position 0.  Only
    sequences of exactly the same length share a batch (no padding), so a
    sequence's rows do not depend on what else is in the batch.
    """

    def __init__(self, model, max_batch_tokens2=16 * 512 * 512):
        self.model = model
        self.max_bt2 = max_batch_tokens2      # bounds B*T*T (attention scores)

    def run(self, seqs, fn):
        """seqs: list of int lists (model inputs).  fn(i, logp[T, V]) is called for each."""
        by_len = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        for T in sorted(by_len):
            idx = by_len[T]
            bmax = max(1, self.max_bt2 // (T * T))
            bmax = min(bmax, 64)
            for b0 in range(0, len(idx), bmax):
                chunk = idx[b0:b0 + bmax]
                arr = np.asarray([seqs[i] for i in chunk], dtype=np.int64)
                lp = log_softmax(self.model.forward(arr))   # [B, T, V] float64
                for k, i in enumerate(chunk):
                    fn(i, lp[k])


def score_rows(logp, first, targets):
    """Sum of logp[first + j, targets[j]] and whether each row's argmax is its target.

    np.argmax returns the first maximal index, as torch.argmax does for ties."""
    t = np.asarray(targets, dtype=np.int64)
    rows = logp[first:first + len(t)]
    lls = rows[np.arange(len(t)), t]
    ll = math.fsum(lls.tolist())
    greedy = bool(np.all(rows.argmax(axis=-1) == t))
    return ll, greedy


# --------------------------------------------------------------------------
# tokenizer

class Tok:
    def __init__(self, path, bos_id):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.bos = bos_id
        if self.sp.bos_id() != bos_id:
            raise SystemExit("tokenizer BOS %d != model BOS %d" % (self.sp.bos_id(), bos_id))
        self.cache = {}

    def encode(self, text):
        r = self.cache.get(text)
        if r is None:
            r = list(self.sp.encode(text))
            self.cache[text] = r
        return r


# --------------------------------------------------------------------------
# lm-eval request  (context, continuation) -> model input + scored span

def lm_request(tok, ctx, cont, bos, max_length):
    # move the context's trailing whitespace to the front of the continuation
    n = len(ctx) - len(ctx.rstrip())
    if n:
        cont = ctx[-n:] + cont
        ctx = ctx[:-n]
    pre = [tok.bos] if bos else []
    whole = pre + tok.encode(ctx + cont)
    ctx_ids = pre + tok.encode(ctx)
    cont_ids = whole[len(ctx_ids):]
    full = ctx_ids + cont_ids
    inp = full[-(max_length + 1):][:-1]
    truncated = len(full) > max_length + 1
    if not cont_ids:
        raise SystemExit("empty continuation for %r / %r" % (ctx[-40:], cont))
    if len(cont_ids) > len(inp):
        raise SystemExit("continuation longer than max_length")
    return {"inp": inp, "first": len(inp) - len(cont_ids), "targets": cont_ids,
            "truncated": truncated}


# --------------------------------------------------------------------------
# task loaders: each returns a list of docs {gold, reqs: [(ctx, cont, choice_len)]}

def read_jsonl(path, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if len(out) == limit:
                    break
    return out


def load_piqa(data, limit):
    docs = read_jsonl(os.path.join(data, "tasks/piqa/valid.jsonl"), limit)
    with open(os.path.join(data, "tasks/piqa/valid-labels.lst")) as f:
        labels = [int(x) for x in f.read().split()]
    out = []
    for d, g in zip(docs, labels):
        ctx = "Question: " + d["goal"] + "\nAnswer:"
        out.append({"gold": g, "reqs": [(ctx, " " + c, len(c)) for c in (d["sol1"], d["sol2"])]})
    return out


def load_arc(path):
    def f(data, limit):
        out = []
        for d in read_jsonl(os.path.join(data, path), limit):
            q = d["query"]
            if q.startswith("Question: "):
                q = q[len("Question: "):]
            ctx = "Question: " + q + "\nAnswer:"
            out.append({"gold": d["gold"], "reqs": [(ctx, " " + c, len(c)) for c in d["choices"]]})
        return out
    return f


def load_obqa(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "tasks/llm-foundry/openbook_qa.jsonl"), limit):
        out.append({"gold": d["gold"], "reqs": [(d["query"], " " + c, len(c)) for c in d["choices"]]})
    return out


def load_winogrande(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "tasks/llm-foundry/winogrande.jsonl"), limit):
        # lm-eval multiple-input form: the choices are the contexts, one shared continuation
        cont = " " + d["continuation"]
        out.append({"gold": d["gold"], "reqs": [(c, cont, len(c)) for c in d["context_options"]]})
    return out


def load_lambada(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "tasks/llm-foundry/lambada_openai.jsonl"), limit):
        text = d["context"] + " " + d["continuation"]
        words = text.split(" ")
        ctx = " ".join(words[:-1])
        cont = " " + words[-1]
        out.append({"gold": 0, "reqs": [(ctx, cont, len(cont))]})
    return out


def load_boolq(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "tasks/llm-foundry/boolq.jsonl"), limit):
        q = d["query"]
        if not q.startswith("Passage: "):
            raise SystemExit("boolq query without 'Passage: '")
        k = q.rfind("\nQuestion: ")
        passage = q[len("Passage: "):k]
        question = q[k + len("\nQuestion: "):]
        ctx = passage + "\nQuestion: " + question + "\nAnswer:"
        out.append({"gold": d["gold"], "reqs": [(ctx, " " + c, len(c)) for c in d["choices"]]})
    return out


def load_copa(data, limit):
    out = []
    for d in read_jsonl(os.path.join(data, "tasks/llm-foundry/copa.jsonl"), limit):
        q = d["query"]
        for conn in ("because", "therefore"):
            if q.endswith(", " + conn):
                ctx = q[:-len(", " + conn)] + " " + conn
                break
        else:
            raise SystemExit("copa query without final ', because'/', therefore': %r" % q)
        # lm-eval choice = " " + choice; the target delimiter " " is prepended too
        out.append({"gold": d["gold"], "reqs": [(ctx, "  " + c, len(" " + c)) for c in d["choices"]]})
    return out


TASKS = [
    # key, file, loader, metrics
    ("piqa", "tasks/piqa/valid.jsonl", load_piqa, ["acc", "acc_norm"]),
    ("arc_easy", "tasks/llm-foundry/arc_easy.jsonl", load_arc("tasks/llm-foundry/arc_easy.jsonl"), ["acc", "acc_norm"]),
    ("arc_challenge", "tasks/llm-foundry/arc_challenge.jsonl", load_arc("tasks/llm-foundry/arc_challenge.jsonl"),
     ["acc", "acc_norm"]),
    ("hellaswag", "tasks/hellaswag/hellaswag_val_full.txt", None, ["acc"]),
    ("winogrande", "tasks/llm-foundry/winogrande.jsonl", load_winogrande, ["acc"]),
    ("lambada_openai", "tasks/llm-foundry/lambada_openai.jsonl", load_lambada, ["acc", "ppl"]),
    ("boolq", "tasks/llm-foundry/boolq.jsonl", load_boolq, ["acc"]),
    ("openbookqa", "tasks/llm-foundry/openbook_qa.jsonl", load_obqa, ["acc", "acc_norm"]),
    ("copa", "tasks/llm-foundry/copa.jsonl", load_copa, ["acc"]),
]


def argmax_first(vals):
    best = 0
    for i in range(1, len(vals)):
        if vals[i] > vals[best]:
            best = i
    return best


# --------------------------------------------------------------------------
# llama.cpp hellaswag (tools/perplexity/perplexity.cpp hellaswag_score)

def load_hellaswag(data, limit):
    with open(os.path.join(data, "tasks/hellaswag/hellaswag_val_full.txt"), "rb") as f:
        raw = f.read()
    if raw.endswith(b"\n"):          # llama-perplexity -f drops one trailing '\n'
        raw = raw[:-1]
    lines = raw.decode("utf-8").split("\n")   # std::getline(..., '\n')
    if len(lines) % 6:
        raise SystemExit("hellaswag: line count not a multiple of 6")
    out = []
    for t in range(min(limit, len(lines) // 6)):
        blk = lines[6 * t:6 * t + 6]
        out.append({"context": blk[0], "gold": int(blk[1]), "endings": blk[2:6]})
    return out


def hellaswag_requests(tok, docs, max_length):
    reqs = []
    for d in docs:
        seqs = [[tok.bos] + tok.encode(d["context"] + " " + e) for e in d["endings"]]
        cp = 0
        while all(cp < len(s) for s in seqs) and all(s[cp] == seqs[0][cp] for s in seqs):
            cp += 1
        d["common_prefix"] = cp
        for s in seqs:
            if cp < 1 or cp >= len(s):
                raise SystemExit("hellaswag: degenerate common prefix")
            if len(s) > max_length:
                raise SystemExit("hellaswag: sequence longer than the context")
            # logits at positions cp-1 .. len-2 score tokens cp .. len-1
            reqs.append({"inp": s[:-1], "first": cp - 1, "targets": s[cp:], "truncated": False})
    return reqs


# --------------------------------------------------------------------------

def sig12(x):
    return float("%.12g" % x)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def run_requests(scorer, reqs):
    res = [None] * len(reqs)

    def fn(i, lp):
        r = reqs[i]
        res[i] = score_rows(lp, r["first"], r["targets"])
    scorer.run([r["inp"] for r in reqs], fn)
    return res


def evaluate(docs, reqs, res, choice_lens, mode):
    """docs: list of gold; reqs grouped per doc.  Returns metrics and the compact per-doc rows."""
    rows, acc, acc_norm, k = [], 0, 0, 0
    lls_all = []
    for di, (gold, nreq) in enumerate(docs):
        ent, lls, norms = [], [], []
        for j in range(nreq):
            ll, greedy = res[k]
            n = len(reqs[k]["targets"])
            ent.append([sig12(ll), int(greedy), n, int(reqs[k]["truncated"]), choice_lens[k]])
            lls.append(ll)
            if mode == "llamacpp":
                norms.append(ll / n)
            else:
                norms.append(ll / choice_lens[k])
            k += 1
        if mode == "llamacpp":
            acc += argmax_first(norms) == gold
        elif nreq == 1:                       # lambada: acc = is_greedy
            acc += ent[0][1]
            lls_all.append(lls[0])
        else:
            acc += argmax_first(lls) == gold
            acc_norm += argmax_first(norms) == gold
        rows.append([gold, ent])
    nd = len(docs)
    m = {"acc": acc / nd, "acc_norm": acc_norm / nd, "n_docs": nd,
         "n_truncated": sum(int(r["truncated"]) for r in reqs)}
    if lls_all:
        m["ppl"] = math.exp(-math.fsum(lls_all) / len(lls_all))
    return m, rows


def c_tokenizer_check(tok, rotbench, tok_bin, strings):
    """Compare SentencePiece ids with `rotbench tokenize` for each string (no BOS)."""
    bad = []
    with tempfile.TemporaryDirectory() as td:
        fn = os.path.join(td, "s.txt")
        for s in strings:
            with open(fn, "wb") as f:
                f.write(s.encode("utf-8"))
            p = subprocess.run([rotbench, "tokenize", "--tokenizer", tok_bin, "--file", fn],
                               capture_output=True, text=True)
            if p.returncode != 0:
                bad.append((s, "rc=%d %s" % (p.returncode, p.stderr.strip()[:200])))
                continue
            got = json.loads(p.stdout)
            ref = tok.encode(s)
            if got != ref:
                bad.append((s, {"c": got, "sp": ref}))
    return bad


def write_json(path, head, tasks):
    """Readable but compact: one line per document."""
    lines = ["{"]
    for k, v in head.items():
        lines.append("  %s: %s," % (json.dumps(k), json.dumps(v)))
    lines.append('  "tasks": {')
    tk = list(tasks)
    for ti, name in enumerate(tk):
        t = tasks[name]
        lines.append("    %s: {" % json.dumps(name))
        for k, v in t.items():
            if k != "bos":
                lines.append("      %s: %s," % (json.dumps(k), json.dumps(v)))
        lines.append('      "bos": {')
        bk = list(t["bos"])
        for bi, b in enumerate(bk):
            e = t["bos"][b]
            lines.append("        %s: {" % json.dumps(b))
            for k, v in e.items():
                if k != "docs":
                    lines.append("          %s: %s," % (json.dumps(k), json.dumps(v)))
            lines.append('          "docs": [')
            for di, d in enumerate(e["docs"]):
                lines.append("            " + json.dumps(d, separators=(",", ":")) +
                             ("," if di + 1 < len(e["docs"]) else ""))
            lines.append("          ]")
            lines.append("        }" + ("," if bi + 1 < len(bk) else ""))
        lines.append("      }")
        lines.append("    }" + ("," if ti + 1 < len(tk) else ""))
    lines.append("  }")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)   # sanity
    with open(path, "w") as f:
        f.write(text)
    return len(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--model", default=None, help="HF model dir (default DATA/stories260K/hf)")
    ap.add_argument("--tokenizer", default=None,
                    help="SentencePiece model (default DATA/stories260K/tok512.reconstructed.model)")
    ap.add_argument("--limit", type=int, default=100, help="first N documents of every task file")
    ap.add_argument("--tasks", default=",".join(t[0] for t in TASKS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--check-ref", default=None,
                    help="reference-logits dir for the forward check (default DATA/stories260K/reference; '' skips)")
    ap.add_argument("--check-c-tokenizer", default=None, metavar="ROTBENCH",
                    help="compare the tokenization of sample prompt strings with `ROTBENCH tokenize`")
    ap.add_argument("--c-tokenizer-samples", type=int, default=3, help="strings per task for that check")
    args = ap.parse_args()

    t0 = time.time()
    data = args.data
    model_dir = args.model or os.path.join(data, "stories260K/hf")
    tok_path = args.tokenizer or os.path.join(data, "stories260K/tok512.reconstructed.model")
    check_dir = args.check_ref if args.check_ref is not None else os.path.join(data, "stories260K/reference")
    model = Model(model_dir)
    max_length = int(model.cfg["max_position_embeddings"])
    bos_id = int(model.cfg.get("bos_token_id", 1))
    tok = Tok(tok_path, bos_id)
    scorer = Scorer(model)
    if check_dir:
        diff, am, n = check_reference(model, check_dir)
        print("forward check: %d positions, max |logit diff| = %.3e, argmax identical: %s" % (n, diff, am),
              file=sys.stderr)

    wanted = [t for t in args.tasks.split(",") if t]
    head = {
        "generator": "tests/ref/task_ref.py (independent float64 numpy; lm-eval request semantics, "
                     "llama.cpp hellaswag_score for the HellaSwag text file)",
        "model": "stories260K/hf",
        "model_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
        "tokenizer": "SentencePiece stories260K/tok512.reconstructed.model",
        "max_length": max_length,
        "limit": args.limit,
        "bos_token_id": bos_id,
        "request_fields": ["ll", "greedy", "n_cont_tokens", "truncated", "choice_chars"],
        "doc_layout": "[gold, [request, ...]]",
    }
    tasks_out = {}
    summary = []
    tok_samples = []
    for key, rel, loader, metrics in TASKS:
        if key not in wanted:
            continue
        ts = time.time()
        path = os.path.join(data, rel)
        entry = {"file": rel, "file_sha256": sha256_file(path), "metrics": metrics}
        if key == "hellaswag":
            hdocs = load_hellaswag(data, args.limit)
            reqs = hellaswag_requests(tok, hdocs, max_length)
            res = run_requests(scorer, reqs)
            clens = [len(e) for d in hdocs for e in d["endings"]]
            m, rows = evaluate([(d["gold"], 4) for d in hdocs], reqs, res, clens, "llamacpp")
            del m["acc_norm"]
            entry["bos"] = {"llamacpp": dict(m, docs=rows)}
            entry["common_prefix"] = [d["common_prefix"] for d in hdocs]
            summary.append((key, "llamacpp", m))
            for d in hdocs[:args.c_tokenizer_samples]:
                tok_samples.append(d["context"] + " " + d["endings"][0])
        else:
            docs = loader(data, args.limit)
            flat = [r for d in docs for r in d["reqs"]]
            clens = [r[2] for r in flat]
            entry["bos"] = {}
            for bos_name, bos in (("none", False), ("tokenizer-default", True)):
                reqs = [lm_request(tok, c, x, bos, max_length) for c, x, _ in flat]
                res = run_requests(scorer, reqs)
                m, rows = evaluate([(d["gold"], len(d["reqs"])) for d in docs], reqs, res, clens, "lmeval")
                if "acc_norm" not in metrics:
                    del m["acc_norm"]
                entry["bos"][bos_name] = dict(m, docs=rows)
                summary.append((key, bos_name, m))
            for c, x, _ in flat[:args.c_tokenizer_samples]:
                n = len(c) - len(c.rstrip())
                cc, xx = (c[:-n], c[-n:] + x) if n else (c, x)
                tok_samples.extend([cc, cc + xx])
        tasks_out[key] = entry
        print("  %-15s %.1f s" % (key, time.time() - ts), file=sys.stderr)

    t1 = time.time()
    if args.out:
        size = write_json(args.out, head, tasks_out)
        print("wrote %s (%d bytes)" % (args.out, size), file=sys.stderr)

    print("%-15s %-18s %7s %9s %10s %5s" % ("task", "bos", "acc", "acc_norm", "ppl", "trunc"), file=sys.stderr)
    for key, b, m in summary:
        print("%-15s %-18s %7.3f %9s %10s %5d" % (
            key, b, m["acc"], "%.3f" % m["acc_norm"] if "acc_norm" in m else "-",
            "%.4f" % m["ppl"] if "ppl" in m else "-", m["n_truncated"]), file=sys.stderr)
    print("scoring time %.1f s, total %.1f s" % (t1 - t0, time.time() - t0), file=sys.stderr)

    if args.check_c_tokenizer:
        tok_bin = os.path.join(data, "stories260K/tok512.bin")
        bad = c_tokenizer_check(tok, args.check_c_tokenizer, tok_bin, tok_samples)
        print("C tokenizer check: %d strings, %d differ" % (len(tok_samples), len(bad)), file=sys.stderr)
        for s, why in bad:
            print("  DIFF %r: %s" % (s[:80], why), file=sys.stderr)
        if bad:
            sys.exit(1)


if __name__ == "__main__":
    main()
