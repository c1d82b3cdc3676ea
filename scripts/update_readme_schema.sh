#!/usr/bin/env bash
# Regenerates the generated tables of README.md: the config reference (`vanilla config
# schema`) and the official trainer's flags (`vanilla config official`). The test suite fails
# when the README's copies differ, so they cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-build/train/cli/vanilla}
regen() { # regen MARKER SUBCOMMAND
  local tmp
  tmp=$(mktemp)
  awk -v table="$($V config "$2")" -v begin="<!-- $1:begin -->" -v end="<!-- $1:end -->" '
    $0 == begin { print; print table; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }' README.md >"$tmp"
  mv "$tmp" README.md
}
regen schema schema
regen official official
echo "README.md: config reference and official flag table regenerated"
