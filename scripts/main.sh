#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build --buildtype=release >/dev/null
meson compile -C build >/dev/null
mkdir -p runs
echo "== examples/model_tour =="
build/examples/model_tour runs/model_tour_deploy.safetensors
