#!/usr/bin/env bash
# The vanilla command and the CUDA backend module: a CPU training run opens no CUDA library
# and no backend module (the dynamic loader's own log, LD_DEBUG=files, lists every file it
# opens, dlopen included); train.device: cuda and eval --device cuda fail with exit status 1
# and a message naming what is missing, never a crash, whether the module is beside
# libvanilla, named by VN_CUDA_PLUGIN, or absent.
# Usage (from meson): test_backend_cli.sh VANILLA TESTTOOL LIBVANILLA PLUGIN_BUILT(0|1)
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
LIB=$(readlink -f "$3")
BUILT=$4
T=$(mktemp -d /tmp/vn_backend_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"
# Files the loader opened, from an LD_DEBUG=files log.
opened() { grep -E 'file=[^ ]+ +\[0\]; +(needed|dynamically loaded)|calling init' "$1"; }
cuda_opened() { opened "$1" | grep -qE 'libcudart|libcublas|libcudnn|libcuda\.so|libvanilla_cuda'; }

"$TOOL" synth "$T/data" 16 8 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/base.yaml" <<YAML
model: {name: custom, dims: [8, 16], strides: [2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0, auto_augment: "", reprob: 0, color_jitter: 0}
optim: {name: sgd, lr: 0.01, update_freq: 1, warmup_epochs: 0}
deep_training: {decay_epochs: 1, update: iteration}
train: {epochs: 1, batch_size: 8, threads: 1, log_every: 1000}
output: {dir: $T/run, keep_last: 0, tensorboard: false}
YAML

# A CPU run: trains, and the loader never opens a CUDA library or the module.
LD_DEBUG=files LD_DEBUG_OUTPUT="$T/ld" "$VANILLA" train "$T/base.yaml" >"$T/out" 2>&1
expect "CPU train: exit 0" [ $? -eq 0 ]
cat "$T"/ld.* >"$T/ld" 2>/dev/null
expect "CPU train: the loader's log lists libvanilla" contains "$T/ld" "libvanilla.so"
expect "CPU train: no CUDA library or backend module opened" not cuda_opened "$T/ld"
rm -f "$T"/ld*

# train.precision: bf16 on the cpu: exit 1, naming the key, before anything is written.
"$VANILLA" train "$T/base.yaml" --set train.precision=bf16 --set output.dir="$T/run_bf16" \
  >"$T/out" 2>&1
expect "train.precision bf16 on the cpu: exit 1" [ $? -eq 1 ]
expect "train.precision bf16 on the cpu: names the key" contains "$T/out" "train.precision: bf16 needs train.device: cuda"
expect "train.precision bf16 on the cpu: no checkpoint" [ ! -e "$T/run_bf16/checkpoints" ]

# train.device: cuda without a usable device (every CI machine): exit 1 with the reason.
LD_DEBUG=files LD_DEBUG_OUTPUT="$T/ld" "$VANILLA" train "$T/base.yaml" \
  --set train.device=cuda --set output.dir="$T/run_cuda" >"$T/out" 2>&1
rc=$?
cat "$T"/ld.* >"$T/ld" 2>/dev/null
if [[ $rc -eq 0 ]]; then
  echo "a CUDA device is usable here: the refusal checks do not apply"
else
  expect "train.device cuda: exit 1, not a crash" [ $rc -eq 1 ]
  expect "train.device cuda: names the key" contains "$T/out" "train.device: cuda: "
  if [[ $BUILT == 1 ]]; then
    expect "train.device cuda: the module beside libvanilla was loaded" \
      grep -qE "file=$(dirname "$LIB")/libvanilla_cuda.so +\[0\]; +dynamically loaded" "$T/ld"
    expect "train.device cuda: says the driver or device is missing" \
      contains "$T/out" "no CUDA device visible"
  else
    expect "train.device cuda: says the build has no CUDA backend" \
      contains "$T/out" "this build has no CUDA backend"
  fi
fi
cat "$T/out"

# A module path that does not exist.
VN_CUDA_PLUGIN="$T/nowhere/libvanilla_cuda.so" "$VANILLA" train "$T/base.yaml" \
  --set train.device=cuda --set output.dir="$T/run_cuda" >"$T/out" 2>&1
expect "VN_CUDA_PLUGIN missing: exit 1" [ $? -eq 1 ]
expect "VN_CUDA_PLUGIN missing: names the path" \
  contains "$T/out" "$T/nowhere/libvanilla_cuda.so (from VN_CUDA_PLUGIN) does not exist"

# libvanilla without the module beside it (a copy in another folder): the paths tried.
if [[ $BUILT == 1 ]]; then
  mkdir -p "$T/lib" && cp "$LIB" "$T/lib/"
  LD_LIBRARY_PATH="$T/lib" "$VANILLA" train "$T/base.yaml" --set train.device=cuda \
    --set output.dir="$T/run_cuda" >"$T/out" 2>&1
  expect "module absent: exit 1" [ $? -eq 1 ]
  expect "module absent: names the path beside libvanilla" \
    contains "$T/out" "the CUDA backend is missing: no $T/lib/libvanilla_cuda.so"
  cat "$T/out"
fi

# eval --device cuda on the CPU run's checkpoint: the same refusal, exit 1.
ck=$(ls "$T"/run/checkpoints/*.safetensors 2>/dev/null | tail -1)
VN_CUDA_PLUGIN="$T/nowhere/libvanilla_cuda.so" "$VANILLA" eval "$ck" --device cuda >"$T/out" 2>&1
expect "eval --device cuda: exit 1" [ $? -eq 1 ]
expect "eval --device cuda: names the path" contains "$T/out" "$T/nowhere/libvanilla_cuda.so"

echo "backend cli: $pass passed, $fail failed"
((fail == 0))
