#!/usr/bin/env bash
# Data-parallel `vanilla train` on a GPU machine (issue 16, item 6: one rank per GPU, MPI),
# about a minute. With one GPU both ranks share it (their gradients meet in host memory
# through MPI either way), which checks the arithmetic, not the scaling:
#  1. 2 ranks on cuda against 1 process with update_freq 2 on cuda (deterministic, strict
#     FP32, SGD, 12 steps): every tensor within 1e-4 of its largest value (the same sums in
#     another order);
#  2. 2 ranks on cuda against 2 ranks on the cpu: within 1e-3 (the device's rounding);
#  3. model.sync_bn on cuda with 2 ranks: refused, naming the key;
#  4. the devices by rank, and images/s of 2 ranks on the GPU(s) for the tiny model;
#  5. the reduction's path: NCCL with a GPU per rank, else MPI with the reason (one GPU: the
#     ranks share it).
#
#   bench/dp_gpu_check.sh VANILLA TESTTOOL MPIRUN [WORKDIR]
# MPIRUN is an Open MPI 4.1 mpirun/orterun matching the libmpi vanilla links (device_pack.sh
# packs Debian's with its components; device_check.sh sets OPAL_PREFIX and PMIX_PREFIX).
# Without a GPU it runs against the stand-in module of the tests (VN_CUDA_PLUGIN=...
# tests/cuda/libvn_fake_backend_cpuops.so), where every comparison is exact.
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
MPIRUN=$3
T=${4:-/tmp/vn_dp_gpu}
rm -rf "$T" && mkdir -p "$T"
pass=0 fail=0
check() { # description, command...
  local d=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $d"; else fail=$((fail + 1)); echo "FAIL - $d"; fi
}
ckpt() { echo "$1/checkpoints/ckpt-s$(printf %010d "$2").safetensors"; }
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MP=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2)
if [[ -n ${VN_CUDA_PLUGIN:-} ]]; then MP+=(-x VN_CUDA_PLUGIN); fi

"$TOOL" synth "$T/data" 64 16 || { echo "testtool synth failed"; exit 1; }
cat >"$T/tiny.yaml" <<YAML
model: {name: custom, dims: [64, 128], strides: [2], in_chans: 1, num_classes: 4, drop_rate: 0}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0, auto_augment: "", reprob: 0, color_jitter: 0,
       workers: 2}
optim: {name: sgd, lr: 0.05, update_freq: 1, warmup_epochs: 0}
ema: {decays: [0.9]}
deep_training: {decay_epochs: 2, update: iteration}
train: {epochs: 2, batch_size: 16, threads: 2, log_every: 4, deterministic: true, tf32: false,
        device: cuda, max_steps: 12}
output: {keep_last: 0, tensorboard: false, save_every_steps: 12}
YAML

timeout 120 "${MP[@]}" "$VANILLA" train "$T/tiny.yaml" --set output.dir="$T/two" >"$T/two.log" 2>&1
echo "2 ranks on cuda: exit $?"
grep -E "^device:|data-parallel" "$T/two.log" | head -6
timeout 120 "$VANILLA" train "$T/tiny.yaml" --set optim.update_freq=2 --set output.dir="$T/one" \
  >"$T/one.log" 2>&1
echo "1 process, update_freq 2, on cuda: exit $?"
timeout 120 "${MP[@]}" "$VANILLA" train "$T/tiny.yaml" --set train.device=cpu \
  --set output.dir="$T/cpu" >"$T/cpu.log" 2>&1
echo "2 ranks on the cpu: exit $?"
check "2 ranks on cuda = 1 process x update_freq 2 on cuda (every tensor, 1e-4)" \
  "$TOOL" close "$(ckpt "$T/one" 12)" "$(ckpt "$T/two" 12)" 1e-4
check "2 ranks on cuda = 2 ranks on the cpu (every tensor, 1e-3)" \
  "$TOOL" close "$(ckpt "$T/cpu" 12)" "$(ckpt "$T/two" 12)" 1e-3
check "both ranks on a device (rank 0 lists them)" grep -q "^data-parallel devices by rank: cuda:" "$T/two.log"
# NCCL needs a GPU per rank: with one GPU the ranks say so and reduce through MPI.
gpus=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
if [[ ${gpus:-0} -ge 2 ]]; then
  check "$gpus GPUs: the gradients are summed with NCCL" grep -q "gradients reduced on the GPUs with NCCL" "$T/two.log"
elif [[ -z ${VN_CUDA_PLUGIN:-} ]]; then
  check "one GPU: NCCL is not used, and the reason is named" \
    grep -qE "gradients reduced through host memory with MPI \((ranks 0 and 1 share a GPU|NCCL is not installed)" "$T/two.log"
fi
timeout 60 "${MP[@]}" "$VANILLA" train "$T/tiny.yaml" --set model.sync_bn=true \
  --set output.dir="$T/sync" >"$T/sync.log" 2>&1
check "sync_bn on cuda with 2 ranks: refused, naming the key" grep -q "model.sync_bn across 2 ranks" "$T/sync.log"
echo "dp_gpu_check: $pass passed, $fail failed"
exit $((fail > 0))
