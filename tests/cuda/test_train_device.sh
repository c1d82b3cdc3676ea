#!/usr/bin/env bash
# The trainer, eval, predict and export on a device, without a GPU: VN_CUDA_PLUGIN names the
# stand-in module built with FAKE_CPU_OPS (fake_backend.c), whose "device" memory is host
# memory and whose op column and optimizer step are the CPU's, with fresh step memory filled
# with NaN. Everything the trainer does on a device (placement, batch upload, loss read-back,
# clipping, EMA, checkpoints from host copies, resume) must then give the CPU's bytes:
#  - cpu and cuda runs write tensor-for-tensor identical checkpoints (EMA, mixup/cutmix,
#    LAMB with clipping and accumulation; AdamW with dropout and epoch-wise act_learn), with
#    the next batch fetched and uploaded ahead (also with data.prefetch 1);
#  - a SIGTERM'd device run resumes to the bytes of a straight device run;
#  - a cpu checkpoint resumes on the device and a device checkpoint on the cpu;
#  - eval / predict / export --device cuda print and write what --device cpu does;
#  - a device that is not usable gives exit 1 and the reason, for train, eval, predict, export.
# Usage (from meson): test_train_device.sh VANILLA TESTTOOL FAKE_CPU_OPS_MODULE
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
FAKE=$(readlink -f "$3")
T=$(mktemp -d /tmp/vn_train_device_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"
same() { "$TOOL" same "$1" "$2" >/dev/null; }
# vanilla with the stand-in device module.
dev() { VN_CUDA_PLUGIN="$FAKE" "$VANILLA" "$@"; }
ckpt() { echo "$1/checkpoints/ckpt-s$(printf %010d "$2").safetensors"; }
# Every numbered checkpoint of run A equals run B's of the same step (and there is one).
same_ckpts() {
  local n=0 f
  for f in "$1"/checkpoints/ckpt-s*.safetensors; do
    [[ -f $f ]] || return 1
    same "$f" "$2/checkpoints/$(basename "$f")" || { echo "  differs: $(basename "$f")"; return 1; }
    n=$((n + 1))
  done
  ((n > 0))
}

"$TOOL" synth "$T/data" 16 8 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/base.yaml" <<YAML
model: {name: custom, dims: [8, 16], strides: [2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0.8, cutmix: 1.0, auto_augment: "", reprob: 0, color_jitter: 0}
optim: {name: lamb, lr: 0.01, update_freq: 2, warmup_epochs: 0, clip_grad: 0.5}
ema: {decays: [0.9, 0.99], eval: true}
deep_training: {decay_epochs: 1, update: iteration}
train: {epochs: 2, batch_size: 8, threads: 1, log_every: 1000}
output: {dir: $T/run, keep_last: 0, tensorboard: false}
YAML

# 1. The same run on the cpu and on the device.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/cpu" >"$T/cpu.log" 2>&1
expect "cpu run: exit 0" [ $? -eq 0 ]
dev train "$T/base.yaml" --set output.dir="$T/dev" --set train.device=cuda >"$T/dev.log" 2>&1
rc=$?
expect "device run: exit 0" [ $rc -eq 0 ]
[[ $rc -eq 0 ]] || tail -5 "$T/dev.log"
expect "device run (EMA, mixup/cutmix, LAMB, clipping): every checkpoint equals the cpu's" \
  same_ckpts "$T/cpu" "$T/dev"
expect "device run: the best EMA checkpoint equals the cpu's" \
  same "$T/cpu/checkpoints/best-ema-0.safetensors" "$T/dev/checkpoints/best-ema-0.safetensors"
grep -h "eval epoch" "$T/cpu.log" >"$T/cpu.eval"
grep -h "eval epoch" "$T/dev.log" >"$T/dev.eval"
expect "device run: the same evaluation lines" cmp -s "$T/cpu.eval" "$T/dev.eval"
expect "device run: evaluation lines were printed" [ -s "$T/dev.eval" ]
# data.prefetch 1: on a device the loader gets a second buffer for the batch fetched ahead.
dev train "$T/base.yaml" --set output.dir="$T/dev-p1" --set train.device=cuda \
  --set data.prefetch=1 >"$T/dev-p1.log" 2>&1
expect "device run with data.prefetch 1: exit 0" [ $? -eq 0 ]
expect "device run with data.prefetch 1: every checkpoint equals the cpu's" \
  same_ckpts "$T/cpu" "$T/dev-p1"

# 2. AdamW, dropout, hard labels with label smoothing, act_learn per epoch, no EMA.
other=(--set optim.name=adamw --set data.mixup=0 --set data.cutmix=0 --set model.drop_rate=0.2
       --set deep_training.update=epoch --set ema.decays=[] --set loss.smoothing=0.1
       --set train.epochs=3 --set optim.clip_grad=0)
"$VANILLA" train "$T/base.yaml" "${other[@]}" --set output.dir="$T/cpu2" >"$T/cpu2.log" 2>&1
expect "cpu run 2: exit 0" [ $? -eq 0 ]
dev train "$T/base.yaml" "${other[@]}" --set output.dir="$T/dev2" --set train.device=cuda \
  --set train.deterministic=true --set train.tf32=false >"$T/dev2.log" 2>&1
expect "device run 2: exit 0" [ $? -eq 0 ]
expect "device run 2 (AdamW, dropout, smoothing): every checkpoint equals the cpu's" \
  same_ckpts "$T/cpu2" "$T/dev2"

# model.init (read into the host model before it moves) with a BCE loss on hard labels.
init=(--set model.init="$(ckpt "$T/cpu2" 12)" --set train.max_steps=3 --set loss.bce_always=true)
"$VANILLA" train "$T/base.yaml" "${init[@]}" --set output.dir="$T/cpu3" >/dev/null 2>&1
dev train "$T/base.yaml" "${init[@]}" --set output.dir="$T/dev3" --set train.device=cuda \
  >"$T/dev3.log" 2>&1
expect "device run 3 (model.init, BCE): exit 0" [ $? -eq 0 ]
expect "device run 3 (model.init, BCE): every checkpoint equals the cpu's" \
  same_ckpts "$T/cpu3" "$T/dev3"

# 3. Across devices: a cpu checkpoint of step 3 (mid-epoch) resumes on the device, a device
# checkpoint on the cpu; both end where the straight runs end.
final=$(ckpt "$T/cpu" 8)
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/c2d" --set train.max_steps=3 >/dev/null 2>&1
dev train "$T/base.yaml" --set output.dir="$T/c2d" --set train.device=cuda --resume auto \
  >"$T/c2d.log" 2>&1
expect "cpu -> device resume: exit 0" [ $? -eq 0 ]
expect "cpu -> device resume: resumed at step 3" contains "$T/c2d.log" "step 3"
expect "cpu -> device resume: the final checkpoint equals the straight run's" \
  same "$final" "$(ckpt "$T/c2d" 8)"
dev train "$T/base.yaml" --set output.dir="$T/d2c" --set train.max_steps=5 \
  --set train.device=cuda >/dev/null 2>&1
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/d2c" --resume auto >"$T/d2c.log" 2>&1
expect "device -> cpu resume: exit 0" [ $? -eq 0 ]
expect "device -> cpu resume: resumed at step 5" contains "$T/d2c.log" "step 5"
expect "device -> cpu resume: the final checkpoint equals the straight run's" \
  same "$final" "$(ckpt "$T/d2c" 8)"

# 4. SIGTERM on the device: checkpoint, exit 3; the resume ends at the bytes of a straight
# device run with the same step budget.
long=(--set train.epochs=100000 --set output.save_every_steps=1 --set train.device=cuda)
# (not through dev(): $! must be vanilla's own pid)
VN_CUDA_PLUGIN="$FAKE" "$VANILLA" train "$T/base.yaml" "${long[@]}" --set output.dir="$T/sig" \
  >"$T/sig.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  ls "$T"/sig/checkpoints/ckpt-*.safetensors >/dev/null 2>&1 && break
  sleep 0.05
done
kill -TERM $pid
wait $pid
expect "SIGTERM on the device: exit 3" [ $? -eq 3 ]
last=$(ls "$T"/sig/checkpoints/ckpt-*.safetensors | sort | tail -1)
step=$(basename "$last" | sed 's/ckpt-s0*\([0-9]*\).safetensors/\1/')
budget=$((step + 5))
dev train "$T/base.yaml" "${long[@]}" --set output.dir="$T/sig" --set train.max_steps=$budget \
  --resume auto >"$T/sig2.log" 2>&1
expect "SIGTERM on the device: the resume exits 0" [ $? -eq 0 ]
dev train "$T/base.yaml" "${long[@]}" --set output.dir="$T/straight" \
  --set train.max_steps=$budget >/dev/null 2>&1
expect "SIGTERM on the device: the resumed run ends at the straight run's bytes (step $budget)" \
  same "$(ckpt "$T/straight" $budget)" "$(ckpt "$T/sig" $budget)"

# 5. eval, predict and export: --device cuda prints and writes what --device cpu does.
for key in "" "--key model_ema.1"; do
  # shellcheck disable=SC2086
  "$VANILLA" eval "$final" $key --save-logits "$T/ev_cpu.safetensors" >"$T/ev_cpu" 2>&1
  # shellcheck disable=SC2086
  dev eval "$final" $key --device cuda --save-logits "$T/ev_dev.safetensors" >"$T/ev_dev" 2>&1
  expect "eval ${key:-model} --device cuda: exit 0" [ $? -eq 0 ]
  sed -i '/^logits:/d' "$T/ev_cpu" "$T/ev_dev"
  expect "eval ${key:-model} --device cuda: the cpu's figures" cmp -s "$T/ev_cpu" "$T/ev_dev"
  expect "eval ${key:-model} --device cuda: the cpu's logits" \
    same "$T/ev_cpu.safetensors" "$T/ev_dev.safetensors"
done
head -1 "$T/ev_dev"
imgs=("$T"/data/val/c0/000.png "$T"/data/val/c3/001.png)
"$VANILLA" predict "$final" "${imgs[@]}" --save-logits "$T/pr_cpu.safetensors" >"$T/pr_cpu" 2>&1
dev predict "$final" "${imgs[@]}" --device cuda --save-logits "$T/pr_dev.safetensors" \
  >"$T/pr_dev" 2>&1
expect "predict --device cuda: exit 0" [ $? -eq 0 ]
sed -i '/^logits:/d' "$T/pr_cpu" "$T/pr_dev"
expect "predict --device cuda: the cpu's classes and probabilities" cmp -s "$T/pr_cpu" "$T/pr_dev"
expect "predict --device cuda: the cpu's logits" same "$T/pr_cpu.safetensors" "$T/pr_dev.safetensors"
"$VANILLA" export "$final" -o "$T/ex_cpu.safetensors" --force >"$T/ex_cpu" 2>&1
dev export "$final" -o "$T/ex_dev.safetensors" --force --device cuda >"$T/ex_dev" 2>&1
expect "export --device cuda: exit 0" [ $? -eq 0 ]
sed -i '/^deploy weights:/d' "$T/ex_cpu" "$T/ex_dev"
expect "export --device cuda: the cpu's merge check" cmp -s "$T/ex_cpu" "$T/ex_dev"
expect "export --device cuda: the cpu's deploy weights" \
  same "$T/ex_cpu.safetensors" "$T/ex_dev.safetensors"

# 6. A device that is not usable: exit 1 with the reason, nothing trained.
why="no CUDA device visible (stand-in refusal)"
VN_FAKE_BACKEND_REFUSE="$why" dev train "$T/base.yaml" --set output.dir="$T/no" \
  --set train.device=cuda >"$T/no.log" 2>&1
expect "unusable device: train exits 1" [ $? -eq 1 ]
expect "unusable device: train names the key and the reason" \
  contains "$T/no.log" "train.device: cuda: $why"
expect "unusable device: no checkpoint" [ ! -e "$T/no/checkpoints" ]
for cmd in "eval $final" "predict $final ${imgs[0]}" "export $final -o $T/no.safetensors --force"; do
  # shellcheck disable=SC2086
  VN_FAKE_BACKEND_REFUSE="$why" dev $cmd --device cuda >"$T/no.log" 2>&1
  expect "unusable device: ${cmd%% *} exits 1" [ $? -eq 1 ]
  expect "unusable device: ${cmd%% *} says why" contains "$T/no.log" "--device cuda: $why"
done
"$VANILLA" predict "$final" "${imgs[0]}" --device tpu >"$T/no.log" 2>&1
expect "predict --device tpu: usage error (exit 2)" [ $? -eq 2 ]
for cmd in eval predict export; do
  "$VANILLA" $cmd --help >"$T/help" 2>&1
  expect "$cmd --help names --device" contains "$T/help" "--device cpu|cuda"
done

echo "train on a device (stand-in module): $pass passed, $fail failed"
((fail == 0))
