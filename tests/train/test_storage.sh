#!/usr/bin/env bash
# Storage faults on real file systems (issue 18; needs root for tmpfs mounts, else skipped
# with 77): a checkpoint folder that fills up mid-run (a small tmpfs) stops training with a
# message naming the checkpoint and "No space left on device", leaves the previous checkpoint
# intact and loadable and no temporary file, and the run resumes once there is room; a
# read-only output folder and one that cannot be created are refused before training starts.
# Usage (from meson): test_storage.sh VANILLA TESTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_storage_XXXXXX)
M="$T/full" R="$T/ro"
mkdir -p "$M" "$R"
cleanup() { umount "$M" 2>/dev/null; umount "$R" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
[[ -n "${VN_KEEP_LOGS:-}" ]] && trap 'cp "$T"/*.log "$VN_KEEP_LOGS"/ 2>/dev/null; cleanup' EXIT
source "$(dirname "$0")/../support/expect.sh"

if [[ $(id -u) -ne 0 ]] || ! mount -t tmpfs -o size=64k tmpfs "$R" 2>/dev/null; then
  echo "SKIP: mounting a tmpfs needs root"
  exit 77
fi
umount "$R"

"$TOOL" synth "$T/data" 4 2 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/cfg.yaml" <<YAML
model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.01, weight_decay: 0.01, update_freq: 1, warmup_epochs: 1}
deep_training: {decay_epochs: 2}
ema: {decays: []}
train: {epochs: 6, batch_size: 8, threads: 1, log_every: 1000}
output: {save_every_steps: 1, keep_last: 0, tensorboard: false}
YAML

# The size of one checkpoint, from a one-step run elsewhere.
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/probe" --set train.max_steps=1 >/dev/null 2>&1
size=$(stat -c %s "$T"/probe/checkpoints/ckpt-s0000000001.safetensors 2>/dev/null || echo 0)
expect "probe run wrote a checkpoint" [ "$size" -gt 0 ]

# A folder with room for about three checkpoints (keep_last 0 keeps them all).
mount -t tmpfs -o size=$((size * 3 + 32768)) tmpfs "$M"
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$M/run" >"$T/full.log" 2>&1
expect "disk full: exit 1" [ $? -eq 1 ]
expect "disk full: names the cause" contains "$T/full.log" "No space left on device"
expect "disk full: names the checkpoint" grep -qE "$M/run/checkpoints/ckpt-s[0-9]+\.safetensors" "$T/full.log"
last=$(ls "$M"/run/checkpoints/ckpt-s*.safetensors 2>/dev/null | tail -1)
expect "disk full: earlier checkpoints kept" [ -n "$last" ]
"$TOOL" same "$last" "$last" >/dev/null 2>&1
expect "disk full: the last checkpoint opens and verifies" [ $? -eq 0 ]
expect "disk full: no temporary file left" [ -z "$(find "$M" -name '*.tmp*')" ]
# With room again, the run resumes from that checkpoint and finishes.
mount -o remount,size=64m "$M"
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$M/run" --resume auto >"$T/resume.log" 2>&1
expect "room again: resume finishes" [ $? -eq 0 ]
expect "room again: resumed from the last checkpoint" contains "$T/resume.log" "$(basename "$last")"

# A read-only output folder: refused before training starts.
mount -t tmpfs -o size=64k tmpfs "$R"
mkdir -p "$R/run/checkpoints"
mount -o remount,ro "$R"
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$R/run" >"$T/ro.log" 2>&1
expect "read-only folder: exit 1" [ $? -eq 1 ]
expect "read-only folder: says so" contains "$T/ro.log" "Read-only file system"
expect "read-only folder: before training" [ -z "$(grep -iE 'step|epoch [0-9]' "$T/ro.log")" ]

# An output folder that cannot be created (its parent is a file).
touch "$T/afile"
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/afile/run" >"$T/nodir.log" 2>&1
expect "uncreatable folder: exit 1" [ $? -eq 1 ]
expect "uncreatable folder: names it" contains "$T/nodir.log" "$T/afile"

echo "storage: $pass passed, $fail failed"
((fail == 0))
