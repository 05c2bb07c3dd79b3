#!/bin/bash
# Rotation CLI: methods listing, method errors, save/load round trip, invariance through the CLI.
source "$(dirname "$0")/tap.sh"

json_num() { sed -E "s/.*\"$1\": ?([-0-9.eE+]+).*/\1/"; }

out=$("$RB" methods 2>/dev/null)
if printf '%s' "$out" | grep -q '"name": "hadamard"' && printf '%s' "$out" | grep -q '"name": "respinquant"' &&
   ! printf '%s' "$out" | grep -q '"runnable": false'; then ok "methods lists every registered method, all runnable"
else not_ok "methods listing" "$out"; fi
expect_ok "methods hadamard" "$RB" methods hadamard
expect_fail "methods unknown" 2 "unknown method 'nope'" "$RB" methods nope

"$RB" make-model "$TMP/m" --preset npot --seed 5 >/dev/null
for i in $(seq 1 30); do cat "$RB_SOURCE_ROOT/README.md"; done > "$TMP/text.txt"
common=(--text "$TMP/text.txt" --seqlen 64 --max-windows 6)
expect_fail "unknown rotation" 2 "rotation method 'nope': expected one of identity" "$RB" ppl "$TMP/m" "${common[@]}" --rotation nope
expect_fail "trained rotation without data" 2 "respinquant: training needs calibration windows" "$RB" ppl "$TMP/m" "${common[@]}" --rotation respinquant
expect_fail "learned rotation without data" 2 "conqur: needs calibration windows" "$RB" ppl "$TMP/m" "${common[@]}" --rotation conqur
expect_fail "unknown method option" 2 "rotation.options.pases: unknown option of method conqur \\(did you mean 'passes'" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation conqur --rot-opt pases=2
expect_fail "bad option value" 2 "rotation.options.steps: expected an integer, got 'many'" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation optrot --rot-opt steps=many
expect_fail "option out of range" 2 "rotation.options.block: expected an integer in" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation ruquant --rot-opt block=0 --calib "$TMP/text.txt" --calib-samples 2
expect_fail "malformed --rot-opt" 2 "--rot-opt: expected NAME=VALUE" "$RB" ppl "$TMP/m" "${common[@]}" --rotation conqur --rot-opt passes
expect_fail "--rot-opt without --rotation" 2 "--rot-opt needs --rotation" "$RB" ppl "$TMP/m" "${common[@]}" --rot-opt passes=2
expect_fail "bad on/off" 2 "--r3: expected on or off, got 'yes'" "$RB" ppl "$TMP/m" "${common[@]}" --rotation hadamard --r3 yes
expect_fail "cross-head for a method that ignores it" 2 "rotation.cross_head: method identity does not apply QuaRot's cross-head Hadamard" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation identity --cross-head on
expect_fail "save without rotation" 2 "--save-rotation needs --rotation" "$RB" ppl "$TMP/m" "${common[@]}" --save-rotation "$TMP/r.h5"

base=$("$RB" ppl "$TMP/m" "${common[@]}" 2>/dev/null | tail -n 1 | json_num ppl)
# every registered runnable method with each of its test variants (the registry's test_variants);
# learned methods calibrate on 4 windows of the same text
calib=(--calib "$TMP/text.txt" --calib-samples 4 --calib-batch 2)
variants=$("$RB" methods | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["runnable"]:
        for v in m["test_variants"] or [""]:
            print(m["name"] + "\t" + v)')
[ "$(printf '%s\n' "$variants" | wc -l)" -ge 6 ] && ok "methods lists the runnable methods and their test variants" || not_ok "variants" "$variants"
while IFS=$'\t' read -r rot opt; do
  if [ "$rot" = identity ] && [ -z "$opt" ]; then continue; fi # the unrotated model: checked below
  extra=("${calib[@]}")
  [ -n "$opt" ] && extra+=(--rot-opt "$opt")
  f="$TMP/$rot-${opt//[=,]/_}.h5"
  p=$("$RB" ppl "$TMP/m" "${common[@]}" --rotation "$rot" "${extra[@]}" --seed 3 --emb-center off --save-rotation "$f" 2>/dev/null | tail -n 1 | json_num ppl)
  if awk -v a="$base" -v b="$p" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d / a < 1e-5) }'; then
    ok "$rot[$opt]: FP perplexity unchanged by rotation ($p vs $base)"
  else not_ok "$rot[$opt] invariance" "rotated $p, original $base"; fi
  q=$("$RB" ppl "$TMP/m" "${common[@]}" --load-rotation "$f" 2>/dev/null | tail -n 1 | json_num ppl)
  [ "$q" = "$p" ] && ok "$rot[$opt]: saved rotation reloads to the same perplexity" || not_ok "$rot[$opt] reload" "$q vs $p"
done <<< "$variants"
# identity is the unrotated model unless fold_norms (or R3/R4) asks for the fused one: the same
# numbers as no --rotation at all, quantized too, and no set to save
qid=$("$RB" ppl "$TMP/m" "${common[@]}" --quant W4A8 --rotation identity 2>/dev/null | tail -n 1 | json_num ppl)
qnone=$("$RB" ppl "$TMP/m" "${common[@]}" --quant W4A8 2>/dev/null | tail -n 1 | json_num ppl)
qfold=$("$RB" ppl "$TMP/m" "${common[@]}" --quant W4A8 --rotation identity --rot-opt fold_norms=on 2>/dev/null | tail -n 1 | json_num ppl)
[ -n "$qid" ] && [ "$qid" = "$qnone" ] && ok "identity: the unrotated model, bit for bit (W4A8 ppl $qid)" || not_ok "identity = no rotation" "$qid vs $qnone"
[ -n "$qfold" ] && [ "$qfold" != "$qid" ] && ok "identity[fold_norms=on]: the fused model quantizes differently ($qfold vs $qid)" || not_ok "fold_norms changes the quantized model" "$qfold vs $qid"
expect_fail "identity: no rotation set to save" 2 "--save-rotation .*identity is the unrotated model, there is no rotation set to save" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation identity --save-rotation "$TMP/id.h5"
expect_fail "identity: fold_norms is a bool" 2 "rotation.options.fold_norms: expected on or off, got 'maybe'" \
  "$RB" ppl "$TMP/m" "${common[@]}" --rotation identity --rot-opt fold_norms=maybe
printf 'not hdf5' > "$TMP/bad.h5"
expect_fail "corrupt rotation file" 2 "bad\.h5: not an HDF5 file" "$RB" ppl "$TMP/m" "${common[@]}" --load-rotation "$TMP/bad.h5"
"$RB" ppl "$TMP/m" "${common[@]}" --rotation hadamard --save-rotation "$TMP/had-m.h5" >/dev/null 2>&1
"$RB" make-model "$TMP/other" --preset tiny >/dev/null 2>&1
expect_fail "rotation set made for another model shape: refused naming the file and both shapes" 2 \
  "had-m\.h5: rotation set \(hadamard\) is for dim [0-9]+, head_dim [0-9]+, hidden [0-9]+, [0-9]+ layers; the model has" \
  "$RB" ppl "$TMP/other" "${common[@]}" --load-rotation "$TMP/had-m.h5"
a=$("$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 --rotation hadamard --seed 1 2>/dev/null | tail -n 1)
b=$("$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 --rotation hadamard --seed 1 2>/dev/null | tail -n 1)
[ "$(printf '%s' "$a" | json_num ppl)" = "$(printf '%s' "$b" | json_num ppl)" ] && ok "same seed, same numbers" || not_ok "reproducible" "$a" "$b"
done_testing
