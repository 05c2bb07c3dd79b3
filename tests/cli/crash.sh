#!/bin/bash
# Crash consistency (issue 16): a sweep SIGKILLed at 20 random points and resumed each time never shows
# a damaged or partial result as done, and ends with the numbers of an uninterrupted sweep.
source "$(dirname "$0")/tap.sh"

if ! need_data stories260K/hf || ! need_data tinystories/valid-llama2c-data00.txt; then
  echo "1..0 # SKIP shared data absent"; exit 0
fi
V="$DATA/tinystories/valid-llama2c-data00.txt"
cat > "$TMP/c.yaml" <<YAML
name: cx
model: {path: "$DATA/stories260K/hf"}
data:
  eval:
    - {corpus: "$V", name: a, range: "0:0.5", seqlen: 64, max_windows: 40}
    - {corpus: "$V", name: b, range: "0.5:1", seqlen: 64, max_windows: 40}
quant: {preset: W4A4}
rotation: {method: random, emb_center: false, r4: false}
metrics: [kl]
sweep:
  grid: {seed: [0, 1, 2]}
YAML
"$RB" sweep "$TMP/c.yaml" --out "$TMP/ref" >/dev/null 2>&1 || not_ok "reference sweep"
bad=""; kills=0
RANDOM=16  # the kill times are reproducible
for t in $(seq 1 20); do
  "$RB" sweep "$TMP/c.yaml" --out "$TMP/k" --resume >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
  kill -9 $pid 2>/dev/null && kills=$((kills + 1)); wait $pid 2>/dev/null
  st=$("$RB" status "$TMP/k" 2>/dev/null)
  # a done row must read back as this run's finished result (status reads it); nothing damaged
  if printf '%s' "$st" | grep -q "damaged"; then bad="$bad trial $t: $(printf '%s' "$st" | grep damaged | head -1)"; fi
  for d in "$TMP"/k/cx-*; do
    [ -f "$d/results.h5" ] && [ -f "$d/results.h5.partial" ] && bad="$bad trial $t: both files in $(basename "$d")"
  done
done
"$RB" sweep "$TMP/c.yaml" --out "$TMP/k" --resume >/dev/null 2>&1 || not_ok "final resume"
[ -z "$bad" ] && ok "20 SIGKILLs ($kills landed mid-sweep): no damaged or half-written result ever shown as done" \
  || not_ok "crash consistency" "$bad"
a=$("$RB" export "$TMP/ref" --csv | cut -d, -f1-17 | sort); b=$("$RB" export "$TMP/k" --csv | cut -d, -f1-17 | sort)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "killed and resumed sweep = uninterrupted sweep (every run, both corpora)" \
  || not_ok "resumed numbers" "ref: $a" "got: $b"
done_testing
