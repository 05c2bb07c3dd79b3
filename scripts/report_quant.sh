#!/usr/bin/env bash
# Quantization report on stories260K: perplexity / ppl_fp / KL of every preset with RTN and GPTQ
# weights, per-layer kurtosis of the down_proj input, and the forward / GPTQ benchmarks.
# Prints Markdown on stdout (progress on stderr); docs/quant-stories260K.md is its output.
#
# Protocol: WikiText-2 train is not available here, so GPTQ calibrates on the first half of
# wiki.test.raw's tokens (--calib-range 0:0.5, 128 windows of 512 at uniform random starts, seed 0)
# and perplexity is measured on the second half (--text-range 0.5:1, gptq protocol, seqlen 512,
# disjoint windows).
#
# Usage: scripts/report_quant.sh [> docs/quant-stories260K.md]
# Environment:
#   RB          rotbench binary           (default build/rotbench)
#   BENCH_GPTQ  bench_gptq binary         (default: beside RB's build, tests/bench/bench_gptq; skipped if absent)
#   DATA        shared data directory     (default $RB_SHARED_DATA, else ../shared/data)
#   OUT         directory for raw outputs (default: a new /tmp/report_quant.XXXXXX)
#   PRESETS     presets to run            (default: the nine below)
#   CALIB_SAMPLES, SEQLEN                 (default 128, 512)
#   MAX_WINDOWS  evaluation windows (default all; a small value is for a smoke test only)
#   SKIP_BENCH=1 leaves out the two benchmarks
# Takes ~20–40 min on two shared cores (one ppl run reads 790 windows twice: quantized and FP).
set -euo pipefail
cd "$(dirname "$0")/.."

RB=${RB:-build/rotbench}
DATA=${DATA:-${RB_SHARED_DATA:-../shared/data}}
BENCH_GPTQ=${BENCH_GPTQ:-$(dirname "$(dirname "$(dirname "$RB")")")/tests/bench/bench_gptq}
PRESETS=${PRESETS:-"W16A16 W4A16 W8A8 W6A6 W4A8 W4A4 W4A4KV4 W3A3 W3A3KV3"}
CALIB_SAMPLES=${CALIB_SAMPLES:-128}
SEQLEN=${SEQLEN:-512}
MODEL=$DATA/stories260K/hf
TEXT=$DATA/wikitext-2/wiki.test.raw
STATS_PRESET=W4A4KV4 # the run (GPTQ) that also writes --stats

command -v jq >/dev/null || { echo "report_quant.sh: jq is required" >&2; exit 1; }
[ -x "$RB" ] || { echo "report_quant.sh: $RB not built (set RB=...)" >&2; exit 1; }
for f in "$MODEL/config.json" "$TEXT"; do
  [ -e "$f" ] || { echo "report_quant.sh: missing $f (set DATA=...)" >&2; exit 1; }
done
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d /tmp/report_quant.XXXXXX); fi
mkdir -p "$OUT"

log() { echo "[report_quant $(date +%T)] $*" >&2; }
load1() { cut -d' ' -f1-3 /proc/loadavg; }

# Model and text paths as printed in the report (relative to the data directory).
BASE=(ppl '$D/stories260K/hf' --text '$D/wikitext-2/wiki.test.raw' --text-range 0.5:1 --seqlen "$SEQLEN")
if [ -n "${MAX_WINDOWS:-}" ]; then BASE+=(--max-windows "$MAX_WINDOWS"); fi
CAL=(--calib '$D/wikitext-2/wiki.test.raw' --calib-range 0:0.5 --calib-samples "$CALIB_SAMPLES" --calib-seqlen "$SEQLEN")

declare -a LOADS=()
# run NAME ARGS...: one ppl run; JSON into $OUT/NAME.json, wall time and load averages recorded.
run_ppl() {
  local name=$1; shift
  local args=("$@") real=()
  for a in "${args[@]}"; do real+=("${a//\$D/$DATA}"); done
  if [ -s "$OUT/$name.json" ]; then log "$name: reusing $OUT/$name.json"; return; fi
  local l0 t0 t1
  l0=$(load1); t0=$(date +%s)
  log "$name: rotbench ${args[*]} (load $l0)"
  "$RB" "${real[@]}" >"$OUT/$name.json.tmp" 2>"$OUT/$name.log"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  t1=$(date +%s)
  echo "${args[*]}" >"$OUT/$name.cmd"
  echo "$name	$((t1 - t0))	$l0	$(load1)" >>"$OUT/timing.tsv"
  log "$name: $(cat "$OUT/$name.json") ($((t1 - t0)) s)"
}

# Run metadata, kept in $OUT so that a rerun on the same OUT (which reuses finished runs) reports
# the original measurement: start date, load, commit of the tree the binary was built from.
meta() { # meta KEY [VALUE]: read, or write once
  if [ $# -gt 1 ] && [ ! -s "$OUT/meta.$1" ]; then printf '%s\n' "$2" >"$OUT/meta.$1"; fi
  cat "$OUT/meta.$1" 2>/dev/null || echo -
}
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')" >/dev/null
meta uptime_start "$(uptime)" >/dev/null
meta t_start "$(date +%s)" >/dev/null
meta commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >/dev/null
meta dirty "$(git diff --quiet HEAD -- src 2>/dev/null && echo clean || echo 'with uncommitted changes in src/')" >/dev/null

for p in $PRESETS; do
  run_ppl "$p.rtn" "${BASE[@]}" --quant "$p" --w-algo rtn
  if [ "$p" = W16A16 ]; then continue; fi # no weight quantization: GPTQ does not run (see note)
  if [ "$p" = "$STATS_PRESET" ]; then
    run_ppl "$p.gptq" "${BASE[@]}" --quant "$p" --w-algo gptq "${CAL[@]}" --stats "$OUT/$p.gptq.stats.tsv"
  else
    run_ppl "$p.gptq" "${BASE[@]}" --quant "$p" --w-algo gptq "${CAL[@]}"
  fi
done
run_ppl W4A16.gptq-ao "${BASE[@]}" --quant W4A16 --w-algo gptq --act-order "${CAL[@]}"

# run_bench NAME CMD...: once per OUT, output into $OUT/NAME.json, load before/after recorded.
run_bench() {
  local name=$1; shift
  if [ -s "$OUT/$name.json" ]; then log "$name: reusing $OUT/$name.json"; return; fi
  log "$name: $*"
  meta "$name.load0" "$(uptime)" >/dev/null
  "$@" >"$OUT/$name.json.tmp" 2>"$OUT/$name.log" || echo "($name failed; see $OUT/$name.log)" >>"$OUT/$name.json.tmp"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  meta "$name.load1" "$(uptime)" >/dev/null
}
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  run_bench bench_forward "$RB" bench forward --quant W4A4KV4 --reps 3
  if [ -x "$BENCH_GPTQ" ]; then run_bench bench_gptq "$BENCH_GPTQ"; fi
fi
meta uptime_end "$(uptime)" >/dev/null
meta t_end "$(date +%s)" >/dev/null
START_DATE=$(meta date) START_UPTIME=$(meta uptime_start) END_UPTIME=$(meta uptime_end)
T_START=$(meta t_start) T_END=$(meta t_end)
BENCH_LOAD0=$(meta bench_forward.load0) BENCH_LOAD1=$(meta bench_forward.load1)
GPTQ_LOAD0=$(meta bench_gptq.load0) GPTQ_LOAD1=$(meta bench_gptq.load1)

# ---- Markdown ---------------------------------------------------------------------------------
j() { jq -r "$2 // \"—\"" "$OUT/$1.json"; }
# wall time of a run: evaluation plus weight quantization (reported apart since issue 10)
tot() { jq -r '(.seconds // 0) + (.seconds_wquant // 0)' "$OUT/$1.json"; }
fmt() { # number with 4 decimals, "—" for null
  local v=$1
  if [ "$v" = "—" ] || [ "$v" = null ]; then echo "—"; else printf '%.4f' "$v"; fi
}
fmt3() { if [ "$1" = "—" ]; then echo "—"; else printf '%.3f' "$1"; fi; }

cat <<EOF
# Quantization on stories260K: RTN vs GPTQ, all presets

Produced by \`scripts/report_quant.sh\` on $START_DATE
(tree at start: commit \`$(meta commit)\` $(meta dirty); binary \`$RB\`; raw outputs in \`$OUT\`).
Total wall time: $(((T_END - T_START) / 60)) min.

**Machine load.** 2 cores shared with other builds and tests; every timing below is affected.

- start: \`$START_UPTIME\`
- end:   \`$END_UPTIME\`

## Protocol

- Model: \`stories260K/hf\` (5 layers, dim 64, FFN 172, 8 heads / 4 KV heads, vocab 512, fp32).
- **WikiText-2 train is not available**: the test text \`wikitext-2/wiki.test.raw\` is tokenized
  once (BOS first) and split by token count. Perplexity: second half (\`--text-range 0.5:1\`),
  gptq protocol (disjoint windows of $SEQLEN, every next-token prediction scored).
  GPTQ calibration: $CALIB_SAMPLES windows of $SEQLEN at uniform random starts in the first half
  (\`--calib-range 0:0.5\`, seed 0). Calibration and evaluation tokens are disjoint.
- Presets (README "Quantization presets"): weights symmetric per output channel with MSE clip
  search; activations (inputs of q/k/v, o, gate/up, down) per token asymmetric; K/V asymmetric per
  (token, head); embeddings, lm_head, Q and attention probabilities FP. No rotation.
- GPTQ: damping 0.01, blocks of 128, sequential groups {q,k,v} {o} {gate,up} {down}, Hessians from
  FP activations of inputs through the already quantized layers; without act-order unless noted.
- \`ppl_fp\` is the FP model on the same windows (same run), KL = mean over scored tokens of
  KL(p_fp ‖ p_q) in nats.

Commands (\`D\` = the shared data directory, \`rotbench\` = \`$RB\`):

\`\`\`sh
EOF
for p in $PRESETS; do
  for a in rtn gptq; do [ -f "$OUT/$p.$a.cmd" ] && echo "rotbench $(cat "$OUT/$p.$a.cmd")"; done
done
echo "rotbench $(cat "$OUT/W4A16.gptq-ao.cmd")"
cat <<EOF
rotbench bench forward --quant W4A4KV4 --reps 3
$BENCH_GPTQ
\`\`\`

## Perplexity (WikiText-2 test, second half, seqlen $SEQLEN)

FP perplexity on these windows: **$(fmt "$(j W16A16.rtn .ppl_fp)")** ($(j W16A16.rtn .windows) windows, $(j W16A16.rtn .scored_tokens) scored tokens).

| preset | ppl RTN | ppl GPTQ | Δppl GPTQ−RTN | KL RTN | KL GPTQ | ppl_fp | s RTN | s GPTQ (of which GPTQ) |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for p in $PRESETS; do
  r=$p.rtn
  if [ "$p" = W16A16 ]; then
    printf '| %s | %s | = RTN¹ | — | %s | = RTN¹ | %s | %.0f | — |\n' "$p" "$(fmt "$(j $r .ppl)")" \
      "$(fmt "$(j $r .kl)")" "$(fmt "$(j $r .ppl_fp)")" "$(j $r .seconds)"
    continue
  fi
  g=$p.gptq
  pr=$(j $r .ppl) pg=$(j $g .ppl)
  d="—"
  if [ "$pr" != "—" ] && [ "$pg" != "—" ]; then d=$(awk -v a="$pg" -v b="$pr" 'BEGIN{printf "%+.3f", a-b}'); fi
  printf '| %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f (%.0f) |\n' "$p" "$(fmt "$pr")" "$(fmt "$pg")" "$d" \
    "$(fmt "$(j $r .kl)")" "$(fmt "$(j $g .kl)")" "$(fmt "$(j $r .ppl_fp)")" "$(tot $r)" "$(tot $g)" \
    "$(j $g .seconds_wquant)"
done
g=W4A16.gptq-ao
cat <<EOF
| W4A16, GPTQ act-order | $(fmt "$(j W4A16.rtn .ppl)") | $(fmt "$(j $g .ppl)") | $(awk -v a="$(j $g .ppl)" -v b="$(j W4A16.rtn .ppl)" 'BEGIN{printf "%+.3f", a-b}') | $(fmt "$(j W4A16.rtn .kl)") | $(fmt "$(j $g .kl)") | $(fmt "$(j $g .ppl_fp)") | $(printf %.0f "$(tot W4A16.rtn)") | $(printf %.0f "$(tot $g)") ($(printf %.0f "$(j $g .seconds_wquant)")) |

¹ W16A16 quantizes nothing, so \`--w-algo gptq\` runs no GPTQ and gives the same numbers as RTN
(asserted bitwise by \`tests/unit/eval/test_qeval.c\`); it was not re-run. The $STATS_PRESET GPTQ
run also wrote \`--stats\` (statistics do not change the results; its time includes them).
Seconds are wall time of the whole run (quantized + FP stream + scoring) on the loaded machine.

EOF

# ---- kurtosis of down_in per layer, from the stats TSV -----------------------------------------
TSV=$OUT/$STATS_PRESET.gptq.stats.tsv
cat <<EOF
## Kurtosis of the down_proj input (\`down_in\`) per layer

From \`--stats\` of the $STATS_PRESET GPTQ run. \`fp_\`: FP model (identical for every preset: it
is the reference stream); \`q_\`: the quantized model's activations before their quantizer.
Pearson kurtosis (not excess; Gaussian 3, max for width 172 ≈ 170.0) per token over the 172
channels, mean and median over the $(j W16A16.rtn .windows)×$SEQLEN tokens. act_mse =
Σ‖Q(x)−x‖²/Σ‖x‖² of the 4-bit per-token quantizer at this site.

| layer | fp kurt mean | fp kurt median | fp kurt max channel | q kurt mean | q kurt median | act_mse (4-bit) |
|---:|---:|---:|---:|---:|---:|---:|
EOF
awk -F'\t' '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  function v(name,   x) { x = $(col[name]); return x == "" ? "—" : sprintf("%.3f", x) }
  function e(name,   x) { x = $(col[name]); return x == "" ? "—" : sprintf("%.4g", x) }
  $1 == "act" && $3 == "down_in" {
    printf "| %d | %s | %s | %s | %s | %s | %s |\n", $2, v("fp_kurt_token_mean"), v("fp_kurt_token_median"),
      v("fp_kurt_channel_max"), v("q_kurt_token_mean"), v("q_kurt_token_median"), e("act_mse")
  }' "$TSV"

cat <<EOF

(\`fp kurt max channel\` is the largest per-channel kurtosis over tokens.) For comparison, the
other linear inputs of the FP model (token-mean kurtosis, per layer):

| layer | attn_in | o_in | mlp_in | down_in |
|---:|---:|---:|---:|---:|
EOF
awk -F'\t' '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  $1 == "act" { k[$2 "," $3] = $(col["fp_kurt_token_mean"]); if ($2 + 0 > L) L = $2 + 0 }
  END { for (l = 0; l <= L; l++) printf "| %d | %.3f | %.3f | %.3f | %.3f |\n", l, k[l ",attn_in"], k[l ",o_in"],
        k[l ",mlp_in"], k[l ",down_in"] }' "$TSV"

cat <<EOF

### GPTQ vs RTN layer reconstruction loss ($STATS_PRESET run)

tr((W−Q)H(W−Q)ᵀ) on each layer's calibration Hessian, GPTQ and RTN (same per-channel clip-searched
grid), summed over the linears of a group; and the block output MSE of the quantized model vs FP.

| layer | q,k,v GPTQ / RTN | o GPTQ / RTN | gate,up GPTQ / RTN | down GPTQ / RTN | block out MSE |
|---:|---:|---:|---:|---:|---:|
EOF
awk -F'\t' '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  $1 == "linear" {
    g = ($3 ~ /^(q|k|v)_proj$/) ? 1 : ($3 == "o_proj") ? 2 : ($3 ~ /^(gate|up)_proj$/) ? 3 : 4
    hg[$2, g] += $(col["h_err"]); hr[$2, g] += $(col["h_err_rtn"]); if ($2 + 0 > L) L = $2 + 0
  }
  $1 == "layer" { mse[$2] = $(col["layer_out_mse"]) }
  END {
    for (l = 0; l <= L; l++) {
      printf "| %d", l
      for (g = 1; g <= 4; g++) printf " | %.4g / %.4g (%.2f)", hg[l, g], hr[l, g], hg[l, g] / hr[l, g]
      printf " | %.4f |\n", mse[l]
    }
  }' "$TSV"

cat <<EOF

## Benchmarks

\`rotbench bench forward --quant W4A4KV4 --reps 3\`: one decoder layer at Llama-2-7B shapes
(dim 4096, FFN 11008, 32 heads, T 2048), best of 3; \`ratio\` = layer GFLOP/s ÷ sgemm GFLOP/s
measured in the same process, \`quant_over_fp\` = time of the layer with W4A4KV4 fake quantization
of activations and K/V ÷ FP layer time (weights are not quantized by this benchmark).
Load before / after: \`$BENCH_LOAD0\` / \`$BENCH_LOAD1\`.

\`\`\`json
$(jq . "$OUT/bench_forward.json" 2>/dev/null || cat "$OUT/bench_forward.json" 2>/dev/null || echo '(skipped)')
\`\`\`
EOF
if [ -f "$OUT/bench_gptq.json" ]; then
  cat <<EOF

\`bench_gptq\` (GPTQ at Llama-2-7B gate_proj shape, W 11008×4096, H 4096×4096).
Load before / after: \`$GPTQ_LOAD0\` / \`$GPTQ_LOAD1\`.

\`\`\`json
$(cat "$OUT/bench_gptq.json")
\`\`\`
EOF
elif [ "${SKIP_BENCH:-0}" = 1 ]; then
  printf '\n`bench_gptq`: skipped (SKIP_BENCH=1).\n'
else
  printf '\n`bench_gptq` not found at `%s`: skipped.\n' "$BENCH_GPTQ"
fi

cat <<EOF

## Run times and load

| run | wall s | load (1/5/15 min) at start | at end |
|---|---:|---|---|
EOF
awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$OUT/timing.tsv"
