#!/bin/bash
# The add-a-method checklist (docs/architecture.md) holds for every registered method (rotbench
# methods is the source of truth): docs/methods.md has a "## `method`" section naming all of its
# options, and a runnable method has a building block configs/methods/<method>*.yaml selecting it.
source "$(dirname "$0")/tap.sh"

doc="$RB_SOURCE_ROOT/docs/methods.md"
[ -f "$doc" ] || { not_ok "docs/methods.md exists"; done_testing; exit; }
json=$("$RB" methods 2>/dev/null)
methods=$(printf '%s\n' "$json" | sed -n 's/^    "name": "\([^"]*\)",$/\1/p')
[ -n "$methods" ] && ok "methods listed" || not_ok "methods listed" "$json"
for m in $methods; do
  section=$(awk -v h="## \`$m\`" '$0 == h { on = 1; next } /^## / { on = 0 } on' "$doc")
  if [ -z "$section" ]; then not_ok "$m: section in docs/methods.md"; continue; fi
  opts=$("$RB" methods "$m" 2>/dev/null | sed -n 's/^      "name": "\([^"]*\)",$/\1/p')
  missing=""
  for o in $opts; do printf '%s' "$section" | grep -q "| \`$o\` |" || missing="$missing $o"; done
  [ -z "$missing" ] && ok "$m: every option documented" || not_ok "$m: options missing from docs/methods.md:$missing"
  if "$RB" methods "$m" 2>/dev/null | grep -q '"runnable": true'; then
    if grep -lq "method: $m\$" "$RB_SOURCE_ROOT"/configs/methods/"$m"*.yaml 2>/dev/null; then ok "$m: configs/methods/$m.yaml"
    else not_ok "$m: no configs/methods/$m*.yaml selecting it"; fi
  fi
done
done_testing
