# Sourced by the data-parallel tests (tests/train/test_mpi.sh, tests/cuda/test_mpi_device.sh)
# after they set VANILLA, TOOL, MPI_TAG (the temporary folder's name) and MPI_UF (the config's
# optim.update_freq): skips (exit 77) without mpirun or in a build without MPI; otherwise
# leaves T (a temporary folder removed at exit), the Open MPI settings, MPIRUN (2 ranks), fail
# and check, ck (a checkpoint's path), the synthetic data in $T/data and the small model's
# config in $T/cfg.yaml, and one 2-rank run done.
command -v mpirun >/dev/null || { echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; }
T=$(mktemp -d "/tmp/vn_${MPI_TAG}_XXXXXX")
trap 'rm -rf "$T"' EXIT
# Open MPI's own allocations are not ours to check for leaks (ASan build).
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
export OMPI_MCA_rmaps_base_oversubscribe=1
# Containers often forbid the cross-memory attach of Open MPI's shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(mpirun --oversubscribe --allow-run-as-root -np 2)
fail=0
check() { # message, command...
  local msg=$1; shift
  if "$@"; then echo "ok   - $msg"; else echo "FAIL - $msg"; fail=1; fi
}
ck() { printf '%s/checkpoints/ckpt-s%010d.safetensors' "$1" "$2"; }

"$TOOL" synth "$T/data" 8 2 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/cfg.yaml" <<YAML
model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4, drop_rate: 0}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0, workers: 1}
optim: {name: sgd, lr: 0.05, weight_decay: 0.01, update_freq: $MPI_UF, warmup_epochs: 0}
deep_training: {decay_epochs: 4, update: iteration}
ema: {decays: [0.9]}
loss: {bce: false}
train: {epochs: 5, batch_size: 4, threads: 1, log_every: 1000, eval_every: 1}
output: {save_every: 0, keep_last: 0, tensorboard: false}
YAML

"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/probe" --set train.epochs=1 \
  >"$T/probe.log" 2>&1
if grep -q "this build has no MPI" "$T/probe.log"; then echo "SKIP: vanilla was built without MPI"; exit 77; fi
grep -q "data-parallel: 2 ranks" "$T/probe.log" || { tail -20 "$T/probe.log"; echo "FAIL - no 2-rank run"; exit 1; }
