#!/bin/bash
# Error taxonomy (issue 10 §5): a NaN weight in a checkpoint is an input error naming the tensor and
# entry (exit 2); an overflow inside the model is a numerical failure naming the layer and site
# (exit 1) and no perplexity is printed; a buffer larger than the available memory is refused up
# front naming the option that bounds it (exit 1).
source "$(dirname "$0")/tap.sh"

# poke MODEL TENSOR INDEX VALUE...: overwrite float32 entries of a safetensors tensor in place
poke() {
  python3 - "$@" <<'PY'
import json, struct, sys
path, name, idx = sys.argv[1] + "/model.safetensors", sys.argv[2], int(sys.argv[3])
vals = [float(v) for v in sys.argv[4:]]
with open(path, "r+b") as f:
    hlen = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(hlen))[name]
    assert t["dtype"] == "F32"
    f.seek(8 + hlen + t["data_offsets"][0] + 4 * idx)
    f.write(struct.pack("<%df" % len(vals), *vals))
PY
}

python3 -c 'print(" ".join("w%d" % (i % 97) for i in range(20000)))' > "$TMP/text.txt"
common=(--text "$TMP/text.txt" --seqlen 64 --max-windows 6)

"$RB" make-model "$TMP/nan" --preset npot --seed 1 >/dev/null
poke "$TMP/nan" model.layers.1.mlp.down_proj.weight 345 nan
expect_fail "NaN weight: input error naming tensor and entry" 2 \
  "model.safetensors: tensor model.layers.1.mlp.down_proj.weight: non-finite value nan at \\[1\\]\\[1\\]" \
  "$RB" ppl "$TMP/nan" "${common[@]}"
out=$("$RB" ppl "$TMP/nan" "${common[@]}" 2>/dev/null); [ -z "$out" ] && ok "no result printed for a NaN weight" || not_ok "printed" "$out"

"$RB" make-model "$TMP/ovf" --preset npot --seed 1 >/dev/null
row=$(python3 -c 'print(" ".join(["3e38"] * 344))')
poke "$TMP/ovf" model.layers.0.mlp.down_proj.weight 0 $row
expect_fail "overflow: numerical failure naming layer and site" 1 \
  "layer 0, residual stream after the MLP \\(down_proj output\\): non-finite activation" "$RB" ppl "$TMP/ovf" "${common[@]}"
out=$("$RB" ppl "$TMP/ovf" "${common[@]}" --quant W4A4KV4 2>/dev/null); [ -z "$out" ] && ok "no NaN perplexity printed" || not_ok "printed" "$out"

"$RB" make-model "$TMP/m" --preset npot --seed 1 >/dev/null
calib=(--calib "$TMP/text.txt" --calib-samples 8 --calib-batch 2)
expect_fail "evaluation larger than the memory" 1 \
  "evaluation: the hidden states of every window .* needs 804.0 KiB but 512.0 KiB are available: lower data.eval\\[\\].max_windows" \
  env RB_MEM_AVAILABLE=512K "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4
expect_fail "GPTQ calibration larger than the memory" 1 "GPTQ: the hidden states of the calibration windows .*data.calib.samples" \
  env RB_MEM_AVAILABLE=20K "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 --w-algo gptq "${calib[@]}"
expect_fail "RUQuant stream larger than the memory" 1 "ruquant: the calibration stream .*pseudo_sequence: on" \
  env RB_MEM_AVAILABLE=20K "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 --rotation ruquant "${calib[@]}"
expect_fail "ConQuR inner_iters larger than the memory" 1 "conqur: inner_iters > 1 keeps .*inner_iters: 1" \
  env RB_MEM_AVAILABLE=100K "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 --rotation conqur --rot-opt inner_iters=3 "${calib[@]}"
expect_fail "FP perplexity: output head larger than the memory" 1 \
  "perplexity: the output head, a block of logits and the hidden states of a window needs [0-9.]+ [KM]iB but 60.0 KiB are available: lower the sequence length" \
  env RB_MEM_AVAILABLE=60K "$RB" ppl "$TMP/m" "${common[@]}"
expect_fail "GPTQ Hessians larger than the memory (issue 16)" 1 \
  "GPTQ: the Hessian of the widest linear \\(344 inputs\\) and its factor needs [0-9.]+ MiB but 1.0 MiB are available: .*quant.w.algo: rtn" \
  env RB_MEM_AVAILABLE=1M "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A16 --w-algo gptq "${calib[@]}"
expect_ok "the same runs within the memory" env RB_MEM_AVAILABLE=1G "$RB" ppl "$TMP/m" "${common[@]}" --quant W4A4KV4 \
  --rotation conqur --rot-opt inner_iters=3 "${calib[@]}"
done_testing
