#!/usr/bin/env bash
# Regenerates the config reference in README.md from the schema (`vanilla config schema`).
# The test suite fails when the README's copy differs, so the two cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-build/train/cli/vanilla}
tmp=$(mktemp)
awk -v table="$($V config schema)" '
  /<!-- schema:begin -->/ { print; print table; skip = 1; next }
  /<!-- schema:end -->/ { skip = 0 }
  !skip { print }' README.md >"$tmp"
mv "$tmp" README.md
echo "README.md: config reference regenerated"
