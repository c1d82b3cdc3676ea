#!/usr/bin/env bash
# Installs every Debian 12 package the project needs, skipping what is already present.
# Idempotent: a second run installs nothing and takes a second.
set -euo pipefail

PACKAGES=(
  # toolchain and build
  gcc g++ libc6-dev pkg-config meson ninja-build
  # libraries the framework links
  libopenblas-openmp-dev libgomp1 zlib1g-dev libpng-dev libturbojpeg0-dev libjansson-dev
  libyaml-dev check libzip-dev libprotobuf-c-dev
  # data-parallel training (mpirun; the mpi test suite)
  libopenmpi-dev openmpi-bin
  # ONNX export: protoc-c compiles the official onnx.proto that python3-onnx ships; the
  # ONNX checks of tests/reference use python3-onnx too
  protobuf-c-compiler python3-onnx
  # the libFuzzer targets (scripts/fuzz.sh): clang, its fuzzer/sanitizer runtimes, its OpenMP
  clang libclang-rt-14-dev libomp-14-dev
  # reference fixtures, PyTorch round trips and the PyTorch side of the benchmarks
  python3 python3-numpy python3-torch python3-torchvision python3-pil
  # the real data set of the main job
  dataset-fashion-mnist
  # headless browser that renders `vanilla report` pages in the tests
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install packages" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
