#!/bin/bash
# rotbench export-model --format gguf (issue 15): the exported GGUF read back by rotbench gives the run's
# perplexity (F32: exactly, a weight-quantized F32 export too; F16 to F16 rounding), the independent
# reader tests/ref/gguf_read.py sees llama.cpp's names, shapes and vocabulary, no partial file is left,
# and a truncated file is a usage error naming the file.
source "$(dirname "$0")/tap.sh"

if ! need_data stories260K/stories260K.bin || ! need_data tinystories/valid-llama2c-data00.txt; then
  echo "1..0 # SKIP shared data absent"; exit 0
fi
PY=/usr/bin/python3
REF="${RB_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/ref/gguf_read.py"
TOK=(--tokenizer "$DATA/stories260K/tok512.bin")
M=("$DATA/stories260K/stories260K.bin" "${TOK[@]}")
TXT=(--text "$DATA/tinystories/valid-llama2c-data00.txt" --doc-sep '<|endoftext|>' --seqlen 256 --max-windows 20)
ROT=(--rotation hadamard --r3 off --r4 off --cross-head off --emb-center off)
js() { $PY -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }
relclose() { $PY -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= t*abs(b) else 1)" "$1" "$2" "$3"; }

# export DIR TOL NAME ARGS...: export, read the GGUF back, compare the perplexities
roundtrip() {
  local dir=$1 tol=$2 name=$3; shift 3
  local run back p_run p_back
  if ! run=$("$RB" export-model "${M[@]}" "${TXT[@]}" "$@" --format gguf --out "$TMP/$dir" 2>"$TMP/err"); then
    not_ok "$name: export" "$(tail -3 "$TMP/err")"; return
  fi
  [ -f "$TMP/$dir/model.gguf" ] && [ ! -e "$TMP/$dir/model.gguf.partial" ] && [ ! -e "$TMP/$dir.partial" ] \
    && ok "$name: model.gguf, nothing partial" || not_ok "$name: files" "$(ls -R "$TMP")"
  back=$("$RB" ppl "$TMP/$dir/model.gguf" "${TOK[@]}" "${TXT[@]}" 2>"$TMP/err") || not_ok "$name: ppl" "$(tail -3 "$TMP/err")"
  p_run=$(echo "$run" | js 'd["ppl"]'); p_back=$(echo "$back" | js 'd["ppl"]')
  relclose "$p_back" "$p_run" "$tol" && ok "$name: read back, the run's perplexity $p_run to $tol relative" \
    || not_ok "$name: ppl" "run $p_run back $p_back"
}

roundtrip had 1e-9 "F32 Hadamard R1+R2" "${ROT[@]}"
roundtrip f16 1e-3 "F16 Hadamard R1+R2" "${ROT[@]}" --dtype F16
roundtrip w4 1e-9 "F32 W4A16 RTN (dequantized linears)" --quant W4A16

if [ -x "$PY" ] && $PY -c 'import numpy' 2>/dev/null && [ -f "$REF" ]; then
  $PY - "$REF" "$TMP/had/model.gguf" <<'EOF' && ok "gguf_read.py: llama names, shapes, vocabulary" || not_ok "gguf_read.py"
import json, subprocess, sys
d = json.loads(subprocess.check_output(["/usr/bin/python3", sys.argv[1], sys.argv[2]]))
kv, ts = d["kv"], {t["name"]: t for t in d["tensors"]}
assert d["version"] == 3 and d["alignment"] == 32, d["version"]
assert kv["general.architecture"]["value"] == "llama"
assert kv["llama.block_count"]["value"] == 5 and kv["llama.attention.head_count_kv"]["value"] == 4
assert kv["tokenizer.ggml.model"]["value"] == "llama"
assert kv["tokenizer.ggml.tokens"]["count"] == 512 and kv["tokenizer.ggml.tokens"]["head"][:3] == ["<unk>", "<s>", "</s>"]
assert len(ts) == 3 + 9 * 5 and ts["token_embd.weight"]["ne"] == [64, 512] and ts["blk.4.attn_k.weight"]["ne"] == [64, 32]
assert ts["blk.0.ffn_down.weight"]["ne"] == [172, 64] and ts["output.weight"]["type"] == "F32"
assert ts["blk.0.attn_norm.weight"]["first"] == 1.0  # RMSNorm weights are folded into the linears
EOF
else
  skip_test "gguf_read.py" "/usr/bin/python3 with numpy or $REF not found"
fi

"$RB" inspect "$TMP/had/model.gguf" >"$TMP/inspect" 2>"$TMP/err" && grep -q '"blk.4.ffn_up.weight"' "$TMP/inspect" \
  && ok "inspect lists the GGUF tensors" || not_ok "inspect" "$(tail -3 "$TMP/err")"
head -c 3000 "$TMP/had/model.gguf" >"$TMP/cut.gguf"
expect_fail "truncated GGUF: exit 2 naming the file and the key" 2 "cut.gguf: offset [0-9]+: key tokenizer.ggml.tokens" \
  "$RB" ppl "$TMP/cut.gguf" "${TOK[@]}" "${TXT[@]}"
done_testing
