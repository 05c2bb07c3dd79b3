#!/bin/bash
# Experiment harness through the CLI: config errors (position + exit 2), run/sweep/status/index/
# export on a generated model, skip/resume/force rules, a corrupt partial file, and a sweep killed
# with SIGKILL then resumed giving the same numbers as an uninterrupted one.
source "$(dirname "$0")/tap.sh"
cd "$TMP"

"$RB" make-model "$TMP/m" --preset gqa --seed 2 >/dev/null
for i in $(seq 1 20); do cat "$RB_SOURCE_ROOT/README.md"; done > "$TMP/text.txt"
cat > exp.yaml <<YAML
name: hx
model: {path: "$TMP/m"}
data:
  calib: {corpus: "$TMP/text.txt", range: "0:0.5", samples: 4, seqlen: 64}
  eval:
    - {corpus: "$TMP/text.txt", name: txt, range: "0.5:1", seqlen: 64, max_windows: 3}
quant: {preset: W4A4KV4}
rotation: {method: hadamard, emb_center: false}
sweep:
  grid: {rotation.method: [hadamard, identity]}
YAML

# --- config errors: file:line:col: key.path: what, exit 2 ---
printf 'name: x\nmodel: {path: [unclosed\n' > bad1.yaml
expect_fail "malformed YAML" 2 "bad1.yaml:[0-9]+:[0-9]+: yaml:" "$RB" run bad1.yaml
sed 's/^seed_typo:.*//' exp.yaml > bad2.yaml; echo "sede: 3" >> bad2.yaml
expect_fail "unknown key with hint" 2 "bad2.yaml:[0-9]+:[0-9]+: .*sede.*did you mean 'seed'" "$RB" run bad2.yaml
expect_fail "wrong type" 2 "cmdline:1:[0-9]+: data\\.eval\\[0\\]\\.seqlen: expected an integer, got abc" "$RB" run exp.yaml data.eval.0.seqlen=abc
expect_fail "enum typo" 2 "rotation.method: .*hadamrd" "$RB" run exp.yaml rotation.method=hadamrd
expect_fail "bool as yes" 2 "rotation.emb_center: " "$RB" run exp.yaml rotation.emb_center=yes
expect_fail "missing model" 2 "nope: model not found" "$RB" run exp.yaml '~sweep' model.path="$TMP/nope"
expect_fail "run refuses a sweep file" 2 "has a sweep: section" "$RB" run exp.yaml
out=$("$RB" run exp.yaml '~sweep' --cfg 2>/dev/null)
printf '%s' "$out" | grep -q "^name: hx" && ok "--cfg prints the resolved config" || not_ok "--cfg" "$out"

# --- sweep: manifest, runs, status, index, export ---
"$RB" sweep exp.yaml --out "$TMP/s1" > s1.out 2> s1.err
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '"status": "done"' s1.out)" = 2 ] && ok "sweep runs both rows" || not_ok "sweep" "exit $rc" "$(tail -n 3 s1.err)"
[ "$(wc -l < "$TMP/s1/manifest.tsv")" = 3 ] && ok "manifest.tsv has a header and 2 rows" || not_ok "manifest" "$(cat "$TMP/s1/manifest.tsv")"
st=$("$RB" status "$TMP/s1" 2>/dev/null | grep -c "	done	")
[ "$st" = 2 ] && ok "status: 2 done" || not_ok "status" "$("$RB" status "$TMP/s1" 2>&1)"
expect_ok "index builds index.h5" "$RB" index "$TMP/s1"
[ -f "$TMP/s1/index.h5" ] && ok "index.h5 exists" || not_ok "index.h5"
csv=$("$RB" export "$TMP/s1" --csv 2>/dev/null)
[ "$(printf '%s\n' "$csv" | grep -c ',hx,done,')" = 2 ] && ok "export --csv: one row per run" || not_ok "export" "$csv"
# identity is the checkpoint itself (no fused model, no rotation line in the log); fold_norms builds the
# fused model with R1 = I, which quantizes differently
"$RB" run exp.yaml '~sweep' rotation.method=identity '+rotation.options.fold_norms=on' --out "$TMP/fold" >/dev/null 2> fold.err
p_id=$(printf '%s\n' "$csv" | awk -F, '$5 == "identity" { print $15 }')
p_fold=$("$RB" export "$TMP/fold" --csv 2>/dev/null | awk -F, 'NR == 2 { print $15 }')
if [ -n "$p_id" ] && [ -n "$p_fold" ] && [ "$p_id" != "$p_fold" ] && grep -q "rotation identity:" fold.err &&
   ! grep -q "rotation identity:" "$TMP"/s1/hx-*/run.log; then ok "identity[fold_norms=on] runs the fused model ($p_fold vs $p_id)"
else not_ok "fold_norms in the harness" "identity $p_id, fold $p_fold" "$(tail -n 3 fold.err)"; fi
"$RB" sweep exp.yaml --out "$TMP/s1" > again.out 2>/dev/null
[ "$(grep -c 'skipped (done)' again.out)" = 2 ] && ok "done runs are skipped" || not_ok "skip" "$(cat again.out)"
"$RB" sweep exp.yaml --out "$TMP/s1" --index 1 --force > force.out 2>/dev/null
[ "$(grep -c '"status": "done"' force.out)" = 1 ] && ok "--index 1 --force redoes one row" || not_ok "force" "$(cat force.out)"
SLURM_ARRAY_TASK_ID=0 "$RB" sweep exp.yaml --out "$TMP/s2" > slurm.out 2>/dev/null
[ "$(grep -c '"row": 0' slurm.out)" = 1 ] && [ "$(grep -c '"row": 1' slurm.out)" = 0 ] && ok "SLURM_ARRAY_TASK_ID selects a row" || not_ok "slurm" "$(cat slurm.out)"
"$RB" sweep exp.yaml --out "$TMP/s3" --shard 1/2 > shard.out 2>/dev/null
[ "$(grep -c '"row": 1' shard.out)" = 1 ] && [ "$(grep -c '"row": 0' shard.out)" = 0 ] && ok "--shard 1/2 runs row 1" || not_ok "shard" "$(cat shard.out)"
expect_fail "bad shard" 2 "--shard: expected i/n" "$RB" sweep exp.yaml --out "$TMP/s3" --shard 3/2

# --- figures and tables ---
out=$("$RB" plot "$TMP/s1" 2>&1)
if command -v gnuplot >/dev/null; then
  [ -s "$TMP/s1/figures/kurtosis_down_in.png" ] && [ -s "$TMP/s1/figures/ppl_vs_bits.svg" ] && head -c 8 "$TMP/s1/figures/ppl_vs_bits.png" | grep -q PNG \
    && ok "plot writes SVG and PNG figures" || not_ok "plot" "$out"
else skip_test "plot" "gnuplot missing"; fi
if command -v gnuplot >/dev/null; then
  "$RB" plot "$TMP/s1" --quant w4a4kv4 >/dev/null 2>&1 && [ -s "$TMP/s1/figures-w4a4kv4/kurtosis_down_in.png" ] \
    && ok "plot --quant: one preset's runs in figures-PRESET" || not_ok "plot --quant"
fi
# --- figures as a reader expects them: integer layer tics with both end layers inside the range;
# quantization settings as categories (markers with error bars over seeds, side by side, the key
# saying what the bars are), never a line across them ---
if command -v gnuplot >/dev/null; then
  F="$TMP/s1/figures"; bad=""
  for f in "$F"/kurtosis_*.gp "$F"/act_mse_*.gp; do
    { grep -Fxq "set xrange [-0.5:1.5]" "$f" && grep -Fxq "set xtics 0, 1" "$f" && grep -Fxq "set format x '%.0f'" "$f" \
      && [ "$(grep -c '^set xtics' "$f")" = 1 ]; } || bad="$bad $(basename "$f")"
  done
  [ -z "$bad" ] && ok "per-layer figures: integer layer tics, layers 0 and 1 inside the x range" || not_ok "layer tics:$bad"
  gp="$F/ppl_vs_bits.gp"
  grep -Fxq "set xtics ('W4A4KV4' 0) scale 0" "$gp" && grep -q "with points" "$gp" && ! grep -q "with lines" "$gp" \
    && grep -q "title '1 seed: no error bars'" "$gp" && ok "ppl_vs_bits: one setting as a category, markers only, 1 seed said" \
    || not_ok "ppl_vs_bits one setting" "$(grep -E 'xtics|plot|with' "$gp")"
  sed 's/^  grid: .*/  grid: {rotation.method: [hadamard, identity], quant.preset: [W8A8, W4A4KV4], seed: [0, 1, 2]}/' exp.yaml > seeds.yaml
  "$RB" sweep seeds.yaml --out "$TMP/s4" > /dev/null 2>&1; out=$("$RB" plot "$TMP/s4" 2>&1)
  gp="$TMP/s4/figures/ppl_vs_bits.gp"
  grep -Fxq "set xtics ('W8A8' 0, 'W4A4KV4' 1) scale 0" "$gp" && grep -q "with yerrorbars" "$gp" && ! grep -q "with lines" "$gp" \
    && grep -q "set arrow from first 0.5, graph 0 to first 0.5, graph 1 nohead" "$gp" && grep -q "title 'mean ± sd, 3 seeds'" "$gp" \
    && [ "$(grep -o "with points linetype [0-9]* dashtype 1 title '[a-z]*'" "$gp" | sed "s/.*title //" | tr -d "'" | tr '\n' ' ')" = "identity hadamard " ] \
    && ok "ppl_vs_bits: settings by bits, identity then hadamard, mean ± sd over 3 seeds" || not_ok "ppl_vs_bits seeds" "$out" "$(grep -E 'xtics|with|title' "$gp")"
  rm -rf "$TMP/s4/$(awk -F'\t' '$1 == "0" {print $3}' "$TMP/s4/manifest.tsv")"
  "$RB" plot "$TMP/s4" > /dev/null 2>&1
  grep -q "title 'mean, min-max, 2-3 seeds'" "$gp" && ok "ppl_vs_bits: min-max once a point has 2 seeds" \
    || not_ok "ppl_vs_bits min-max" "$(grep keyentry "$gp")"
fi
expect_fail "plot --quant without runs" 2 "no done run with quantization 'W3A3'" "$RB" plot "$TMP/s1" --quant W3A3
tab=$("$RB" table "$TMP/s1" --format md 2>&1)
printf '%s' "$tab" | grep -q "| hadamard " && printf '%s' "$tab" | grep -q "W4A4KV4 RTN" && ok "table: methods x settings" || not_ok "table" "$tab"
rows=$(printf '%s\n' "$tab" | grep -oE '^\| (identity|hadamard) ' | tr -d '| ' | tr '\n' ' ')
[ "$rows" = "identity hadamard " ] && ok "table rows in registry order (sweep ran hadamard first)" || not_ok "table order" "$rows"
"$RB" table "$TMP/s1" --format latex 2>/dev/null | grep -q 'tabular' && ok "table --format latex" || not_ok "latex table"
expect_fail "table bad format" 2 "expected md, latex or csv" "$RB" table "$TMP/s1" --format xls

# --- corrupt partial: clear error, exit 2, completed results untouched ---
d0="$TMP/s1/$(awk -F'\t' '$1 == "0" {print $3}' "$TMP/s1/manifest.tsv")"; d1="$TMP/s1/$(awk -F'\t' '$1 == "1" {print $3}' "$TMP/s1/manifest.tsv")"
sum0=$(sha256sum "$d0/results.h5" | cut -d' ' -f1)
mv "$d1/results.h5" "$d1/results.h5.keep"; printf 'garbage' > "$d1/results.h5.partial"
expect_fail "partial without --resume is refused" 2 "a partial run exists: pass --resume" "$RB" sweep exp.yaml --out "$TMP/s1" --index 1
expect_fail "corrupt partial on --resume" 2 "results.h5.partial: .*" "$RB" sweep exp.yaml --out "$TMP/s1" --index 1 --resume
[ "$(sha256sum "$d0/results.h5" | cut -d' ' -f1)" = "$sum0" ] && ok "completed result untouched" || not_ok "completed result changed"
st=$("$RB" status "$TMP/s1" 2>/dev/null | grep -c "failed (unreadable)")
[ "$st" = 1 ] && ok "status reports the unreadable partial" || not_ok "status unreadable" "$("$RB" status "$TMP/s1" 2>&1)"
mkdir -p "$TMP/ro" && chmod 500 "$TMP/ro"
if [ "$(id -u)" != 0 ]; then
  expect_fail "unwritable output dir" 2 "cannot create" "$RB" sweep exp.yaml --out "$TMP/ro/x"
else
  expect_fail "unwritable output dir" 2 "cannot create|not a directory" "$RB" sweep exp.yaml --out /proc/rbx
fi

# --- SIGKILL mid-run, --resume: same numbers as an uninterrupted sweep; GPTQ runs once per run (two
# corpora), its weight store is reused by the resume and removed when the run is done ---
if need_data stories260K/hf/model.safetensors && need_data wikitext-2/wiki.test.raw; then
  W="$DATA/wikitext-2/wiki.test.raw"
  cat > kill.yaml <<YAML
name: kx
model: {path: "$DATA/stories260K/hf"}
data:
  calib: {corpus: "$W", range: "0:0.2", samples: 16, seqlen: 512}
  eval:
    - {corpus: "$W", name: a, range: "0:0.5", seqlen: 512, max_windows: 120}
    - {corpus: "$W", name: b, range: "0.5:1", seqlen: 512, max_windows: 120}
quant: {preset: W4A4KV4, w: {algo: gptq}}
rotation: {method: random, emb_center: false, r4: false}
metrics: [kl]
sweep:
  grid: {seed: [0, 1]}
YAML
  "$RB" sweep kill.yaml --out "$TMP/k_ref" > /dev/null 2>&1
  "$RB" sweep kill.yaml --out "$TMP/k" > /dev/null 2>&1 &
  pid=$!
  for i in $(seq 1 600); do  # kill once the first corpus of the first run is recorded
    f=$(ls "$TMP"/k/kx-*/results.h5.partial 2>/dev/null | head -n 1)
    [ -n "$f" ] && grep -q "eval.a" "$(dirname "$f")/run.log" 2>/dev/null && grep -q "a: ppl" "$(dirname "$f")/run.log" && break
    sleep 0.1
  done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  "$RB" status "$TMP/k" 2>/dev/null | grep -q "partial" && ok "SIGKILL leaves a partial run" || not_ok "partial after kill" "$("$RB" status "$TMP/k" 2>&1)"
  cp -a "$TMP/k" "$TMP/k2" # the same partial, resumed below with its weight store damaged
  "$RB" sweep kill.yaml --out "$TMP/k" --resume > resume.out 2>&1
  n=$(cat "$TMP"/k_ref/kx-*/run.log | grep -c "quantize weights:")
  [ "$n" = 2 ] && ok "GPTQ once per run with two corpora (2 runs)" || not_ok "GPTQ count" "$n quantizations"
  grep -q "quantized weights loaded from" "$(dirname "$f")/run.log" && ok "resume reuses the stored quantized weights" \
    || not_ok "resume reuse" "$(tail -n 5 "$(dirname "$f")/run.log")"
  [ -z "$(ls "$TMP"/k/kx-*/wquant.h5* "$TMP"/k_ref/kx-*/wquant.h5* 2>/dev/null)" ] && ok "weight stores removed when done" \
    || not_ok "stores left" "$(ls "$TMP"/k/kx-*/)"
  a=$("$RB" export "$TMP/k_ref" --csv | cut -d, -f1-17 | sort); b=$("$RB" export "$TMP/k" --csv | cut -d, -f1-17 | sort)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok "resumed sweep = uninterrupted sweep" || not_ok "resume result" "ref: $a" "got: $b"
  # a damaged weight store is not trusted: the resume warns, quantizes again and ends with the same numbers
  s2=$(ls "$TMP"/k2/kx-*/wquant.h5 2>/dev/null | head -n 1)
  if [ -n "$s2" ]; then
    printf 'not an HDF5 weight store' > "$s2"
    "$RB" sweep kill.yaml --out "$TMP/k2" --index 0 --resume > resume2.out 2>&1
    grep -q "wquant.h5.*quantizing the weights again" "$(dirname "$s2")/run.log" \
      && ok "damaged weight store on resume: warned, weights quantized again" \
      || not_ok "damaged store" "$(tail -n 5 "$(dirname "$s2")/run.log")"
    c=$("$RB" export "$TMP/k2" --csv 2>/dev/null | cut -d, -f1-17 | grep -v "^dir,\|,partial,\|,pending," | sort)
    if [ -z "$c" ]; then not_ok "damaged store result" "no done run"
    elif printf '%s\n' "$c" | grep -qvxF -f <(printf '%s\n' "$a"); then not_ok "damaged store result" "$c" "ref: $a"
    else ok "... and the same numbers as the uninterrupted run"; fi
  else
    not_ok "damaged weight store on resume" "the killed run left no wquant.h5: $(ls "$TMP"/k2/kx-*/)"
  fi
else
  skip_test "SIGKILL resume" "shared data missing"
fi
done_testing
