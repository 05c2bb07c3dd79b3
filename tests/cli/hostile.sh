#!/bin/bash
# Issue 16 reproducers, each a regression test: a tokenizer that does not belong to the model (was a
# use after free in the error path), NaN in ranges, non-finite weights, truncated SentencePiece
# models at many lengths (never a crash).
source "$(dirname "$0")/tap.sh"

if ! need_data stories260K/hf || ! need_data llama3/tokenizer.json || ! need_data tinystories/valid-llama2c-data00.txt; then
  echo "1..0 # SKIP shared data absent"; exit 0
fi
V="$DATA/tinystories/valid-llama2c-data00.txt"
W=(--seqlen 64 --max-windows 2)

expect_fail "larger tokenizer refused up front, both sizes named" 2 "128256 tokens.*vocabulary of 512" \
  "$RB" ppl "$DATA/stories260K/hf" --tokenizer "$DATA/llama3/tokenizer.json" --text "$V" "${W[@]}"
expect_fail "... also on the quantized path" 2 "128256 tokens.*vocabulary of 512" \
  "$RB" ppl "$DATA/stories260K/hf" --tokenizer "$DATA/llama3/tokenizer.json" --text "$V" "${W[@]}" --quant W4A4
"$RB" make-model "$TMP/m" --preset tiny >/dev/null 2>&1
err=$("$RB" ppl "$TMP/m" --text "$V" "${W[@]}" 2>&1 >/dev/null)
printf '%s' "$err" | grep -q "has 258 tokens, the model's vocabulary 512" && ok "smaller tokenizer: warned, both sizes named" \
  || not_ok "smaller tokenizer warning" "$(printf '%s' "$err" | tail -2)"
mkdir -p "$TMP/adir"; : > "$TMP/empty.ids"
expect_fail "a directory as the config" 2 "adir: not a regular file" "$RB" run "$TMP/adir"
expect_fail "a directory as --text" 2 "adir: not a regular file" "$RB" ppl "$DATA/stories260K/hf" --text "$TMP/adir" "${W[@]}"
expect_fail "an empty --ids file" 2 "empty\.ids: 0 bytes is not a non-empty array of int32 ids" \
  "$RB" logits "$DATA/stories260K/hf" --ids "$TMP/empty.ids" --out "$TMP/lo.bin"
for r in nan:1 0:nan inf:1 -0.5:1 0.5:0.2 0:1:1 x:1; do
  expect_fail "--text-range $r refused" 2 "token range '$r'" "$RB" ppl "$DATA/stories260K/hf" --text "$V" --text-range "$r" "${W[@]}"
done
cat > "$TMP/r.yaml" <<YAML
name: r
model: {path: $DATA/stories260K/hf}
data:
  eval: [{corpus: $V, range: 'nan:1'}]
YAML
# exp_yaml FILE NAME [LINE...]: a small experiment on stories260K (2 held-out windows of 64 tokens)
exp_yaml() {
  local f=$1 n=$2; shift 2
  { echo "name: $n"; echo "model: {path: $DATA/stories260K/hf}"; printf '%s\n' "$@"
    echo "data: {eval: [{corpus: $V, max_windows: 2, seqlen: 64}]}"; } > "$f"
}
exp_yaml "$TMP/nocal.yaml" nocal "rotation: {method: conqur}"
expect_fail "method needing calibration without data.calib: refused at load" 2 \
  "nocal.yaml:3:20: rotation.method: conqur needs calibration windows" "$RB" run "$TMP/nocal.yaml" --out "$TMP/nocal-out"
[ ! -e "$TMP/nocal-out" ] && ok "... before any run directory exists" || not_ok "run directory made" "$(find "$TMP/nocal-out")"
expect_fail "YAML range nan:1 refused at file:line:col" 2 "r.yaml:4:[0-9]+: data.eval\[0\].range" "$RB" run "$TMP/r.yaml" --cfg
cp "$DATA/stories260K/stories260K.bin" "$TMP/nan.bin"
/usr/bin/python3 -c "
import struct; f = open('$TMP/nan.bin', 'r+b'); f.seek(28 + 4 * 1000); f.write(struct.pack('<f', float('nan')))"
expect_fail "NaN weight: error naming tensor and entry" 2 "token_embedding_table: non-finite value nan at \[15\]\[40\]" \
  "$RB" ppl "$TMP/nan.bin" --tokenizer "$DATA/stories260K/tok512.bin" --text "$V" "${W[@]}"
# SentencePiece models cut at many lengths: exit 2 with a message, never a signal
model="$DATA/stories260K/tok512.reconstructed.model"
if [ -f "$model" ]; then
  size=$(stat -c %s "$model"); bad=""
  echo hi > "$TMP/t.txt"
  for n in 0 1 2 3 4 5 7 8 9 16 31 64 100 255 256 1000 4096 $((size / 2)) $((size - 1)); do
    head -c "$n" "$model" > "$TMP/cut.model"
    "$RB" tokenize --tokenizer "$TMP/cut.model" --file "$TMP/t.txt" >/dev/null 2>"$TMP/e"; rc=$?
    [ "$rc" -eq 2 ] && grep -q "cut.model" "$TMP/e" || bad="$bad $n:rc=$rc"
  done
  [ -z "$bad" ] && ok "truncated tokenizer.model: exit 2 naming the file at every cut" || not_ok "truncated .model" "$bad"
else
  skip_test "truncated tokenizer.model" "no .model file"
fi
# a very long window: warned about, and SIGTERM honoured inside its attention (was: at the layer's end)
"$RB" ppl "$DATA/stories260K/hf" --text "$V" --doc-sep '<|endoftext|>' --seqlen 200000 >/dev/null 2>"$TMP/long.err" &
pid=$!
for _ in $(seq 50); do grep -q "evaluate:" "$TMP/long.err" 2>/dev/null && break; sleep 0.2; done
sleep 1
kill -TERM $pid; t0=$(date +%s)
wait $pid; rc=$?; dt=$(( $(date +%s) - t0 ))
grep -q "beyond the model's trained context (max_position_embeddings 512)" "$TMP/long.err" \
  && ok "seqlen beyond the trained context: warned" || not_ok "long window warning" "$(tail -2 "$TMP/long.err")"
[ "$rc" -eq 3 ] && [ "$dt" -le 10 ] && grep -q "interrupted in the attention of layer" "$TMP/long.err" \
  && ok "SIGTERM in a 200k-token window: exit 3 within ${dt}s (bound 10 s)" || not_ok "SIGTERM" "rc $rc after ${dt}s: $(tail -1 "$TMP/long.err")"

# a damaged results.h5 is never "done": status says so, run refuses to skip it, table reports it
cat > "$TMP/d.yaml" <<YAML
name: d
model: {path: $DATA/stories260K/hf}
data:
  eval: [{corpus: $V, seqlen: 64, max_windows: 2}]
metrics: []
sweep:
  grid:
    seed: [0, 1]
YAML
"$RB" sweep "$TMP/d.yaml" --out "$TMP/res" >/dev/null 2>&1
r0=$(ls -d "$TMP"/res/d-* | head -1)
head -c 3000 "$r0/results.h5" > "$TMP/cut.h5" && mv "$TMP/cut.h5" "$r0/results.h5"
"$RB" status "$TMP/res" > "$TMP/st" 2>&1
grep -q "failed (damaged results.h5)" "$TMP/st" && [ "$(grep -c "	done	" "$TMP/st")" = 1 ] \
  && ok "status: a truncated results.h5 is reported damaged, not done" || not_ok "status" "$(cat "$TMP/st")"
expect_fail "sweep: a damaged result is refused, never skipped as done" 2 "not this run's finished result.*--force" \
  "$RB" sweep "$TMP/d.yaml" --out "$TMP/res"
err=$("$RB" table "$TMP/res" 2>&1 >/dev/null)
printf '%s' "$err" | grep -q "left out: its results cannot be read" && ok "table: the damaged run is reported" \
  || not_ok "table warning" "$err"
expect_ok "sweep --force redoes it" "$RB" sweep "$TMP/d.yaml" --out "$TMP/res" --force
# disk full during a run (the weight store's flush): a clean exit 2, never a segfault in HDF5's exit
# handler; the partial result says failed and nothing looks done. Needs mount rights (else skipped).
mkdir -p "$TMP/small"
if mount -t tmpfs -o size=200k tmpfs "$TMP/small" 2>/dev/null; then
  cat > "$TMP/df.yaml" <<YAML
name: df
model: {path: $DATA/stories260K/hf}
data:
  eval: [{corpus: $V, seqlen: 64, max_windows: 4}]
quant: {preset: W4A4}
YAML
  "$RB" run "$TMP/df.yaml" --out "$TMP/small/r" >/dev/null 2>"$TMP/df.err"; rc=$?
  [ "$rc" -eq 2 ] && grep -q "No space left on device" "$TMP/df.err" && ok "disk full in a run: exit 2 with the reason (was SIGSEGV)" \
    || not_ok "disk full run" "rc $rc: $(tail -c 300 "$TMP/df.err")"
  st=$("$RB" status "$TMP/small/r" 2>&1)
  printf '%s' "$st" | grep -q "	failed	" && ! ls "$TMP"/small/r/*/results.h5 >/dev/null 2>&1 \
    && ok "disk full: the partial result says failed, no results.h5" || not_ok "disk full status" "$st"
  umount "$TMP/small"
else
  skip_test "disk full in a run" "cannot mount a tmpfs here"; skip_test "disk full status" "cannot mount a tmpfs here"
fi
# a results.h5 on which HDF5 itself segfaults (found by mutating a real one; the old CLI died with
# SIGSEGV in index/table): the read runs in a probe process first, so the file is refused and reported
src="$(dirname "$0")/data/results-hdf5-segv.h5"
mkdir -p "$TMP/h5/run-x" && cp "$src" "$TMP/h5/run-x/results.h5"
# index and status list it (exit 0); table and plot, with nothing readable left, fail (exit 2)
for c in index status table plot; do
  out=$("$RB" $c "$TMP/h5" 2>&1 >/dev/null); rc=$?
  want=0; case $c in table|plot) want=2 ;; esac
  [ "$rc" -eq "$want" ] && printf '%s' "$out" | grep -q "run-x.*the HDF5 library crashed reading it" \
    && { [ "$want" -eq 0 ] || printf '%s' "$out" | grep -q "none of its runs can be read (1 damaged"; } \
    && ok "$c: a file crashing HDF5 is refused and reported (exit $rc)" || not_ok "$c on a crashing file" "rc $rc (want $want): $out"
done
for c in status table plot index; do
  mkdir -p "$TMP/empty"
  expect_fail "$c on an empty directory" 2 "holds (no|neither)" "$RB" $c "$TMP/empty"
done
# out of memory is exit 1 on every path (the machine, not the input): ppl (numerics.sh), run, sweep
exp_yaml "$TMP/mem.yaml" mem "quant: {preset: W4A4}" "sweep: {grid: {seed: [0, 1]}}"
expect_fail "run: out of memory is exit 1" 1 "evaluation: the hidden states of every window .* needs .* but 100.0 KiB are available" \
  env RB_MEM_AVAILABLE=100K "$RB" run "$TMP/mem.yaml" '~sweep' --out "$TMP/mem1"
expect_fail "sweep: out of memory is exit 1" 1 "row 1: evaluation: the hidden states of every window .* but 100.0 KiB are available" \
  env RB_MEM_AVAILABLE=100K "$RB" sweep "$TMP/mem.yaml" --out "$TMP/mem2"
# seqlen-sized scratch: preflighted against the memory (RB_MEM_AVAILABLE) and against ulimit -v
expect_fail "forward scratch of a 200k-token window larger than the memory: exit 1 naming the bound" 1 \
  "the forward pass's scratch for 200000 rows of 200000 tokens needs 659.2 MiB but 100.0 MiB are available: lower the sequence length" \
  env RB_MEM_AVAILABLE=100M "$RB" ppl "$DATA/stories260K/hf" --text "$V" --doc-sep '<|endoftext|>' --seqlen 200000
if ldd "$RB" 2>/dev/null | grep -q libasan; then # ASan reserves terabytes of address space
  skip_test "ulimit -v preflight" "sanitizer build"
else
  expect_fail "... and beyond ulimit -v (address-space limit counted as available memory)" 1 \
    "the forward pass's scratch for 240000 rows of 240000 tokens needs 791.0 MiB but .* are available" \
    bash -c 'ulimit -v 700000 && exec "$0" "$@"' "$RB" ppl "$DATA/stories260K/hf" --text "$V" --doc-sep '<|endoftext|>' --seqlen 240000
  # OpenBLAS spins forever when it cannot map its work buffers (was: a hang at 300-400 MB): every limit
  # ends within 60 s, with the result or exit 1 and a message
  bad=""
  for lim in 150000 250000 300000 320000 350000 400000 500000 700000; do
    timeout -s KILL 60 bash -c 'ulimit -v "$1" && shift && exec "$@"' _ "$lim" "$RB" ppl "$DATA/stories260K/hf" \
      --text "$V" --seqlen 512 --max-windows 4 >/dev/null 2>"$TMP/ul.err"; rc=$?
    case $rc in
      0) ;;
      1) grep -q "OpenBLAS's work buffers for .* raise it or lower OPENBLAS_NUM_THREADS\|needs .* are available" "$TMP/ul.err" \
           || bad="$bad $lim:rc=1:$(tail -1 "$TMP/ul.err")" ;;
      *) bad="$bad $lim:rc=$rc" ;;
    esac
  done
  [ -z "$bad" ] && ok "ulimit -v from 150 MB to 700 MB: the result or exit 1 with a message, never a hang" \
    || not_ok "ulimit -v" "$bad"
fi
done_testing
