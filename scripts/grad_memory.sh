#!/bin/bash
# Peak memory of the checkpointed backward vs depth (issue 11): generated models of the same width
# (dim 512, hidden 1376, 8 heads) with 4 and 16 layers, `rotbench grad` on 8 windows of 512 tokens
# at W4A4KV4. Prints per depth the engine's allocation and the process's peak RSS, and the
# difference expected from the checkpoints alone (12 layers x 4096 rows x 512 x 4 bytes = 96 MiB).
# Usage: scripts/grad_memory.sh [build/rotbench]
set -eu
rb=${1:-build/rotbench}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rbmem.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -c 'print(" ".join("w%d" % (i % 97) for i in range(40000)))' > "$tmp/text.txt"
printf 'layers\tengine_mib\tpeak_rss_mib\tseconds\n'
for L in 4 16; do
  "$rb" make-model "$tmp/m$L" --preset tiny --seed 1 --layers $L --dim 512 --hidden 1376 --heads 8 --kv-heads 8 >/dev/null
  "$rb" grad "$tmp/m$L" --text "$tmp/text.txt" --seqlen 512 --windows 8 --quant W4A4KV4 --out "$tmp/g.h5" 2>/dev/null |
    python3 -c "import json,sys; j=json.load(sys.stdin); print('$L\t%.1f\t%.1f\t%.1f' % (j['engine_mib'], j['peak_rss_mb'], j['seconds']))"
done
echo "checkpoints of 12 more layers: $((12 * 4096 * 512 * 4 / 1048576)) MiB"
