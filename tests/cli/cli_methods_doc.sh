#!/bin/bash
# docs/methods.md documents every option of every registered method (rotbench methods is the
# source of truth): each "## `method`" section names all of that method's options.
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
done
done_testing
