#!/usr/bin/env bash
# Data-parallel training on a device (issue 16, item 6: one rank per GPU, MPI for the
# allreduce), through the stand-in device whose ops are the CPU's and whose memory the host
# cannot touch outside a kernel (fake_backend.c with FAKE_CPU_OPS): the gradient buckets, the
# BatchNorm replay and the batch uploads of `train_step_dp` on device tensors. 2 ranks by
# `mpirun --oversubscribe --allow-run-as-root -np 2`:
#  1. SGD with EMA, LAMB with a bucket per tensor, and SGD accumulating 2 micro-batches per
#     rank: 2 ranks on the device = 2 ranks on the CPU, every tensor of the last checkpoint
#     identical, the same evaluation;
#  2. a 2-rank device run stopped at step 10 and resumed on the CPU (and the other way round):
#     identical to the straight run;
#  3. model.sync_bn on the device with 2 ranks: refused before training, naming the key;
#  4. the device of each rank: its local rank modulo the devices (VN_FAKE_DEVICES stand-ins),
#     as rank 0 prints them;
#  5. the gradients summed on the devices by the backend's collectives (NCCL's path; the
#     stand-in's are MPI underneath): the checkpoints of the host-memory path, every bucket
#     started during backward; ranks sharing a device and VN_NCCL=0 fall back, saying why.
# Skipped (exit 77) without mpirun or in a build without MPI.
# Usage (from meson): test_mpi_device.sh VANILLA TESTTOOL FAKE_CPUOPS_MODULE
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
FAKE=$(readlink -f "$3")
MPI_TAG=mpidev MPI_UF=1
source "$(dirname "$0")/../train/mpi_setup.sh"
DEV=(-x VN_CUDA_PLUGIN="$FAKE")

# 1. The device against the CPU, 2 ranks each.
for opt in sgd lamb sgd-uf2; do
  bucket=$([[ $opt == lamb ]] && echo 0 || echo 25)
  SET=(--set optim.name=${opt%-uf2} --set train.dist_bucket_mb=$bucket)
  [[ $opt == sgd-uf2 ]] && SET+=(--set optim.update_freq=2 --set train.epochs=10)
  "${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${SET[@]}" --set output.dir="$T/cpu-$opt" \
    >"$T/cpu-$opt.log" 2>&1
  "${MPIRUN[@]}" "${DEV[@]}" "$VANILLA" train "$T/cfg.yaml" "${SET[@]}" --set train.device=cuda \
    --set output.dir="$T/dev-$opt" >"$T/dev-$opt.log" 2>&1
  check "$opt: 2 ranks on the device ran there" grep -q "^device: cuda:0" "$T/dev-$opt.log"
  check "$opt: 2 ranks on the device = 2 ranks on the cpu (every tensor, 20 steps)" \
    "$TOOL" same "$(ck "$T/cpu-$opt" 20)" "$(ck "$T/dev-$opt" 20)"
  check "$opt: the same evaluation" \
    test "$(grep '^final:' "$T/cpu-$opt.log")" = "$(grep '^final:' "$T/dev-$opt.log")"
done
grep '^final:' "$T/dev-sgd.log"
grep 'buckets started during backward' "$T/dev-lamb.log"
check "lamb on the device, a bucket per tensor: every bucket started during backward" \
  grep -qE ' ([1-9][0-9]+) of \1 buckets started during backward' "$T/dev-lamb.log"

# 2. Stopped at step 10 on one device, resumed on the other.
for first in dev cpu; do
  then_=$([[ $first == dev ]] && echo cpu || echo dev)
  A=(); B=()
  [[ $first == dev ]] && A=("${DEV[@]}") || B=("${DEV[@]}")
  FA=(); FB=()
  [[ $first == dev ]] && FA=(--set train.device=cuda) || FB=(--set train.device=cuda)
  "${MPIRUN[@]}" "${A[@]}" "$VANILLA" train "$T/cfg.yaml" "${FA[@]}" --set train.max_steps=10 \
    --set output.dir="$T/x-$first" >"$T/x-$first-1.log" 2>&1
  "${MPIRUN[@]}" "${B[@]}" "$VANILLA" train "$T/cfg.yaml" "${FB[@]}" --set output.dir="$T/x-$first" \
    --resume auto >"$T/x-$first-2.log" 2>&1
  check "2 ranks: 10 steps on the $first, resumed on the $then_: identical to the straight run" \
    "$TOOL" same "$(ck "$T/cpu-sgd" 20)" "$(ck "$T/x-$first" 20)"
done

# 3. sync BN on the device.
"${MPIRUN[@]}" "${DEV[@]}" "$VANILLA" train "$T/cfg.yaml" --set train.device=cuda \
  --set model.sync_bn=true --set output.dir="$T/sync" >"$T/sync.log" 2>&1
rc=$?
grep -m1 "model.sync_bn" "$T/sync.log"
check "sync_bn on the device with 2 ranks: refused (exit $rc), naming the key" \
  bash -c "[ $rc -ne 0 ] && grep -q 'train.device: cuda: model.sync_bn across 2 ranks' '$T/sync.log'"
check "sync_bn on the device: refused before any checkpoint" test ! -f "$(ck "$T/sync" 1)"

# 4. A device per local rank: with two stand-in devices the ranks take one each, with one
# they share it; rank 0 prints every rank's device.
for n in 1 2; do
  want=$([[ $n == 2 ]] && echo "cuda:0 cuda:1" || echo "cuda:0 cuda:0")
  "${MPIRUN[@]}" "${DEV[@]}" -x VN_FAKE_DEVICES=$n "$VANILLA" train "$T/cfg.yaml" \
    --set train.device=cuda --set train.max_steps=2 --set output.dir="$T/devices-$n" \
    >"$T/devices-$n.log" 2>&1
  grep "devices by rank" "$T/devices-$n.log"
  check "$n stand-in device(s): the ranks run on $want" \
    grep -q "^data-parallel devices by rank: $want; gradients reduced through host memory with MPI (the stand-in device has no collectives" "$T/devices-$n.log"
done

# 5. The device collectives (NCCL's path, with the stand-in's collectives over MPI,
# VN_FAKE_COMM=1): with a device per rank the gradients are summed in place on the devices,
# bucket by bucket as backward makes them final, and the checkpoints are those of the MPI
# path (2 ranks: the same sums); ranks sharing a device, or VN_NCCL=0, take the MPI path and
# say why.
if grep -q "stand-in collectives" "$FAKE" 2>/dev/null; then
  for opt in sgd lamb; do
    bucket=$([[ $opt == lamb ]] && echo 0 || echo 25)
    SET=(--set optim.name=$opt --set train.dist_bucket_mb=$bucket)
    "${MPIRUN[@]}" "${DEV[@]}" -x VN_FAKE_DEVICES=2 -x VN_FAKE_COMM=1 "$VANILLA" train \
      "$T/cfg.yaml" "${SET[@]}" --set train.device=cuda --set output.dir="$T/comm-$opt" \
      >"$T/comm-$opt.log" 2>&1
    grep "devices by rank" "$T/comm-$opt.log"
    check "$opt: a device per rank: the gradients summed on the devices" \
      grep -q "^data-parallel devices by rank: cuda:0 cuda:1; gradients reduced on the GPUs with stand-in collectives over MPI" "$T/comm-$opt.log"
    check "$opt: summed on the devices = through host memory (every tensor, 20 steps)" \
      "$TOOL" same "$(ck "$T/dev-$opt" 20)" "$(ck "$T/comm-$opt" 20)"
  done
  check "lamb, a bucket per tensor: every bucket started during backward on the devices" \
    grep -qE ' ([1-9][0-9]+) of \1 buckets started during backward' "$T/comm-lamb.log"
  for how in shared off; do
    ENVS=(-x VN_FAKE_COMM=1 -x VN_FAKE_DEVICES=$([[ $how == shared ]] && echo 1 || echo 2))
    [[ $how == off ]] && ENVS+=(-x VN_NCCL=0)
    "${MPIRUN[@]}" "${DEV[@]}" "${ENVS[@]}" "$VANILLA" train "$T/cfg.yaml" --set train.device=cuda \
      --set train.max_steps=2 --set output.dir="$T/comm-$how" >"$T/comm-$how.log" 2>&1
    grep "devices by rank" "$T/comm-$how.log"
  done
  check "ranks sharing a device: through host memory, saying so" \
    grep -q "gradients reduced through host memory with MPI (ranks 0 and 1 share a GPU; NCCL needs one GPU per rank)" "$T/comm-shared.log"
  check "VN_NCCL=0: through host memory, saying so" \
    grep -q "gradients reduced through host memory with MPI (VN_NCCL=0)" "$T/comm-off.log"
else
  echo "the stand-in module has no collectives (built without MPI): part 5 skipped"
fi

((fail == 0)) && echo "mpi-device: all checks passed"
exit $fail
