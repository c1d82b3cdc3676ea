#!/usr/bin/env bash
# `vanilla train` / eval / predict / export on a real GPU (issue 16), in about 3 minutes,
# given only the vanilla program (libvanilla.so with libvanilla_cuda.so beside it) and
# testtool (tests/train/testtool: makes the image folder and compares safetensors files):
#  1. a tiny synthetic image folder (testtool synth: 4 classes of 16x16 PNGs, no download);
#  2. the recipe run (EMA, mixup/cutmix, AdamW, clipping) on the cpu and on cuda in
#     deterministic strict FP32: both train (AdamW amplifies rounding, see below, so this
#     one is not compared tensor by tensor); 8 SGD steps on both: within 1e-3 at steps 1, 4, 8;
#  3. deterministic mode: a SIGTERM'd cuda run resumed ends at the bytes of a straight one;
#  4. SGD: a cpu checkpoint resumed on cuda and a cuda checkpoint on the cpu end within 1e-3
#     of the straight runs;
#  5. eval / predict / export --device cuda against --device cpu (figures and files);
#  6. unless --no-speed: vanillanet_5 at 224, batch 128, 30 steps of `vanilla train` on cuda
#     (TF32; the data pipeline included), images per second from the progress lines.
#
#   bench/train_gpu_check.sh VANILLA TESTTOOL [WORKDIR] [--no-speed]
# Without a GPU it runs against the stand-in module of the tests (VN_CUDA_PLUGIN=...
# tests/cuda/libvn_fake_backend_cpuops.so), where every comparison is exact.
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=${3:-/tmp/vn_train_gpu}
speed=1
for a in "$@"; do [[ $a == --no-speed ]] && speed=0; done
[[ ${3:-} == --no-speed ]] && T=/tmp/vn_train_gpu
rm -rf "$T" && mkdir -p "$T"
pass=0 fail=0
t0=$(date +%s)
say() { printf '\n--- %s (t+%ds)\n' "$*" $(($(date +%s) - t0)); }
check() { # description, command...
  local d=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $d"; else fail=$((fail + 1)); echo "FAIL - $d"; fi
}
ckpt() { echo "$1/checkpoints/ckpt-s$(printf %010d "$2").safetensors"; }
run() { # name, timeout, vanilla arguments...: the run's log in $T/name.log
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$VANILLA" "$@" >"$T/$name.log" 2>&1
  local rc=$?
  [[ $rc -eq 0 ]] || { echo "  $name: exit $rc"; tail -4 "$T/$name.log"; }
  return $rc
}

say "data and config"
"$TOOL" synth "$T/data" 64 16 || { echo "testtool synth failed"; exit 1; }
cat >"$T/tiny.yaml" <<YAML
model: {name: custom, dims: [64, 128], strides: [2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0.8, cutmix: 1.0, auto_augment: "", reprob: 0, color_jitter: 0,
       workers: 4}
optim: {name: adamw, lr: 0.05, update_freq: 1, warmup_epochs: 0, clip_grad: 1.0}
ema: {decays: [0.9], eval: true}
deep_training: {decay_epochs: 2, update: iteration}
train: {epochs: 4, batch_size: 32, threads: 4, log_every: 1000, deterministic: true, tf32: false}
output: {dir: $T/run, keep_last: 0, tensorboard: false, save_every_steps: 4}
YAML
final=32 # 4 epochs x 8 steps; the cpu reaches about 88% top-1 (EMA 56%)

# Two kinds of comparison. AdamW at this learning rate amplifies rounding: a change of the
# input mean by one float ulp moves the cpu's own checkpoint by 100% of some tensors' size
# after 1 step (the zero-by-construction gradients of the biases in front of a BatchNorm are
# rounding noise, and Adam scales any noise to a full step). So the recipe run (AdamW, EMA,
# mixup/cutmix, clipping) is checked for training, not for bytes; the numbers are compared
# on SGD runs, where the same one-ulp change moves no tensor by more than 1.1e-6 in 8 steps,
# and without dropout: its masks come from each device's own generator (the cpu's stream of
# the context RNG, a counter-based hash of one draw of it on cuda), so they differ by design.
sgd=(--set optim.name=sgd --set optim.lr=0.05 --set optim.momentum=0.9 --set optim.clip_grad=0
     --set model.drop_rate=0 --set train.max_steps=8 --set output.save_every_steps=1)

say "cpu and cuda: the recipe run (AdamW, EMA, mixup/cutmix; deterministic, strict FP32)"
run cpu 120 train "$T/tiny.yaml" --set output.dir="$T/cpu"
run cuda 120 train "$T/tiny.yaml" --set output.dir="$T/cuda" --set train.device=cuda
check "cuda run: exit 0 and a final checkpoint" [ -f "$(ckpt "$T/cuda" $final)" ]
grep -h "eval epoch 3" "$T/cpu.log" "$T/cuda.log"
top1=$(grep -h "eval epoch 3: top-1" "$T/cuda.log" | sed 's/.*top-1 \([0-9.]*\)%.*/\1/')
check "cuda run learns: top-1 ${top1:-?}% >= 50% on 4 classes" \
  python3 -c "import sys; sys.exit(0 if float('${top1:-0}') >= 50 else 1)"

say "cpu and cuda: 8 SGD steps (deterministic, strict FP32)"
run sgd_cpu 120 train "$T/tiny.yaml" --set output.dir="$T/sgd_cpu" "${sgd[@]}"
run sgd_cuda 120 train "$T/tiny.yaml" --set output.dir="$T/sgd_cuda" "${sgd[@]}" \
  --set train.device=cuda
for s in 1 4 8; do
  check "SGD step $s: cuda within 1e-3 of the cpu (relative)" \
    "$TOOL" close "$(ckpt "$T/sgd_cpu" $s)" "$(ckpt "$T/sgd_cuda" $s)" 1e-3
done

say "deterministic cuda: SIGTERM and resume"
long=(--set train.epochs=100000 --set output.save_every_steps=1 --set train.device=cuda)
"$VANILLA" train "$T/tiny.yaml" "${long[@]}" --set output.dir="$T/sig" >"$T/sig.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  ls "$T"/sig/checkpoints/ckpt-*.safetensors >/dev/null 2>&1 && break
  sleep 0.05
done
sleep 0.3
kill -TERM $pid
wait $pid
check "SIGTERM: exit 3" [ $? -eq 3 ]
last=$(ls "$T"/sig/checkpoints/ckpt-*.safetensors | sort | tail -1)
step=$(basename "$last" | sed 's/ckpt-s0*\([0-9]*\).safetensors/\1/')
budget=$((step + 6))
echo "  stopped at step $step; both runs go to step $budget"
run sig2 120 train "$T/tiny.yaml" "${long[@]}" --set output.dir="$T/sig" \
  --set train.max_steps=$budget --resume auto
run straight 120 train "$T/tiny.yaml" "${long[@]}" --set output.dir="$T/straight" \
  --set train.max_steps=$budget
check "SIGTERM + resume on cuda: the straight run's bytes at step $budget" \
  "$TOOL" same "$(ckpt "$T/straight" $budget)" "$(ckpt "$T/sig" $budget)"

say "across devices (SGD)"
run c2d_a 120 train "$T/tiny.yaml" --set output.dir="$T/c2d" "${sgd[@]}" --set train.max_steps=4
run c2d_b 120 train "$T/tiny.yaml" --set output.dir="$T/c2d" "${sgd[@]}" --set train.device=cuda \
  --resume auto
check "cpu checkpoint of step 4 resumed on cuda: step 8 within 1e-3 of the cpu's" \
  "$TOOL" close "$(ckpt "$T/sgd_cpu" 8)" "$(ckpt "$T/c2d" 8)" 1e-3
run d2c_a 120 train "$T/tiny.yaml" --set output.dir="$T/d2c" "${sgd[@]}" --set train.max_steps=4 \
  --set train.device=cuda
run d2c_b 120 train "$T/tiny.yaml" --set output.dir="$T/d2c" "${sgd[@]}" --resume auto
check "cuda checkpoint of step 4 resumed on the cpu: step 8 within 1e-3 of the cuda run's" \
  "$TOOL" close "$(ckpt "$T/sgd_cuda" 8)" "$(ckpt "$T/d2c" 8)" 1e-3

say "eval, predict, export --device cuda"
m=$(ckpt "$T/cuda" $final)
for d in cpu cuda; do
  run "eval_$d" 60 eval "$m" --device "$d" --save-logits "$T/ev_$d.safetensors"
  head -1 "$T/eval_$d.log"
  run "predict_$d" 60 predict "$m" "$T"/data/val/c0/000.png "$T"/data/val/c2/003.png --device "$d" \
    --save-logits "$T/pr_$d.safetensors"
  run "export_$d" 60 export "$m" -o "$T/ex_$d.safetensors" --force --device "$d"
  grep -h "largest" "$T/export_$d.log"
done
check "eval --device cuda: logits close to the cpu's" \
  "$TOOL" close "$T/ev_cpu.safetensors" "$T/ev_cuda.safetensors" 1e-3
check "predict --device cuda: logits close to the cpu's" \
  "$TOOL" close "$T/pr_cpu.safetensors" "$T/pr_cuda.safetensors" 1e-3
check "export --device cuda: the same deploy weights (the merge runs on the host)" \
  "$TOOL" same "$T/ex_cpu.safetensors" "$T/ex_cuda.safetensors"

if ((speed)); then
  say "speed: vanillanet_5 at 224, batch 128, 30 steps on cuda (TF32, data pipeline included)"
  "$TOOL" synth "$T/big" 256 4 >/dev/null
  run speed 240 train "$T/tiny.yaml" --set output.dir="$T/speed" --set data.root="$T/big" \
    --set model.name=vanillanet_5 --set model.dims=[] --set model.strides=[] \
    --set model.in_chans=3 --set data.grayscale=false --set data.input_size=224 \
    --set data.mean=[0.485,0.456,0.406] --set data.std=[0.229,0.224,0.225] \
    --set train.batch_size=128 --set train.max_steps=30 --set train.epochs=100 \
    --set train.log_every=10 --set train.deterministic=false --set train.tf32=true \
    --set train.eval_every=0 --set data.workers=14 --set train.threads=14 \
    --set ema.decays=[] --set optim.name=lamb --set optim.lr=0.001 --set optim.clip_grad=0 \
    --set output.save_every_steps=0 --set train.device=cuda
  # (no optim.clip_grad: it reads every gradient back to the host)
  grep -E "img/s|^time:" "$T/speed.log" | tail -5
fi

say "train on cuda: $pass passed, $fail failed"
((fail == 0))
