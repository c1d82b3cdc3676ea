#!/usr/bin/env bash
# Crash consistency (issue 18): a training run that checkpoints after every step is killed
# with SIGKILL at random instants, at least KILLS times (default 20), and resumed with
# --resume auto after each kill. Every run that reaches the end must hold the same tensors
# (model, optimizer, EMA) as a straight run, byte for byte, and no temporary file may be left.
# A run that finishes before enough kills starts over in a fresh folder.
# Usage (from meson): test_crash.sh VANILLA TESTTOOL [KILLS]
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
KILLS=${3:-20}
T=$(mktemp -d /tmp/vn_crash_XXXXXX)
trap 'rm -rf "$T"' EXIT

"$TOOL" synth "$T/data" 4 2 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/cfg.yaml" <<YAML
model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.01, weight_decay: 0.01, update_freq: 1, warmup_epochs: 1}
deep_training: {decay_epochs: 4, update: iteration}
ema: {decays: [0.9]}
loss: {bce: false}
train: {epochs: 12, batch_size: 8, threads: 1, log_every: 1000}
output: {save_every_steps: 1, keep_last: 2, tensorboard: false}
YAML
final=checkpoints/ckpt-s0000000024.safetensors

start=$(date +%s.%N)
"$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/straight" >"$T/straight.log" 2>&1 ||
  { cat "$T/straight.log"; echo "FAIL - the straight run failed"; exit 1; }
straight_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
[[ -f "$T/straight/$final" ]] || { ls -R "$T/straight"; echo "FAIL - no $final"; exit 1; }
echo "straight run: $straight_s s"

kills=0 runs=0 fail=0 attempt=0 torn=0
run_dir() { echo "$T/killed$runs"; }
while ((kills < KILLS || attempt > 0)); do
  dir=$(run_dir)
  "$VANILLA" train "$T/cfg.yaml" --set output.dir="$dir" --resume auto >>"$T/killed$runs.log" 2>&1 &
  pid=$!
  attempt=$((attempt + 1))
  # A random instant within the straight run's length: the resume redoes at most one step.
  delay=$(awk -v s="$straight_s" -v r="$RANDOM" 'BEGIN{printf "%.3f", (r / 32768.0) * s * 0.5}')
  # Once enough kills are done, the run in progress is left to finish.
  ((kills < KILLS)) && sleep "$delay"
  if ((kills < KILLS)) && kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    # Killed mid-write: a temporary file is there now; the resume must remove it.
    [[ -d "$dir" ]] && torn=$((torn + $(find "$dir" -name '*.tmp*' | wc -l)))
    continue
  fi
  wait "$pid"
  rc=$?
  if ((rc != 0)); then
    tail -5 "$T/killed$runs.log"
    echo "FAIL - resumed run $runs exited with $rc"
    fail=1
    break
  fi
  # Finished: the tensors equal the straight run's; nothing temporary is left.
  if ! "$TOOL" same "$T/straight/$final" "$dir/$final"; then
    echo "FAIL - run $runs (after $attempt starts) differs from the straight run"
    fail=1
  fi
  left=$(find "$dir" -name '*.tmp*' | head -5)
  if [[ -n "$left" ]]; then
    echo "FAIL - temporary files left in run $runs: $left"
    fail=1
  fi
  echo "run $runs: finished after $attempt starts, identical to the straight run"
  runs=$((runs + 1))
  attempt=0
  ((fail)) && break
done
echo "crash consistency: $kills kills survived ($torn temporary files of torn writes cleaned up)," \
  "$runs complete runs identical, $fail failures"
((fail == 0 && kills >= KILLS && runs >= 1))
