#!/bin/bash
# rotbench tasks (issue 13): FP and quantized scoring with the paired comparison, packed == separate,
# the per-request TSV, and bad input (file:line errors, exit 2).
source "$(dirname "$0")/tap.sh"

if ! need_data stories260K/hf || ! need_data tasks/piqa/valid.jsonl || ! need_data tasks/llm-foundry/copa.jsonl; then
  echo "1..0 # SKIP shared data absent"; exit 0
fi
export RB_HADAMARD_DIR="$DATA/hadamard"
M=("$DATA/stories260K/hf" --tokenizer "$DATA/stories260K/tok512.bin")
T=(--task piqa="$DATA/tasks/piqa/valid.jsonl" --task copa="$DATA/tasks/llm-foundry/copa.jsonl" --limit 30)
js() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }

fp=$("$RB" tasks "${M[@]}" "${T[@]}" --docs-out "$TMP/fp.tsv" 2>"$TMP/err") || not_ok "FP run" "$(tail -3 "$TMP/err")"
[ "$(echo "$fp" | js 'sorted(d["tasks"])')" = "['copa', 'piqa']" ] && ok "FP: one entry per task" || not_ok "FP tasks" "$fp"
[ "$(echo "$fp" | js 'sorted(d["tasks"]["piqa"])')" = "['acc', 'acc_norm', 'file', 'format', 'n', 'scoring', 'truncated']" ] \
  && ok "FP piqa: acc and acc_norm, no FP reference" || not_ok "FP piqa keys" "$fp"
[ "$(echo "$fp" | js '"acc_norm" in d["tasks"]["copa"], d["tasks"]["copa"]["n"]')" = "False 30" ] \
  && ok "copa reports acc only (lm-eval's metric list), limit 30" || not_ok "copa keys" "$fp"
[ "$(wc -l < "$TMP/fp.tsv")" -eq 121 ] && ok "docs-out: header + 2 requests x 60 documents" || not_ok "tsv lines" "$(wc -l < "$TMP/fp.tsv")"

sep=$("$RB" tasks "${M[@]}" "${T[@]}" --separate 2>/dev/null)
[ "$(echo "$fp" | js 'd["tasks"]["piqa"]["acc"], d["tasks"]["copa"]["acc"]')" = "$(echo "$sep" | js 'd["tasks"]["piqa"]["acc"], d["tasks"]["copa"]["acc"]')" ] \
  && ok "packed and separate scoring agree" || not_ok "separate" "$fp" "$sep"
[ "$(echo "$sep" | js 'd["tokens_forward"] == d["tokens_request"]')" = True ] && [ "$(echo "$fp" | js 'd["tokens_forward"] < d["tokens_request"]')" = True ] \
  && ok "shared contexts run once when packed" || not_ok "token counts" "$fp" "$sep"

q=$("$RB" tasks "${M[@]}" "${T[@]}" --quant W4A4KV4 --rotation hadamard 2>"$TMP/err") || not_ok "quantized run" "$(tail -3 "$TMP/err")"
[ "$(echo "$q" | js 'd["tasks"]["piqa"]["fp"]["acc"] == '"$(echo "$fp" | js 'd["tasks"]["piqa"]["acc"]')")" = True ] \
  && ok "quantized run: its FP reference equals the FP run" || not_ok "fp ref" "$q"
[ "$(echo "$q" | js 'sorted(d["tasks"]["piqa"]["paired_acc"])')" = "['ci_hi', 'ci_lo', 'delta', 'n_fp_only', 'n_q_only', 'p_mcnemar']" ] \
  && ok "paired comparison per task" || not_ok "paired" "$q"
[ "$(echo "$q" | js '(lambda p: abs(p["delta"] - (p["n_q_only"] - p["n_fp_only"]) / 30) < 1e-9 and p["ci_lo"] <= p["delta"] <= p["ci_hi"])(d["tasks"]["piqa"]["paired_acc"])')" = True ] \
  && ok "delta = discordant counts / n, inside its interval" || not_ok "delta" "$q"

expect_fail "unknown task" 2 "unknown task" "$RB" tasks "${M[@]}" --task nope="$DATA/tasks/piqa/valid.jsonl"
printf '{"goal": "a", "sol1": "b", "sol2": "c"}\n{"goal": "a", "sol1": "b"}\n' > "$TMP/p.jsonl"
printf '0\n1\n' > "$TMP/p-labels.lst"
expect_fail "missing key: file:line" 2 "p.jsonl:2: .*sol2" "$RB" tasks "${M[@]}" --task piqa="$TMP/p.jsonl"
printf '{"query": "q", "choices": ["a", "b"], "gold": 2}\n' > "$TMP/c.jsonl"
expect_fail "label out of range: file:line" 2 "c.jsonl:1: .*gold" "$RB" tasks "${M[@]}" --task copa="$TMP/c.jsonl"
[ "$(echo "$fp" | js 'd["max_length"], d["bos"]')" = "512 none" ] && ok "resolved max_length (the model's) and BOS recorded" || not_ok "max_length" "$fp"
expect_fail "--bos value" 2 "expected none or tokenizer-default" "$RB" tasks "${M[@]}" "${T[@]}" --bos yes
done_testing
