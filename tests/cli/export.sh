#!/bin/bash
# rotbench export-model (issue 15): hf round trips (the run's perplexity to 1e-6 relative, logits to
# float tolerance), weight-quantized exports, online-op refusals and the sidecar, no partial
# directory on failure, the YAML export unit, and the Python snippet of docs/export.md.
source "$(dirname "$0")/tap.sh"

if ! need_data stories260K/stories260K.bin || ! need_data tinystories/valid-llama2c-data00.txt; then
  echo "1..0 # SKIP shared data absent"; exit 0
fi
export RB_HADAMARD_DIR="$DATA/hadamard"
PY=/usr/bin/python3
M=("$DATA/stories260K/stories260K.bin" --tokenizer "$DATA/stories260K/tok512.bin")
TXT=(--text "$DATA/tinystories/valid-llama2c-data00.txt" --doc-sep '<|endoftext|>' --seqlen 256 --max-windows 20)
CAL=(--calib "$DATA/tinystories/train-sample-2MiB.txt" --calib-samples 8 --calib-seqlen 128)
ROT=(--rotation hadamard --r3 off --r4 off --cross-head off --emb-center off)
js() { $PY -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }
# relclose A B TOL: |A-B| <= TOL·|B|
relclose() { $PY -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= t*abs(b) else 1)" "$1" "$2" "$3"; }

# --- hf, FP, Hadamard R1 + R2 ------------------------------------------------------------------
run=$("$RB" export-model "${M[@]}" "${ROT[@]}" "${TXT[@]}" --format hf --out "$TMP/had" 2>"$TMP/err") \
  || not_ok "hf export" "$(tail -3 "$TMP/err")"
for f in config.json model.safetensors rotbench_export.json tok512.bin; do
  [ -f "$TMP/had/$f" ] || not_ok "hf file $f" "missing"
done
[ ! -e "$TMP/had.partial" ] && [ ! -e "$TMP/had/rotbench_online_ops.json" ] && ok "hf: complete directory, no partial, no online ops" \
  || not_ok "hf files" "$(ls "$TMP")"
back=$("$RB" ppl "$TMP/had" --tokenizer "$TMP/had/tok512.bin" "${TXT[@]}" 2>/dev/null)
p_run=$(echo "$run" | js 'd["ppl"]'); p_back=$(echo "$back" | js 'd["ppl"]')
relclose "$p_back" "$p_run" 1e-6 && ok "hf F32 read back: the run's perplexity ($p_run) to 1e-6 relative" \
  || not_ok "hf ppl" "run $p_run back $p_back"
# logits of the exported (rotated, folded, untied) model vs the original checkpoint: an orthogonal
# rotation in double changes fp32 logits by rounding only
$PY -c "import struct; open('$TMP/ids.bin','wb').write(struct.pack('<64i', *[(7*i+1) % 512 for i in range(64)]))"
"$RB" logits "$DATA/stories260K/stories260K.bin" --ids "$TMP/ids.bin" --out "$TMP/l0.bin" >/dev/null 2>&1
"$RB" logits "$TMP/had" --ids "$TMP/ids.bin" --out "$TMP/l1.bin" >/dev/null 2>&1
$PY - "$TMP/l0.bin" "$TMP/l1.bin" <<'EOF' && ok "hf logits = the original model's to float tolerance" || not_ok "hf logits"
import sys, numpy as np
a, b = (np.fromfile(p, dtype="<f4") for p in sys.argv[1:3])
err = np.abs(a - b).max() / np.abs(a).max()
print("# max |dlogit| / max |logit| = %.3g" % err)
sys.exit(0 if a.size == 64 * 512 and err < 1e-4 else 1)   # fp32 forward of 5 layers: ~1e-6 seen
EOF
# F16 / BF16 halve the files and stay close
expect_ok "hf BF16 export" "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --dtype BF16 --out "$TMP/had16"
s32=$(stat -c %s "$TMP/had/model.safetensors"); s16=$(stat -c %s "$TMP/had16/model.safetensors")
[ $((s16 * 2)) -le $((s32 + 16384)) ] && ok "BF16 file half the size ($s16 vs $s32)" || not_ok "bf16 size" "$s16 $s32"
# sharding: a 200 kB cap gives shards + index that read back the same
expect_ok "sharded export" "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --max-shard-mb 0 --out "$TMP/one"
"$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --out "$TMP/shard" --max-shard-mb 1 >/dev/null 2>&1
ls "$TMP/shard" | grep -q "model.safetensors" && ok "one-file export below the cap" || not_ok "shard layout" "$(ls "$TMP/shard")"

# --- weight-quantized: OptRot + GPTQ W4A16, exported dequantized --------------------------------
run=$("$RB" export-model "${M[@]}" --rotation optrot --r3 off --r4 off "${CAL[@]}" --quant W4A16 --w-algo gptq \
      "${TXT[@]}" --format hf --out "$TMP/w4" 2>"$TMP/err") || not_ok "W4A16 export" "$(tail -3 "$TMP/err")"
back=$("$RB" ppl "$TMP/w4" --tokenizer "$TMP/w4/tok512.bin" "${TXT[@]}" 2>/dev/null)
p_run=$(echo "$run" | js 'd["ppl"]'); p_back=$(echo "$back" | js 'd["ppl"]')
relclose "$p_back" "$p_run" 1e-6 && ok "W4A16 GPTQ hf read back: the quantized run's perplexity ($p_run)" \
  || not_ok "w4 ppl" "run $p_run back $p_back"
[ "$(echo "$run" | js 'd["ppl"] > d["ppl_fp"]')" = True ] && ok "its FP reference is reported and lower" || not_ok "ppl_fp" "$run"
grep -q '"weight_quantization": "int4 sym channel' "$TMP/w4/rotbench_export.json" && ok "manifest names the weight quantizer" \
  || not_ok "manifest" "$(cat "$TMP/w4/rotbench_export.json")"

# --- gptq on llama2xs (widths that fill int32 words; stories260K's FFN 172 does not) -------------------
if need_data llama2xs/llama2xs.bin; then
  X=("$DATA/llama2xs/llama2xs.bin" --tokenizer "$DATA/stories260K/tok512.bin")
  run=$("$RB" export-model "${X[@]}" "${ROT[@]}" "${CAL[@]}" --quant W4A16 --w-algo gptq --act-order "${TXT[@]}" \
        --format gptq --out "$TMP/xg" 2>"$TMP/err") || not_ok "gptq export" "$(tail -3 "$TMP/err")"
  back=$("$RB" ppl "$TMP/xg" --tokenizer "$TMP/xg/tok512.bin" "${TXT[@]}" 2>/dev/null)
  p_run=$(echo "$run" | js 'd["ppl"]'); p_back=$(echo "$back" | js 'd["ppl"]')
  relclose "$p_back" "$p_run" 1e-9 && ok "gptq (act-order) directory read directly: the run's perplexity ($p_run; ppl prints 10 digits)" \
    || not_ok "gptq ppl" "run $p_run back $p_back"
  # damaged GPTQ directories (issue 16): each refused naming the file and what is wrong
  G=(--tokenizer "$TMP/xg/tok512.bin" "${TXT[@]}")
  gdamage() { rm -rf "$TMP/yg"; cp -a "$TMP/xg" "$TMP/yg"; /usr/bin/python3 -c "$1" "$TMP/yg"; }
  qcfg() { gdamage "
import json, sys; p = sys.argv[1] + '/config.json'; c = json.load(open(p)); q = c['quantization_config']; $1
json.dump(c, open(p, 'w'))"; }
  qcfg "q['bits'] = 5"
  expect_fail "gptq: 5-bit codes in quantization_config" 2 "yg/config.json: quantization_config: key 'bits': GPTQ packing: 5-bit codes are not supported" \
    "$RB" ppl "$TMP/yg" "${G[@]}"
  qcfg "del q['bits']"
  expect_fail "gptq: bits missing" 2 "quantization_config: key 'bits': missing \\(required\\)" "$RB" ppl "$TMP/yg" "${G[@]}"
  qcfg "q['group_size'] = 16"
  expect_fail "gptq: group_size not matching the packed tensors" 2 \
    "yg/model.safetensors: tensor model.layers.0.self_attn.q_proj.qzeros: shape \\[1, 8\\] but the model's widths with bits 4, group_size 16 .* imply \\[4, 8\\]" \
    "$RB" ppl "$TMP/yg" "${G[@]}"
  qcfg "q['quant_method'] = 'awq'"
  expect_fail "gptq: another quant_method" 2 "quant_method 'awq' is not supported \\(gptq is\\)" "$RB" ppl "$TMP/yg" "${G[@]}"
  qcfg "q['checkpoint_format'] = 'marlin'"
  expect_fail "gptq: another checkpoint_format" 2 "checkpoint_format 'marlin' is not supported" "$RB" ppl "$TMP/yg" "${G[@]}"
  gdamage "
import json, struct, sys; p = sys.argv[1] + '/model.safetensors'; b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); o = 8 + n + h['model.layers.0.self_attn.q_proj.g_idx']['data_offsets'][0]
b[o:o + 4] = struct.pack('<i', 99); open(p, 'wb').write(b)"
  expect_fail "gptq: g_idx entry outside the groups" 2 "q_proj.g_idx: g_idx\\[0\\] = 99 outside \\[0, 1\\)" "$RB" ppl "$TMP/yg" "${G[@]}"
  gdamage "
import sys; p = sys.argv[1] + '/model.safetensors'; b = open(p, 'rb').read(); open(p, 'wb').write(b[:len(b) // 2])"
  expect_fail "gptq: model.safetensors cut in half" 2 "yg/model.safetensors: tensor .*: data offsets \\[[0-9]+, [0-9]+\\) outside the [0-9]+-byte data section" \
    "$RB" ppl "$TMP/yg" "${G[@]}"
  expect_fail "stories260K cannot be packed at 4 bits: refused before quantizing" 2 "cannot be packed at 4 bits" \
    "$RB" export-model "${M[@]}" "${ROT[@]}" --quant W4A16 --format gptq --out "$TMP/sg"
  expect_fail "gptq of an activation-quantized run" 2 "weight-only" \
    "$RB" export-model "${X[@]}" "${ROT[@]}" --quant W4A8 --format gptq --allow-online-dropped --out "$TMP/sg"
else
  skip_test "gptq on llama2xs" "llama2xs absent"
fi

# --- online operations ---------------------------------------------------------------------------
expect_fail "R3/R4/cross-head refused for plain hf" 2 "online operations.*R3, R4, cross_head.*--allow-online-dropped" \
  "$RB" export-model "${M[@]}" --rotation hadamard --format hf --out "$TMP/q"
[ ! -e "$TMP/q" ] && [ ! -e "$TMP/q.partial" ] && ok "refusal leaves nothing" || not_ok "refusal left files" "$(ls "$TMP")"
expect_fail "activation quantization refused for plain hf" 2 "act_quant" \
  "$RB" export-model "${M[@]}" "${ROT[@]}" --quant W4A4 --format hf --out "$TMP/q"
expect_ok "--allow-online-dropped exports anyway" "$RB" export-model "${M[@]}" --rotation hadamard --format hf \
  --allow-online-dropped --out "$TMP/quarot"
$PY - "$TMP/quarot" <<'EOF' && ok "sidecar lists R3 (exact without), R4, cross_head; rotation.h5 beside it" || not_ok "sidecar"
import json, os, sys
d = sys.argv[1]
ops = {o["name"]: o for o in json.load(open(os.path.join(d, "rotbench_online_ops.json")))["ops"]}
m = json.load(open(os.path.join(d, "rotbench_export.json")))
ok = set(ops) == {"R3", "R4", "cross_head"} and ops["R3"]["exact_without_in_fp"] and not ops["R4"]["exact_without_in_fp"]
ok = ok and os.path.getsize(os.path.join(d, "rotation.h5")) > 0 and m["online_ops_dropped"] is True
sys.exit(0 if ok else 1)
EOF

# --- bad requests ----------------------------------------------------------------------------------
expect_fail "existing output without --force" 2 "exists: remove it.*--force" \
  "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --out "$TMP/had"
expect_ok "--force replaces it" "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --force --out "$TMP/had"
: > "$TMP/afile"
expect_fail "unwritable location: refused before any work" 2 "afile is not a directory" \
  "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --out "$TMP/afile/sub"
expect_fail "unknown format" 2 "expected one of hf, gptq, gguf" "$RB" export-model "${M[@]}" --format onnx --out "$TMP/x"
expect_fail "bad dtype" 2 "expected F32, F16 or BF16" "$RB" export-model "${M[@]}" --format gguf --dtype Q4_0 --out "$TMP/x"
# disk full: a 256 kB tmpfs (the model is ~1 MB in F32); needs mount rights, else skipped
mkdir -p "$TMP/small"
if mount -t tmpfs -o size=256k tmpfs "$TMP/small" 2>/dev/null; then
  expect_fail "disk full: clear error" 2 "No space left on device" \
    "$RB" export-model "${M[@]}" "${ROT[@]}" --format hf --out "$TMP/small/m"
  [ -z "$(ls -A "$TMP/small")" ] && ok "disk full: no partial directory left" || not_ok "disk full left" "$(ls -A "$TMP/small")"
  umount "$TMP/small"
else
  skip_test "disk full" "cannot mount a tmpfs here"; skip_test "disk full: nothing left" "cannot mount a tmpfs here"
fi

# --- the YAML export unit ---------------------------------------------------------------------------
cat > "$TMP/x.yaml" <<EOF
name: ex
model: {path: $DATA/stories260K/stories260K.bin, tokenizer: $DATA/stories260K/tok512.bin}
data:
  eval: [{corpus: $DATA/tinystories/valid-llama2c-data00.txt, doc_sep: "<|endoftext|>", seqlen: 256, max_windows: 10}]
rotation: {method: hadamard, r3: false, r4: false, cross_head: false}
metrics: []
export: {format: hf}
EOF
expect_ok "run with export:" "$RB" run "$TMP/x.yaml" --out "$TMP/res"
d=$(ls -d "$TMP"/res/ex-* 2>/dev/null | head -1)
[ -f "$d/model-hf/rotbench_export.json" ] && grep -q '"run_id"' "$d/model-hf/rotbench_export.json" \
  && ok "run dir holds model-hf with the run id in its manifest" || not_ok "yaml export" "$(ls -R "$TMP/res" | head)"
sed 's/export: {format: hf}/export: {format: gptq}/' "$TMP/x.yaml" > "$TMP/g.yaml"
expect_fail "gptq without weight quantization: config error" 2 "g.yaml:[0-9]+:[0-9]+: export.format: gptq holds quantized weights" \
  "$RB" run "$TMP/g.yaml" --out "$TMP/res2"
sed 's/r3: false, r4: false, cross_head: false/r4: true/' "$TMP/x.yaml" > "$TMP/o.yaml"
expect_fail "online ops refused before evaluation" 2 "allow_online_dropped" "$RB" run "$TMP/o.yaml" --out "$TMP/res3"

# --- docs/export.md's Python snippet gives the same model ---------------------------------------------
if need_data stories260K/hf && $PY -c "import h5py, numpy" 2>/dev/null; then
  "$RB" ppl "$DATA/stories260K/hf" "${ROT[@]}" "${TXT[@]}" --save-rotation "$TMP/rot.h5" >"$TMP/p.json" 2>/dev/null
  mkdir -p "$TMP/snip/ckpt" "$TMP/snip/out"
  cp "$DATA/stories260K/hf/config.json" "$DATA/stories260K/hf/model.safetensors" "$TMP/snip/ckpt/"
  cp "$TMP/rot.h5" "$TMP/snip/rotation.h5"
  cp "$DATA/stories260K/hf/tokenizer.model" "$TMP/snip/out/"
  src="${RB_SOURCE_ROOT:-$(dirname "$0")/../..}"
  $PY - "$src/docs/export.md" > "$TMP/snip/snippet.py" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
print(re.findall(r"```python\n(.*?)```", t, re.S)[-1])
EOF
  if (cd "$TMP/snip" && PYTHONPATH="$src/tests/py" $PY snippet.py); then
    snip=$("$RB" ppl "$TMP/snip/out" --tokenizer "$DATA/stories260K/tok512.bin" "${TXT[@]}" 2>/dev/null | js 'd["ppl"]')
    p_run=$(js 'd["ppl"]' < "$TMP/p.json")
    relclose "$snip" "$p_run" 1e-5 && ok "docs snippet applies the saved rotation: same perplexity ($snip vs $p_run)" \
      || not_ok "snippet ppl" "$snip vs $p_run"
  else
    not_ok "docs snippet runs"
  fi
else
  skip_test "docs snippet" "h5py/numpy or stories260K/hf missing"
fi

done_testing
