#!/bin/bash
# rotbench grad (issue 11): loss and dL/dR1, dL/dR2 of a rotated, quantized model; checkpointing does
# not change a number; the gradient at an FP model is symmetric after R1ᵀ (checked in test_rotgrad);
# bad requests are refused naming the problem; SpinQuant runs end to end through ppl.
source "$(dirname "$0")/tap.sh"

python3 -c 'print(" ".join("w%d" % (i % 97) for i in range(20000)))' > "$TMP/text.txt"
"$RB" make-model "$TMP/m" --preset gqa --seed 1 >/dev/null
common=(--text "$TMP/text.txt" --seqlen 64 --windows 3 --quant W4A4KV4 --rotation hadamard)

out=$("$RB" grad "$TMP/m" "${common[@]}" --out "$TMP/g.h5" 2>"$TMP/err"); rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/g.h5" ] && [ ! -e "$TMP/g.h5.partial" ]; then ok "grad writes grads.h5"
else not_ok "grad writes grads.h5" "exit $rc" "$(tail -3 "$TMP/err")"; fi
field() { printf '%s' "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
loss=$(field "$out" loss); n1=$(field "$out" grad_r1_norm); win=$(field "$out" windows)
python3 -c "import math,sys; l,n=float('$loss'),float('$n1'); sys.exit(0 if math.isfinite(l) and 0 < l < 20 and n > 0 else 1)" \
  && ok "finite loss ($loss) and a non-zero gradient ($n1)" || not_ok "loss/gradient" "$out"
[ "$win" = 3 ] && ok "three windows used" || not_ok "windows" "$out"

out2=$("$RB" grad "$TMP/m" "${common[@]}" --out "$TMP/g2.h5" --no-checkpoint 2>/dev/null)
[ "$(field "$out2" loss)" = "$loss" ] && [ "$(field "$out2" grad_r1_norm)" = "$n1" ] \
  && ok "identical loss and gradient without checkpointing" || not_ok "checkpointing changed a number" "$out" "$out2"

"$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 2 --rotation hadamard --save-rotation "$TMP/r.h5" >/dev/null 2>&1
out3=$("$RB" grad "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --windows 3 --quant W4A4KV4 --load-rotation "$TMP/r.h5" \
  --out "$TMP/g3.h5" 2>/dev/null)
[ "$(field "$out3" loss)" = "$loss" ] && ok "a saved rotation set gives the same loss" || not_ok "load-rotation" "$out" "$out3"

expect_fail "--out is required" 2 "grad: --out FILE is required" "$RB" grad "$TMP/m" "${common[@]}"
expect_fail "GPTQ has no gradient" 2 "GPTQ has no gradient" \
  "$RB" grad "$TMP/m" "${common[@]}" --w-algo gptq --calib "$TMP/text.txt" --out "$TMP/x.h5"
expect_fail "grad refuses RUQuant sets (chain rule into R1/R2 not derived)" 2 "holds RUQuant transforms \\(layer 0, attn_in\\): the chain rule" \
  "$RB" grad "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --windows 2 --quant W4A4KV4 --rotation ruquant \
  --calib "$TMP/text.txt" --calib-samples 4 --out "$TMP/x.h5"
out4=$("$RB" grad "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --windows 2 --quant W4A4KV4 --rotation respinquant \
  --rot-opt steps=1,windows=2,rank=1000 --calib "$TMP/text.txt" --calib-samples 4 --out "$TMP/g4.h5" 2>"$TMP/err"); rc=$?
python3 -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d['grad_bases_norm'] > 0 else 1)" "$out4" 2>/dev/null \
  && ok "grad of a layer-wise (ReSpinQuant) set with exact junctions: gradients of every basis" \
  || not_ok "grad with layer-wise bases" "exit $rc" "$(tail -3 "$TMP/err")"
expect_fail "grad refuses low-rank junctions" 2 "holds low-rank junctions" \
  "$RB" grad "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --windows 2 --quant W4A4KV4 --rotation respinquant \
  --rot-opt steps=1,windows=2 --calib "$TMP/text.txt" --calib-samples 4 --out "$TMP/x.h5"
expect_fail "respinquant refuses up front when its rotations cannot fit" 1 "respinquant: the layer-wise rotations, their gradients and junctions needs" \
  env RB_MEM_AVAILABLE=200K "$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 2 --quant W4A4KV4 \
  --rotation respinquant --rot-opt steps=1,windows=2 --calib "$TMP/text.txt" --calib-samples 4
expect_fail "unwritable output names the file" 2 "nodir/g.h5" "$RB" grad "$TMP/m" "${common[@]}" --out "$TMP/nodir/g.h5"
[ ! -e "$TMP/x.h5" ] && ok "nothing written on refusal" || not_ok "a file was left behind"

out=$("$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --rotation spinquant \
  --rot-opt steps=3,windows=2 --calib "$TMP/text.txt" --calib-samples 4 2>"$TMP/err"); rc=$?
if [ $rc -eq 0 ] && grep -q "spinquant: result on step 0's windows" "$TMP/err" && [ "$(field "$out" rotation)" = spinquant ]; then
  ok "spinquant trains and evaluates through ppl"
else not_ok "spinquant through ppl" "exit $rc" "$(tail -3 "$TMP/err")"; fi
expect_fail "spinquant without calibration is refused" 2 "spinquant: training needs calibration windows" \
  "$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --rotation spinquant
out=$("$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --w-algo gptq --rotation respinquant \
  --rot-opt steps=2,windows=2,rank=8 --calib "$TMP/text.txt" --calib-samples 4 --save-rotation "$TMP/rsq.h5" 2>"$TMP/err"); rc=$?
if [ $rc -eq 0 ] && grep -q "respinquant: 4 junctions, low rank" "$TMP/err" && [ "$(field "$out" rotation)" = respinquant ]; then
  ok "respinquant trains, fits rank-8 junctions and evaluates with GPTQ through ppl"
else not_ok "respinquant through ppl" "exit $rc" "$(tail -3 "$TMP/err")"; fi
fp0=$("$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --rotation respinquant \
  --rot-opt steps=2,windows=2,rank=0 --calib "$TMP/text.txt" --calib-samples 4 2>/dev/null)
fpx=$("$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --rotation respinquant \
  --rot-opt steps=2,windows=2,rank=1000 --calib "$TMP/text.txt" --calib-samples 4 2>/dev/null)
[ -n "$fp0" ] && [ "$(field "$fp0" ppl_fp)" = "$(field "$fpx" ppl_fp)" ] && [ "$(field "$fp0" ppl)" != "$(field "$fpx" ppl)" ] \
  && ok "the FP reference keeps exact junctions: ppl_fp is the same at rank 0 and with exact junctions ($(field "$fp0" ppl_fp))" \
  || not_ok "FP reference with low-rank junctions" "$fp0" "$fpx"
out5=$("$RB" ppl "$TMP/m" --text "$TMP/text.txt" --seqlen 64 --max-windows 4 --quant W4A4KV4 --w-algo gptq \
  --load-rotation "$TMP/rsq.h5" --calib "$TMP/text.txt" --calib-samples 4 2>/dev/null)
[ "$(field "$out5" ppl)" = "$(field "$out" ppl)" ] && ok "the saved ReSpinQuant set (bases, junctions) reproduces the run" \
  || not_ok "respinquant save/load" "$out" "$out5"
done_testing
