#!/usr/bin/env bash
# The detector through the vanilla command (model.task: detect) on a tiny set made by the
# Fashion-MNIST detection importer from synthetic items: train a few steps with the eval
# table and metrics.jsonl, resume mid-epoch byte-identical to an uninterrupted run, SIGTERM
# stops with a checkpoint and exit code 3, eval prints the table, predict prints boxes and
# draws a PNG, export merges the backbone (same outputs) and the merged file evaluates, a bad
# label line is reported with its file and line. Model EMA (Ultralytics' ModelEMA): evaluated
# during training, saved in checkpoints and resumed byte-identically, used by eval / predict /
# export; at decay 0 it equals the model. optim.update_freq: resumes byte-identically (also in
# the middle of Ultralytics' accumulation ramp, whose steps are checked), and 2
# micro-batches of 2 give the weights of 1 batch of 4 (see below). train.nonfinite stop / skip.
# SIGTERM during an evaluation: given up, evaluated again on resume, same end as a straight run.
# Usage (from meson): test_detect_cli.sh VANILLA DETECTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_detcli_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"

"$TOOL" fmd "$T/fmd" 24 6 64 || { echo "cannot make the detection set"; exit 1; }
cat >"$T/det.yaml" <<YAML
model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}
detect: {data: $T/fmd/data.yaml, imgsz: 64, width_multiple: 0.125, depth_multiple: 0.34,
         close_mosaic: 1}
data: {mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.002, weight_decay: 0.0005, warmup_epochs: 0, warmup_steps: 2, update_freq: 1,
        clip_grad: 10.0}
deep_training: {decay_epochs: 1, update: iteration}
train: {epochs: 2, batch_size: 4, threads: 1, log_every: 2, eval_every: 1}
output: {dir: $T/a, keep_last: 0, tensorboard: false}
YAML

# The importer's options: a set made, the same again not redone, fewer canvases remove the
# extra files, a bad range refused by name (exit 2).
IMP=(data import --format fashion-mnist-detect "$T/fmd-src" "$T/imp" --val 2 --canvas 64 --sizes 16-32 --items 1-2)
"$VANILLA" "${IMP[@]}" --train 5 >"$T/imp1.log" 2>&1
expect "import: options taken" contains "$T/imp1.log" "wrote 5 training and 2 validation images"
expect "import: data.yaml names the options" contains "$T/imp/data.yaml" "canvas 64, train 5, val 2, items 1-2, sizes 16-32, max cover 0.1, seed 0"
"$VANILLA" "${IMP[@]}" --train 5 >"$T/imp2.log" 2>&1
expect "import: the same set is not redone" contains "$T/imp2.log" "already holds this set"
"$VANILLA" "${IMP[@]}" --train 3 >"$T/imp3.log" 2>&1
expect "import: fewer canvases remove 2 images and 2 labels" contains "$T/imp3.log" "removed 4 files of an earlier, larger set"
expect "import: canvas 3 is gone" test ! -e "$T/imp/images/train/000003.png"
"$VANILLA" "${IMP[@]}" --sizes 40-30 >"$T/imp4.log" 2>&1
expect "import: bad --sizes exits 2" test $? -eq 2
expect "import: bad --sizes named" contains "$T/imp4.log" "--sizes 40-30: the maximum is below the minimum"

# A full run: the table after each epoch, the metrics, a checkpoint per epoch.
"$VANILLA" train "$T/det.yaml" >"$T/a.log" 2>&1
expect "train exits 0" test $? -eq 0
expect "train prints the table header (Ultralytics 8.3's)" contains "$T/a.log" "                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95)"
expect "train prints the row all" grep -qE '^ +all +6 ' "$T/a.log"
expect "metrics.jsonl has mAP50-95" contains "$T/a/metrics.jsonl" '"val_mAP50-95"'
expect "metrics.jsonl has per-class AP" contains "$T/a/metrics.jsonl" '"val_mAP50/'
A_LAST="$T/a/checkpoints/ckpt-s0000000012.safetensors"
expect "final checkpoint at step 12" test -f "$A_LAST"
expect "train evaluates the EMA weights" contains "$T/a.log" "eval after epoch 2 (EMA weights):"
expect "checkpoint holds the EMA update count" grep -qaF 'ema_updates\":12' "$A_LAST"
"$TOOL" emasame "$A_LAST" 2>/dev/null
expect "EMA weights differ from the live ones" test $? -eq 1

# Stopped at step 3 (mid-epoch), resumed: the same final weights and optimizer state.
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/b" --set train.max_steps=3 >"$T/b1.log" 2>&1
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/b" --resume auto >"$T/b2.log" 2>&1
expect "resume reports where it continues" contains "$T/b2.log" "position 12, step 3"
expect "resumed run equals the uninterrupted one (EMA included)" "$TOOL" same "$A_LAST" "$T/b/checkpoints/ckpt-s0000000012.safetensors"
expect "resumed run: the same EMA update count" grep -qaF 'ema_updates\":12' "$T/b/checkpoints/ckpt-s0000000012.safetensors"

# The EMA at decay 0 (1e-50 is 0 in float32, no ramp) is the model itself, BatchNorm
# statistics included; detect.ema_decay 0: no EMA.
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/h" --set detect.ema_decay=1e-50 --set detect.ema_tau=0 \
  --set train.max_steps=3 >"$T/h.log" 2>&1
"$TOOL" emasame "$T/h/checkpoints/ckpt-s0000000003.safetensors"
expect "EMA at decay 0 equals the model" test $? -eq 0
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/i" --set detect.ema_decay=0 --set train.max_steps=3 >"$T/i.log" 2>&1
"$TOOL" emasame "$T/i/checkpoints/ckpt-s0000000003.safetensors"
expect "ema_decay 0: no EMA in the checkpoint" test $? -eq 3
"$VANILLA" eval "$T/i/checkpoints/ckpt-s0000000003.safetensors" >"$T/i_eval.log" 2>&1
expect "ema_decay 0: eval uses the model" test $? -eq 0 -a "$(grep -c EMA "$T/i_eval.log")" -eq 0
# Resumed with the EMA on (--force: another config): the EMA starts from the loaded model.
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/i" --resume auto --force >"$T/i2.log" 2>&1
expect "resume without EMA weights: a note, then the EMA" contains "$T/i2.log" "holds no EMA weights: the EMA starts from its model"
expect "resume without EMA weights: 9 EMA updates to step 12" grep -qaF 'ema_updates\":9' "$T/i/checkpoints/ckpt-s0000000012.safetensors"

# update_freq 2 without the warmup's ramp: stopped after 2 steps and resumed equals the
# uninterrupted run.
UF=(train "$T/det.yaml" --set optim.update_freq=2 --set train.batch_size=2 --set detect.warmup_accumulate=false)
"$VANILLA" "${UF[@]}" --set output.dir="$T/j" >"$T/j.log" 2>&1
expect "update_freq 2: 24 images / (2 x 2) = 6 steps per epoch" contains "$T/j.log" "(6 steps per epoch of batch 2 x update_freq 2)"
expect "update_freq 2, no ramp: every step takes 2 batches" test "$(grep -c '"batches":2' "$T/j/metrics.jsonl")" -eq 12
"$VANILLA" "${UF[@]}" --set output.dir="$T/k" --set train.max_steps=2 >"$T/k1.log" 2>&1
"$VANILLA" "${UF[@]}" --set output.dir="$T/k" --resume auto >"$T/k2.log" 2>&1
expect "update_freq 2: resume at position 8, step 2" contains "$T/k2.log" "position 8, step 2"
expect "update_freq 2: resumed run equals the uninterrupted one" "$TOOL" same "$T/j/checkpoints/ckpt-s0000000012.safetensors" "$T/k/checkpoints/ckpt-s0000000012.safetensors"
tl() { grep '"kind":"epoch"' "$1" | sed -n 's/.*"train_loss":\([^,]*\),.*/\1/p' | tr '\n' ' '; }
expect "update_freq 2: resumed mid-epoch, the epochs' train_loss as uninterrupted ($(tl "$T/j/metrics.jsonl"))" \
  test "$(tl "$T/k/metrics.jsonl")" = "$(tl "$T/j/metrics.jsonl")"

# Ultralytics' accumulation ramp (the default): update_freq 4, batch 2, 2 warmup steps = 8
# micro-batches ni; a step ends at ni when ni - (the last step's ni) >= accumulate(ni) =
# round-half-even(numpy.interp(ni, [0, 8], [1, 4])) = 1 1 2 2 2 3 3 4, then 4; an epoch
# (12 micro-batches: 24 images / (2 x 4) = 3 steps) ends with a step of what is left.
# Steps: [0] [1] [2,3] [4,5,6] [7,8,9,10] [11] in epoch 0, then 4 4 4: 9 steps.
RA=(train "$T/det.yaml" --set optim.update_freq=4 --set train.batch_size=2)
"$VANILLA" "${RA[@]}" --set output.dir="$T/ra" >"$T/ra.log" 2>&1
expect "ramp: exits 0" test $? -eq 0
expect "ramp: the start line says epochs take more steps during it" contains "$T/ra.log" \
  "(3 steps per epoch of batch 2 x update_freq 4; more while the warmup ramps the accumulation up from 1)"
got=$(grep '"kind":"step"' "$T/ra/metrics.jsonl" | sed -n 's/.*"batches":\([0-9]*\).*/\1/p' | tr '\n' ' ')
expect "ramp: micro-batches per step 1 1 2 3 4 1 4 4 4 (got $got)" test "$got" = "1 1 2 3 4 1 4 4 4 "
expect "ramp: the last checkpoint at step 9" test -f "$T/ra/checkpoints/ckpt-s0000000009.safetensors"
"$VANILLA" "${RA[@]}" --set output.dir="$T/rb" --set train.max_steps=4 >"$T/rb1.log" 2>&1
"$VANILLA" "${RA[@]}" --set output.dir="$T/rb" --resume auto >"$T/rb2.log" 2>&1
expect "ramp: stopped mid-ramp after 4 steps (7 micro-batches of 2)" contains "$T/rb2.log" "position 14, step 4"
expect "ramp: resumed run equals the uninterrupted one" "$TOOL" same "$T/ra/checkpoints/ckpt-s0000000009.safetensors" "$T/rb/checkpoints/ckpt-s0000000009.safetensors"

# A kill -9 while best.safetensors is written (an LD_PRELOAD shim kills at its open): the
# epoch's checkpoint has not taken its name, and the resume ends with the straight run's files.
if cc -shared -fPIC -o "$T/kill_at.so" "$(dirname "$0")/../support/kill_at.c" -ldl 2>"$T/cc.log"; then
  KILL_AT=best.safetensors.tmp LD_PRELOAD="$T/kill_at.so" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
    "$VANILLA" train "$T/det.yaml" --set output.dir="$T/kb" >/dev/null 2>&1
  expect "killed writing best.safetensors: killed" test $? -eq 137
  expect "killed writing best.safetensors (epoch 2, the first evaluation): its checkpoint not in place" \
    test ! -e "$T/kb/checkpoints/ckpt-s0000000012.safetensors"
  "$VANILLA" train "$T/det.yaml" --set output.dir="$T/kb" --resume auto >/dev/null 2>&1
  expect "killed writing best.safetensors: the resume exits 0" test $? -eq 0
  last=$(ls "$T/a/checkpoints" | grep '^ckpt-s' | sort | tail -1)
  for f in best.safetensors "$last"; do
    expect "killed writing best.safetensors: $f as the straight run's" "$TOOL" same "$T/a/checkpoints/$f" "$T/kb/checkpoints/$f"
  done
  expect "killed writing best.safetensors: no temporary file left after the resume" \
    test "$(ls "$T/kb/checkpoints" | grep -c '\.tmp\.')" -eq 0
else
  bad "the crash shim compiles (scripts/setup.sh installs gcc): $(cat "$T/cc.log")"
fi

# SIGTERM during an evaluation: the pass is given up, the checkpoint keeps the end of the
# epoch's steps, and the resume evaluates again: the same tensors and evaluation rows as a run
# never stopped. 1,500 validation canvases make each pass last a second or more.
"$TOOL" fmd "$T/fmdv" 4 1500 64 >/dev/null || { echo "cannot make the evaluation set"; exit 1; }
EV=(train "$T/det.yaml" --set detect.data="$T/fmdv/data.yaml" --set train.epochs=3 --set train.log_every=1)
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev_straight" >"$T/ev_straight.log" 2>&1
expect "eval stop: the straight run exits 0" test $? -eq 0
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev" >"$T/ev.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "^epoch 2/3 step 1/1" "$T/ev.log" 2>/dev/null && break
  sleep 0.02
done
kill -TERM $pid
wait $pid
expect "eval stop: exit 3" test $? -eq 3
expect "eval stop: says it stopped during the evaluation" contains "$T/ev.log" "stopping on signal during evaluation"
expect "eval stop: no table printed" test "$(grep -c "eval after epoch" "$T/ev.log")" -eq 0
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev" --resume auto >"$T/ev2.log" 2>&1
expect "eval stop: resume exits 0" test $? -eq 0
expect "eval stop: the resume evaluates epoch 2 first" test "$(grep -m1 -E "^(eval after|epoch)" "$T/ev2.log")" = "eval after epoch 2 (EMA weights):"
expect "eval stop: final tensors equal the straight run's" "$TOOL" same \
  "$T/ev_straight/checkpoints/ckpt-s0000000003.safetensors" "$T/ev/checkpoints/ckpt-s0000000003.safetensors"
evrows() { grep '"kind":"eval"' "$1" | sed 's/"time":[^,]*,//; s/,"peak_rss_mb":[^,}]*//'; }
expect "eval stop: metrics.jsonl has the straight run's evaluation rows, each once" \
  test "$(evrows "$T/ev/metrics.jsonl")" = "$(evrows "$T/ev_straight/metrics.jsonl")"

# SIGTERM: a checkpoint and exit code 3; resume finishes the run. (No evaluation until the
# last epoch, so that the signal lands in a training step: the stop during an evaluation is
# tested above.)
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/c" --set train.epochs=400 --set train.eval_every=0 >"$T/c.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  [ -f "$T/c/metrics.jsonl" ] && grep -q '"kind":"step"' "$T/c/metrics.jsonl" && break
  sleep 0.1
done
kill -TERM $pid
wait $pid
rc=$?
expect "SIGTERM exits 3" test $rc -eq 3
# (the signal may land in a step, "stopping on signal: checkpoint written", or just after the
# end-of-epoch checkpoint, which then serves; either way the run names a checkpoint it wrote)
ck=$(sed -n 's/^interrupted at epoch [0-9]*, step [0-9]*; checkpoint //p' "$T/c.log")
expect "SIGTERM wrote a checkpoint" test -n "$ck" -a -f "$ck"
# its epoch counted as the progress lines count them (from 1, Ultralytics' "1/E")
ie=$(sed -n 's/^interrupted at epoch \([0-9]*\),.*/\1/p' "$T/c.log")
pe=$(grep -o '^epoch [0-9]*/400' "$T/c.log" | tail -1 | sed 's/epoch \([0-9]*\)\/400/\1/')
expect "SIGTERM: the epoch as the progress lines count it ($ie after $pe)" \
  test -n "$ie" -a -n "$pe" -a "${ie:-0}" -ge "${pe:-1}" -a "${ie:-0}" -le "$((${pe:-0} + 1))"
[ -n "$ck" ] || sed "s/^/# c.log: /" "$T/c.log" | tail -8
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/c" --set train.epochs=400 --set train.eval_every=0 \
  --set train.max_steps=8 --resume auto >"$T/c2.log" 2>&1
expect "resume after SIGTERM" test $? -eq 0

# info: the table and Ultralytics' summary of the checkpoint and of the config, parameters as
# the trainer counted them.
np=$(sed -n 's/^detector: \([0-9]*\) parameters.*/\1/p' "$T/a.log")
"$VANILLA" info "$A_LAST" >"$T/info.log" 2>&1
expect "info exits 0" test $? -eq 0
expect "info describes the checkpoint" grep -qE "detector training checkpoint, 10 classes, imgsz 64, epoch 2, step 12" "$T/info.log"
expect "info: the trainer's parameter count" grep -qE "summary \(training\): $np parameters, [0-9.]+ GFLOPs at 64x64" "$T/info.log"
expect "info: rows for SPPF and the Detect levels, in both forms" test "$(grep -cE '^model\.(1 .*SPPF|15 \(P[345]\))' "$T/info.log")" -eq 8
expect "info: the deploy form" grep -qE "summary \(deploy\): [0-9]+ parameters" "$T/info.log"
"$VANILLA" info "$T/det.yaml" --input-size 96 >"$T/info2.log" 2>&1
expect "info on the config" grep -qE "summary \(training\): $np parameters, [0-9.]+ GFLOPs at 96x96" "$T/info2.log"

# eval and predict on the checkpoint.
"$VANILLA" eval "$A_LAST" >"$T/eval.log" 2>&1
expect "eval exits 0" test $? -eq 0
expect "eval prints the table" contains "$T/eval.log" "mAP50-95)"
expect "eval says it uses the EMA weights" contains "$T/eval.log" "(EMA weights)"
IMG="$T/fmd/images/val/000000.png"
"$VANILLA" predict "$A_LAST" "$IMG" --conf 0.0001 -o "$T/pred.png" >"$T/pred.log" 2>&1
expect "predict exits 0" test $? -eq 0
expect "predict prints boxes with the EMA weights" grep -qE 'boxes \(EMA weights\)$' "$T/pred.log"
expect "predict -o writes a PNG" test "$(head -c 4 "$T/pred.png" | tail -c 3)" = "PNG"
# Several images into a folder (-o DIR/): one drawing per image, by name; an unreadable image
# among them is reported, the others still done, exit 1; -o with another extension and a bad
# --imgsz are usage errors that say why.
mkdir -p "$T/drawn"
printf 'not an image' >"$T/bad.png"
"$VANILLA" predict "$A_LAST" "$IMG" "$T/bad.png" "$(dirname "$IMG")/000002.png" "$IMG" -o "$T/drawn/" >"$T/pred3.log" 2>&1
expect "predict several, one unreadable: exit 1" test $? -eq 1
expect "predict several: the unreadable one named" contains "$T/pred3.log" "bad.png: not a PNG or JPEG image"
expect "predict several: the others drawn by name" test -s "$T/drawn/$(basename "${IMG%.*}").png" -a -s "$T/drawn/000002.png"
expect "predict several: a name taken earlier gets -<k>" test -s "$T/drawn/$(basename "${IMG%.*}")-3.png"
"$VANILLA" predict "$A_LAST" "$IMG" -o "$T/pred.jpg" >"$T/pred4.log" 2>&1
expect "predict -o x.jpg: exit 2, says PNG" test $? -eq 2 -a "$(grep -c 'written as PNG' "$T/pred4.log")" -eq 1
"$VANILLA" predict "$A_LAST" "$IMG" --imgsz 50 >"$T/pred5.log" 2>&1
expect "predict --imgsz 50: exit 2, says why" test $? -eq 2 -a "$(grep -c 'a positive multiple of 32' "$T/pred5.log")" -eq 1

# export merges the backbone (deep training is over at the end); the merged file evaluates to
# the same table.
"$VANILLA" export "$A_LAST" -o "$T/merged.safetensors" >"$T/export.log" 2>&1
expect "export exits 0" test $? -eq 0
expect "export merges the EMA weights" contains "$T/export.log" "EMA weights) ->"
diff=$(sed -n 's/.*Detect output \([^ ]*\) .*/\1/p' "$T/export.log")
expect "merged outputs within 1e-3 ($diff)" awk -v d="$diff" 'BEGIN { exit !(d != "" && d + 0 < 1e-3) }'
"$VANILLA" eval "$T/merged.safetensors" --data "$T/fmd/data.yaml" >"$T/eval2.log" 2>&1
expect "merged eval exits 0" test $? -eq 0
expect "merged eval: same table" test "$(grep -E '^ +all ' "$T/eval.log")" = "$(grep -E '^ +all ' "$T/eval2.log")"
"$VANILLA" predict "$T/merged.safetensors" "$IMG" --conf 0.0001 >"$T/pred2.log" 2>&1
expect "merged predict: the same boxes" test "$(sed 1d "$T/pred.log" | grep -v drawn)" = "$(sed 1d "$T/pred2.log")"
expect "predict found boxes to compare" test "$(wc -l <"$T/pred2.log")" -gt 3
"$VANILLA" export "$T/b/checkpoints/ckpt-s0000000003.safetensors" -o "$T/early.safetensors" >"$T/early.log" 2>&1
expect "export refused before deep training ends" contains "$T/early.log" "act_learn is"
# ONNX (--format onnx) of the trained checkpoint: its EMA weights, merged; refused as the merge
# is before deep training ends. (The graph's numbers: tests/reference/check_onnx_detect.py.)
"$VANILLA" export "$A_LAST" --format onnx -o "$T/det.onnx" >"$T/onnx.log" 2>&1
expect "ONNX export exits 0" test $? -eq 0
expect "ONNX export: merged, EMA weights" contains "$T/onnx.log" "(backbone merged) (EMA weights) ->"
expect "ONNX export: output0 [batch, 4 + 10, 84]" contains "$T/onnx.log" "output0 [batch, 14, 84]"
"$VANILLA" export "$T/b/checkpoints/ckpt-s0000000003.safetensors" --format onnx -o "$T/early.onnx" >"$T/early_onnx.log" 2>&1
expect "ONNX export refused before deep training ends" contains "$T/early_onnx.log" "act_learn is"

# A bad label line: reported with file and line; over the bad fraction it is an error.
cp -r "$T/fmd" "$T/bad"
sed -i "s#^path: .*#path: $T/bad#" "$T/bad/data.yaml"
printf '0 0.5 0.5 0.2 0.2\n12 0.5 0.5 0.1 0.1\n' >"$T/bad/labels/train/000003.txt"
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/bad/data.yaml" --set output.dir="$T/d" \
  --set data.max_bad_fraction=0 >"$T/bad.log" 2>&1
expect "bad label: train fails" test $? -eq 1
expect "bad label: file and line named" contains "$T/bad.log" "labels/train/000003.txt:2"
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/bad/data.yaml" --set output.dir="$T/e" \
  --set data.max_bad_fraction=0.5 --set train.max_steps=1 >"$T/bad2.log" 2>&1
expect "bad label within the fraction: trains" test $? -eq 0
expect "bad label within the fraction: warned" contains "$T/bad2.log" "000003.txt:2"

# An unreadable image: within max_bad_fraction training goes on (the slot takes the next image,
# reported once by path), above it the run stops; eval leaves it out of the metrics.
cp -r "$T/fmd" "$T/badimg"
sed -i "s#^path: .*#path: $T/badimg#" "$T/badimg/data.yaml"
printf 'not an image' >"$T/badimg/images/train/000002.png"
printf 'not an image' >"$T/badimg/images/val/000001.png"
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/badimg/data.yaml" --set output.dir="$T/bi1" \
  --set data.max_bad_fraction=0.5 --set train.epochs=1 --set train.eval_every=0 >"$T/bi1.log" 2>&1
expect "an unreadable training image within the fraction: trains" test $? -eq 0
expect "an unreadable training image: named once" \
  test "$(grep -c 'images/train/000002.png: .*(skipped; its slot takes the next image in order)' "$T/bi1.log")" -eq 1
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/badimg/data.yaml" --set output.dir="$T/bi2" \
  --set train.epochs=1 >"$T/bi2.log" 2>&1
expect "an unreadable training image over the fraction: stops (exit 1)" test $? -eq 1
expect "an unreadable training image over the fraction: says so" contains "$T/bi2.log" "could not be used, more than data.max_bad_fraction"
# An evaluation that fails (an unreadable validation image over the fraction) keeps the
# epoch's steps in a checkpoint; the resume, with the image back, evaluates again.
cp -r "$T/fmd" "$T/badval"
sed -i "s#^path: .*#path: $T/badval#" "$T/badval/data.yaml"
printf 'not an image' >"$T/badval/images/val/000001.png"
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/badval/data.yaml" --set output.dir="$T/bv" \
  --set train.epochs=1 >"$T/bv1.log" 2>&1
expect "a failed evaluation: exit 1" test $? -eq 1
expect "a failed evaluation: the epoch's steps kept" contains "$T/bv1.log" "the training so far is kept in $T/bv/checkpoints/"
cp "$T/fmd/images/val/000001.png" "$T/badval/images/val/000001.png"
"$VANILLA" train "$T/det.yaml" --set detect.data="$T/badval/data.yaml" --set output.dir="$T/bv" \
  --set train.epochs=1 --resume auto >"$T/bv2.log" 2>&1
expect "a failed evaluation: the resume exits 0" test $? -eq 0
expect "a failed evaluation: the resume evaluates first" test "$(grep -m1 -E "^(eval after|epoch)" "$T/bv2.log")" = "eval after epoch 1 (EMA weights):"
"$VANILLA" eval "$T/a/checkpoints/best.safetensors" --data "$T/badimg/data.yaml" >"$T/bi4.log" 2>&1
expect "eval with an unreadable image over the stored fraction (0.01): exit 1" test $? -eq 1
expect "eval over the fraction: says so" contains "$T/bi4.log" "more than data.max_bad_fraction 1.00%"
"$VANILLA" eval "$T/a/checkpoints/best.safetensors" --data "$T/badimg/data.yaml" \
  --set train.epochs=3 >"$T/bi5.log" 2>&1
expect "eval --set of another key: usage error" test $? -eq 2
"$VANILLA" eval "$T/a/checkpoints/best.safetensors" --data "$T/badimg/data.yaml" \
  --set data.max_bad_fraction=0.5 >"$T/bi3.log" 2>&1
expect "eval with an unreadable image within --set data.max_bad_fraction: exit 0" test $? -eq 0
expect "eval with an unreadable image: named and left out" contains "$T/bi3.log" "images/val/000001.png: not a PNG or JPEG image"
nval=$(ls "$T/fmd/images/val" | wc -l)
expect "eval with an unreadable image: $((nval - 1)) images counted" grep -qE "^ +all +$((nval - 1)) " "$T/bi3.log"

# data preview is the classifier's: on a detector config it says so (exit 2).
"$VANILLA" data preview "$T/det.yaml" -o "$T/prev.png" >"$T/prev.log" 2>&1
expect "data preview of a detector config: exit 2, says why" \
  test $? -eq 2 -a "$(grep -c "a detector's (mosaic" "$T/prev.log")" -eq 1

# A detector config without detect.data is refused with the key named.
"$VANILLA" train "$T/det.yaml" --set detect.data= --set output.dir="$T/f" >"$T/nodata.log" 2>&1
expect "no detect.data: refused" contains "$T/nodata.log" "detect.data"

"$VANILLA" train "$T/det.yaml" --set detect.imgsz=100 --set output.dir="$T/g" >"$T/imgsz.log" 2>&1
expect "imgsz not a multiple of 32: usage error naming the key" contains "$T/imgsz.log" "detect.imgsz 100 is not a multiple of 32"

# Gradient accumulation against a batch twice as large, where that is exact: a set whose
# images 2, 3 repeat 0, 1 and 6, 7 repeat 4, 5, no augmentation, no shuffle, so the micro-
# batches {0,1}, {2,3} of update_freq 2 are one batch {0,1,2,3} twice over: the same BatchNorm
# batch statistics and (once the target-score sums exceed Ultralytics' clamp of 1, i.e. after
# some training) the same gradients. Both continue, for one epoch of 2 steps at a constant lr
# 0.02, from a checkpoint trained 100 steps with batch 4; parameters (BatchNorm running
# statistics aside: they move once per forward) within 1e-5, where one step moves them ~0.1.
# After 60 steps a micro-batch's sum was still near the clamp: with other (equally right)
# product kernels it fell under 1 where the batch of 4's did not, and the box and class
# gradients differed by 0.09; after 100 steps all four of OpenBLAS's AVX2 or SkylakeX kernels,
# with or without the library's own products, agree within 1e-6.
"$TOOL" fmd "$T/acc" 8 2 64 || bad "cannot make the accumulation set"
for p in "0 2" "1 3" "4 6" "5 7"; do
  set -- $p
  cp "$T/acc/images/train/00000$1.png" "$T/acc/images/train/00000$2.png"
  cp "$T/acc/labels/train/00000$1.txt" "$T/acc/labels/train/00000$2.txt"
done
cat >"$T/acc.yaml" <<YAML
model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}
detect: {data: $T/acc/data.yaml, imgsz: 64, width_multiple: 0.125, depth_multiple: 0.34,
         mosaic: 0, fliplr: 0, hsv_h: 0, hsv_s: 0, hsv_v: 0, scale: 0, translate: 0}
data: {mixup: 0, cutmix: 0}
optim: {name: sgd, lr: 0.02, momentum: 0.9, weight_decay: 0.0005, warmup_epochs: 0, warmup_steps: 2,
        schedule: constant, update_freq: 1}
deep_training: {decay_epochs: 1, update: iteration}
train: {epochs: 51, batch_size: 4, threads: 1, eval_every: 0, shuffle: false}
output: {dir: $T/acc0, keep_last: 1, tensorboard: false}
YAML
"$VANILLA" train "$T/acc.yaml" --set train.max_steps=100 >"$T/acc0.log" 2>&1
cp -r "$T/acc0" "$T/acc1"
cp -r "$T/acc0" "$T/acc2"
"$VANILLA" train "$T/acc.yaml" --set output.dir="$T/acc1" --resume auto >"$T/acc1.log" 2>&1
expect "accumulation: batch 4 continues" test $? -eq 0
"$VANILLA" train "$T/acc.yaml" --set output.dir="$T/acc2" --set train.batch_size=2 --set optim.update_freq=2 \
  --resume auto --force >"$T/acc2.log" 2>&1
expect "accumulation: 2 x 2 continues" test $? -eq 0
A1="$T/acc1/checkpoints/ckpt-s0000000102.safetensors"
A2="$T/acc2/checkpoints/ckpt-s0000000102.safetensors"
"$TOOL" close "$A1" "$A2" 1e-5
expect "update_freq 2 x batch 2 = batch 4 within 1e-5 (same step count 102)" test $? -eq 0
"$TOOL" close "$A1" "$T/acc0/checkpoints/ckpt-s0000000100.safetensors" 1e-5 >/dev/null
expect "control: two steps move the weights by more than 1e-5" test $? -eq 1

# Non-finite loss: lr 1e30 blows the weights up at step 2. stop: exit 4 naming the step and
# the last good checkpoint; skip: steps skipped (not counted), up to max_skip 3 in a row.
NF="--set optim.lr=1e30 --set train.batch_size=2 --set train.epochs=3 --set output.save_every_steps=1"
"$VANILLA" train "$T/acc.yaml" $NF --set output.dir="$T/n1" >"$T/n1.log" 2>&1
expect "nonfinite stop: exit 4" test $? -eq 4
expect "nonfinite stop: step and last good checkpoint named" contains "$T/n1.log" "non-finite loss or gradient at epoch 0, step 2 (lr 1e+30); stopped. The last good checkpoint is $T/n1/checkpoints/ckpt-s0000000002.safetensors"
"$VANILLA" train "$T/acc.yaml" $NF --set train.nonfinite=skip --set train.max_skip=3 --set output.dir="$T/n2" >"$T/n2.log" 2>&1
expect "nonfinite skip: exit 4 after max_skip" test $? -eq 4
expect "nonfinite skip: warned 3 in a row" contains "$T/n2.log" "step 2: step skipped (3 in a row)"
expect "nonfinite skip: the epoch went on past the skipped steps" grep -q '"kind":"epoch","epoch":0,"step":2' "$T/n2/metrics.jsonl"
expect "nonfinite skip: stopped at the same step" contains "$T/n2.log" "at epoch 1, step 2 (lr 1e+30); stopped"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
