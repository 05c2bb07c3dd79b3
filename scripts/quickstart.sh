#!/usr/bin/env bash
# Sets up (Debian packages), builds, and runs the quickstart: perplexity of the real stories260K
# model in domain (held-out TinyStories stories, each with its own BOS) and on WikiText-2 test under
# both protocols, then experiments/quickstart.yaml. Without ../shared/data it falls back to a
# generated model evaluated on this README (and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
data=${RB_SHARED_DATA:-../shared/data}
rb=build/rotbench
if [ -f "$data/stories260K/hf/model.safetensors" ] && [ -f "$data/wikitext-2/wiki.test.raw" ]; then
  export RB_SHARED_DATA="$data"
  export RB_HADAMARD_DIR="${RB_HADAMARD_DIR:-$data/hadamard}"   # had172.txt: 172 has no construction
  echo "== FP32 perplexity of stories260K on held-out TinyStories (seqlen 512; llama2.c's val loss 1.297 = ppl 3.66)" >&2
  "$rb" ppl "$data/stories260K/hf" --tokenizer "$data/stories260K/tok512.bin" --seqlen 512 \
    --text "$data/tinystories/valid-llama2c-data00.txt" --doc-sep "<|endoftext|>"
  echo "== FP32 perplexity of stories260K on WikiText-2 test (out of domain; seqlen 512, both protocols)" >&2
  for proto in gptq llamacpp; do
    "$rb" ppl "$data/stories260K/hf" --text "$data/wikitext-2/wiki.test.raw" --seqlen 512 --protocol "$proto"
  done
  echo "== experiments/quickstart.yaml: identity vs hadamard at W4A4KV4" >&2
  "$rb" sweep experiments/quickstart.yaml
  "$rb" index results/quickstart >/dev/null
  "$rb" table results/quickstart
  "$rb" plot results/quickstart >/dev/null
  echo "figures: $(pwd)/results/quickstart/figures/ (kurtosis_*.png, act_mse_*.png, ppl_vs_bits.png)" >&2
else
  echo "!! $data not found: using a generated model and README.md as text (numbers are meaningless)" >&2
  mkdir -p results/quickstart
  "$rb" make-model results/quickstart/gen-tiny --preset tiny --seed 0 >/dev/null
  "$rb" ppl results/quickstart/gen-tiny --text README.md --seqlen 128
  "$rb" ppl results/quickstart/gen-tiny --text README.md --seqlen 128 --quant W4A4KV4 --rotation hadamard
fi
