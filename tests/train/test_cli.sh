#!/usr/bin/env bash
# End-to-end tests of the vanilla command on a synthetic image folder: config errors, train,
# export (and its refusal before deep training ends), eval and predict agreeing on logits,
# a checkpoint on SIGTERM and resume, ablate, data check, info, --help everywhere.
# Usage (from meson): test_cli.sh VANILLA TESTTOOL [README.md]
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"
quiet() { "$@" >/dev/null 2>&1; }

"$TOOL" synth "$T/data" 24 8 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/base.yaml" <<YAML
model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0, auto_augment: "", reprob: 0,
       color_jitter: 0}
optim: {name: adamw, lr: 0.01, weight_decay: 0.01, update_freq: 1, warmup_epochs: 1}
deep_training: {decay_epochs: 2, update: iteration}
ema: {decays: [0.9]}
loss: {bce: false}
train: {epochs: 8, batch_size: 8, threads: 2, log_every: 1000}
output: {dir: $T/run, keep_last: 0, tensorboard: true}
YAML

# --help everywhere, exit 0; no arguments is a usage error (2).
for c in train eval export predict ablate info config data; do
  expect "$c --help" quiet "$VANILLA" "$c" --help
done
"$VANILLA" >/dev/null 2>&1
expect "no command: exit 2" [ $? -eq 2 ]
"$VANILLA" frobnicate >"$T/out" 2>&1
expect "unknown command: exit 2" [ $? -eq 2 ]

# Numeric options take the whole argument as a number in range, else a usage error (2).
for cmdline in "info $T/base.yaml --input-size abc" "eval $T/x.safetensors --batch-size 0" \
               "predict $T/x.safetensors $T/x.png --topk 5x" "export $T/x.safetensors -o $T/y --ema -1" \
               "data preview $T/base.yaml --n 2.5"; do
  # shellcheck disable=SC2086
  "$VANILLA" $cmdline >"$T/out" 2>&1
  rc=$?
  expect "bad number ($cmdline): exit 2" [ $rc -eq 2 ]
  expect "bad number ($cmdline): names the option" grep -q "wants an integer in" "$T/out"
done

# Config errors name the file, line and key.
printf 'optim:\n  learning_rate: 0.1\n' >"$T/bad1.yaml"
"$VANILLA" train "$T/bad1.yaml" >"$T/out" 2>&1
expect "unknown key: exit 1" [ $? -eq 1 ]
expect "unknown key: file:line and suggestion" contains "$T/out" "bad1.yaml:2:3: unknown key 'optim.learning_rate' (did you mean 'optim.lr'?)"
printf 'train:\n  epochs: many\n' >"$T/bad2.yaml"
"$VANILLA" train "$T/bad2.yaml" >"$T/out" 2>&1
expect "bad type: message" contains "$T/out" "bad2.yaml:2:11: train.epochs"
printf 'train:\n  epochs: 0\n' >"$T/bad3.yaml"
"$VANILLA" train "$T/bad3.yaml" >"$T/out" 2>&1
expect "out of range: message" contains "$T/out" "out of range"
printf 'train: [epochs\n' >"$T/bad4.yaml"
"$VANILLA" train "$T/bad4.yaml" >"$T/out" 2>&1
expect "bad YAML: names the file" contains "$T/out" "bad4.yaml"
"$VANILLA" train "$T/base.yaml" --set optim.lr=fast >"$T/out" 2>&1
expect "bad --set: exit 2" [ $? -eq 2 ]
"$VANILLA" train "$T/base.yaml" --set train.batch_size=1 --set output.dir="$T/b1" >"$T/out" 2>&1
expect "batch_size 1: exit 1 before any step" [ $? -eq 1 ]
expect "batch_size 1: names the key" contains "$T/out" "train.batch_size 1: BatchNorm in training needs"
"$VANILLA" train "$T/base.yaml" --set "model.strides=[1,8]" --set output.dir="$T/s8" >"$T/out" 2>&1
expect "a stride wider than its map: exit 1" [ $? -eq 1 ]
expect "a stride wider than its map: names the key and the sizes" contains "$T/out" "model.strides[1] is 8 but stage 1 gets a 4x4 map at data.input_size 16"
"$VANILLA" config show "$T/base.yaml" --set optim.lr=0.02 >"$T/show.yaml"
expect "config show reflects --set" contains "$T/show.yaml" "lr: 0.02"
"$VANILLA" config show "$T/show.yaml" --no-help >"$T/show2.yaml"
expect "config show output is a valid config" contains "$T/show2.yaml" "lr: 0.02"

# Train to the end.
"$VANILLA" train "$T/base.yaml" >"$T/train.log" 2>&1
expect "train: exit 0" [ $? -eq 0 ]
expect "train: prints the final accuracy" contains "$T/train.log" "final: top-1"
expect "train: writes TensorBoard events" quiet ls "$T"/run/tb/events.out.tfevents.*
expect "train: writes epochs.csv" [ -s "$T/run/epochs.csv" ]
"$VANILLA" train "$T/base.yaml" --resume auto >"$T/again.log" 2>&1
expect "train again: finished run is not redone" contains "$T/again.log" "already finished"
sum0=$(sha256sum <"$T/run/checkpoints/ckpt-s0000000024.safetensors")
"$VANILLA" train "$T/base.yaml" --set train.epochs=2 >"$T/again2.log" 2>&1
expect "a new run into a folder holding one: exit 1" [ $? -eq 1 ]
expect "a new run into a folder holding one: says what to do" contains "$T/again2.log" "already holds a run"
expect "a new run into a folder holding one: the old run intact" \
  [ "$(sha256sum <"$T/run/checkpoints/ckpt-s0000000024.safetensors")" = "$sum0" ]
# A finished run extended with more epochs (--force, the schedules follow the new config).
cp -r "$T/run" "$T/run_ext"
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/run_ext" --set train.epochs=9 --resume auto --force \
  >"$T/ext.log" 2>&1
expect "a finished run, train.epochs raised with --force: exit 0" [ $? -eq 0 ]
expect "a finished run, train.epochs raised with --force: trains the new epoch" \
  [ -f "$T/run_ext/checkpoints/ckpt-s0000000108.safetensors" ]
# data.val_dir "": no validation at all (not the root folder as the validation set).
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/noval" --set train.epochs=1 --set data.val_dir= >"$T/noval.log" 2>&1
expect "data.val_dir \"\": exit 0" [ $? -eq 0 ]
expect "data.val_dir \"\": no evaluation" [ -z "$(grep -E 'eval epoch|final: top-1' "$T/noval.log")" ]
# train.keep_mb: outputs kept instead of recomputed in backward change no byte of the result.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/keep" --set train.keep_mb=64 >"$T/keep.log" 2>&1
expect "train.keep_mb 64: exit 0" [ $? -eq 0 ]
expect "train.keep_mb 64: the same tensors as recomputing" quiet "$TOOL" same \
  "$T/run/checkpoints/ckpt-s0000000024.safetensors" "$T/keep/checkpoints/ckpt-s0000000024.safetensors"

# Export: refused before deep training ends (act_learn < 1), exact after.
"$VANILLA" export "$T/run/checkpoints/ckpt-s0000000012.safetensors" -o "$T/early.safetensors" >"$T/out" 2>&1
expect "export at act_learn < 1: exit 1" [ $? -eq 1 ]
expect "export at act_learn < 1: says why" contains "$T/out" "act_learn"
expect "export refused: no file" [ ! -e "$T/early.safetensors" ]
"$VANILLA" export "$T/run/checkpoints/ckpt-s0000000012.safetensors" -o "$T/early.safetensors" --force >"$T/out" 2>&1
expect "export --force: exit 0" [ $? -eq 0 ]
"$VANILLA" export "$T/run/checkpoints/best.safetensors" -o "$T/deploy.safetensors" >"$T/export.log" 2>&1
expect "export: exit 0" [ $? -eq 0 ]
rel=$(sed -n 's/.*(relative \([0-9.e+-]*\)).*/\1/p' "$T/export.log")
expect "export: merged graph equals training graph (relative $rel <= 1e-4)" awk -v r="$rel" 'BEGIN{exit !(r != "" && r <= 1e-4)}'

# eval of the checkpoint and of the deploy file agree; eval and predict logits agree.
"$VANILLA" eval "$T/run/checkpoints/best.safetensors" --data "$T/data/val" >"$T/eval1" 2>&1
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/data/val" --save-logits "$T/eval_logits.safetensors" >"$T/eval2" 2>&1
expect "eval deploy: exit 0" [ $? -eq 0 ]
a=$(sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' "$T/eval1")
b=$(sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' "$T/eval2")
expect "deploy top-1 ($b) equals training net's ($a)" [ -n "$a" ] && [ "$a" = "$b" ]
# The EMA copy by its official key; best-ema-0 is the EMA's own best checkpoint.
expect "train: best-ema-0.safetensors written" [ -s "$T/run/checkpoints/best-ema-0.safetensors" ]
expect "train: names the EMA's best checkpoint" contains "$T/train.log" "best-ema-0.safetensors (--key model_ema.0)"
"$VANILLA" eval "$T/run/checkpoints/best-ema-0.safetensors" --key model_ema --data "$T/data/val" >"$T/eval3" 2>&1
expect "eval --key model_ema: exit 0" [ $? -eq 0 ]
expect "eval --key model_ema: the EMA copy" contains "$T/eval3" "(EMA)"
"$VANILLA" eval "$T/deploy.safetensors" --key model_ema --data "$T/data/val" >"$T/out" 2>&1
expect "eval --key model_ema of a weight file: exit 1" [ $? -eq 1 ]
"$VANILLA" eval "$T/run/checkpoints/best.safetensors" --key model_ema --ema 0 >"$T/out" 2>&1
expect "eval --key with --ema: exit 2" [ $? -eq 2 ]
echo '[[0], [1]]' >"$T/real.json"
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/data/val" --real-labels "$T/real.json" >"$T/out" 2>&1
expect "eval --real-labels on non-ImageNet names: exit 1" [ $? -eq 1 ]
expect "eval --real-labels: names the file" contains "$T/out" "no ImageNet-ReaL entry"
# ImageNet-ReaL with each image's own class as its label set equals plain top-1; an image
# with an empty set is left out.
n=0; json="["
for c in 0 1 2 3; do
  mkdir -p "$T/real/c$c"
  for f in $(cd "$T/data/val/c$c" && ls | sort | head -2); do
    n=$((n + 1))
    cp "$T/data/val/c$c/$f" "$T/real/c$c/$(printf 'ILSVRC2012_val_%08d.JPEG' $n)"
    json="$json${n:+$([ $n -gt 1 ] && echo ,)}[$c]"
  done
done
echo "$json]" >"$T/real.json"
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/real" --real-labels "$T/real.json" >"$T/out" 2>&1
expect "eval --real-labels: exit 0" [ $? -eq 0 ]
a=$(sed -n 's/.* top-1 \([0-9.]*\)%.*images).*/\1/p' "$T/out" | head -1)
b=$(sed -n 's/^ImageNet-ReaL.*top-1 \([0-9.]*\)%.*/\1/p' "$T/out")
expect "eval --real-labels: ReaL top-1 ($b) equals top-1 ($a) with the folder labels" [ -n "$a" ] && [ "$a" = "$b" ]
expect "eval --real-labels: 8 images counted" contains "$T/out" "(8 images with labels, 0 without"
sed -i 's/^\[\[0\]/[[]/' "$T/real.json"
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/real" --real-labels "$T/real.json" >"$T/out" 2>&1
expect "eval --real-labels: an empty set is left out" contains "$T/out" "(7 images with labels, 1 without"
"$VANILLA" config official >"$T/out" 2>&1
expect "config official: the flag table" contains "$T/out" '| `--test_epoch` | `260` | `train.eval_from_epoch` |'
files=$(cd "$T/data/val" && ls -d */*.png | sort)
(cd "$T/data/val" && "$VANILLA" predict "$T/deploy.safetensors" $files --topk 2 --save-logits "$T/pred_logits.safetensors") >"$T/pred" 2>&1
expect "predict: exit 0" [ $? -eq 0 ]
expect "predict: prints class names" contains "$T/pred" "1. c"
expect "predict logits equal eval logits" "$TOOL" compare "$T/eval_logits.safetensors" "$T/pred_logits.safetensors" logits 1e-5
printf 'not an image' >"$T/junk.png"
"$VANILLA" predict "$T/deploy.safetensors" "$T/junk.png" >"$T/out" 2>&1
expect "predict on a bad file: exit 1" [ $? -eq 1 ]
expect "predict on a bad file: names it" contains "$T/out" "junk.png"

# Outputs that would destroy the input are refused before any work; extra positional
# arguments are usage errors; -o x.onnx means --format onnx.
cp "$T/run/checkpoints/best.safetensors" "$T/victim.safetensors"
sum0=$(sha256sum <"$T/victim.safetensors")
"$VANILLA" eval "$T/victim.safetensors" --data "$T/data/val" --save-logits "$T/victim.safetensors" >"$T/out" 2>&1
expect "eval --save-logits onto the model: exit 1" [ $? -eq 1 ]
expect "eval --save-logits onto the model: says why" contains "$T/out" "is the input file"
"$VANILLA" export "$T/victim.safetensors" -o "$T/./victim.safetensors" >"$T/out" 2>&1
expect "export -o onto the input: exit 1" [ $? -eq 1 ]
expect "refused outputs: the model is intact" [ "$(sha256sum <"$T/victim.safetensors")" = "$sum0" ]
"$VANILLA" eval "$T/victim.safetensors" --data "$T/data/val" --save-logits "$T/nodir/x.safetensors" >"$T/out" 2>&1
rc=$?
expect "eval --save-logits into a missing folder: exit 1" [ $rc -eq 1 ]
expect "eval --save-logits into a missing folder: says so" contains "$T/out" "does not exist"
expect "eval --save-logits into a missing folder: refused before evaluating" [ -z "$(grep top-1 "$T/out")" ]
"$VANILLA" export "$T/victim.safetensors" "$T/deploy.safetensors" -o "$T/two.safetensors" >"$T/out" 2>&1
expect "export with two model files: exit 2" [ $? -eq 2 ]
"$VANILLA" eval "$T/victim.safetensors" "$T/data/val" >"$T/out" 2>&1
rc=$?
expect "eval with a folder as second argument: exit 2" [ $rc -eq 2 ]
expect "eval with a folder as second argument: points at --data" contains "$T/out" "--data FOLDER"
"$VANILLA" export "$T/victim.safetensors" --format foo -o "$T/foo" >"$T/out" 2>&1
rc=$?
expect "export --format foo: exit 2" [ $rc -eq 2 ]
expect "export --format foo: says which" contains "$T/out" "one of safetensors, onnx"
"$VANILLA" export "$T/victim.safetensors" -o "$T/by_name.onnx" >"$T/out" 2>&1
expect "export -o x.onnx: ONNX" contains "$T/out" "ONNX (opset"
# A writer killed before its rename leaves "<out>.tmp.<pid>": the next write of that file
# removes it (the pid is of a process that has ended).
true & deadpid=$!; wait $deadpid
printf 'half' >"$T/by_name.onnx.tmp.$deadpid"
printf 'half' >"$T/again.safetensors.tmp.$deadpid"
"$VANILLA" export "$T/victim.safetensors" -o "$T/by_name.onnx" >/dev/null 2>&1
"$VANILLA" export "$T/victim.safetensors" -o "$T/again.safetensors" >/dev/null 2>&1
expect "a dead writer's temporary files are removed by the next write" \
  [ ! -e "$T/by_name.onnx.tmp.$deadpid" -a ! -e "$T/again.safetensors.tmp.$deadpid" -a -s "$T/again.safetensors" ]
cp "$T/deploy.safetensors" "$T/deploy.weights"
"$VANILLA" info "$T/deploy.weights" >"$T/out" 2>&1
expect "info on a weight file named otherwise: exit 0" [ $? -eq 0 ]

# Outputs that would destroy other inputs: an image given to predict, the config of a preview;
# an output path through a regular file is named as such.
cp "$T/data/val/c0/$(ls "$T/data/val/c0" | head -1)" "$T/an_image.png"
isum=$(sha256sum <"$T/an_image.png")
"$VANILLA" predict "$T/deploy.safetensors" "$T/an_image.png" --save-logits "$T/an_image.png" >"$T/out" 2>&1
expect "predict --save-logits onto an input image: exit 1" [ $? -eq 1 ]
expect "predict --save-logits onto an input image: the image intact" [ "$(sha256sum <"$T/an_image.png")" = "$isum" ]
cp "$T/base.yaml" "$T/pcfg.yaml"
ln -sf "$T/pcfg.yaml" "$T/plink.png"
"$VANILLA" data preview "$T/pcfg.yaml" -o "$T/plink.png" >"$T/out" 2>&1
expect "data preview -o onto its config (through a link): exit 1" [ $? -eq 1 ]
expect "data preview -o onto its config: the config intact" cmp -s "$T/base.yaml" "$T/pcfg.yaml"
touch "$T/regular"
"$VANILLA" export "$T/victim.safetensors" -o "$T/regular/x.safetensors" >"$T/out" 2>&1
expect "export -o through a regular file: says it is a file" contains "$T/out" "is a file, not a folder"

# eval: an unreadable image is left out (counted once, never replaced by another image); its
# logits row is NaN and the file still has one row per image.
cp -r "$T/data/val" "$T/val_bad"
good=$(cd "$T/val_bad" && ls */*.png | wc -l)
head -c 100 "$T/data/val/c0/$(ls "$T/data/val/c0" | head -1)" >"$T/val_bad/c0/000_bad.png"
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/val_bad" --set data.max_bad_fraction=0.5 \
  --save-logits "$T/bad_logits.safetensors" >"$T/out" 2>&1
expect "eval with a bad image: exit 0" [ $? -eq 0 ]
expect "eval with a bad image: $good images counted, the bad one left out" contains "$T/out" "($good images; 1 unreadable, left out)"
expect "eval with a bad image: names it" contains "$T/out" "000_bad.png"
a=$(sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' "$T/eval2")
b=$(sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' "$T/out")
expect "eval with a bad image: the metrics of the readable ones ($b = $a)" [ -n "$a" ] && [ "$a" = "$b" ]
expect "eval with a bad image: a logits row per file" \
  bash -c "head -c 200 '$T/bad_logits.safetensors' | grep -aq '\"shape\":\\[$((good + 1)),4\\]'"
"$VANILLA" eval "$T/deploy.safetensors" --data "$T/val_bad" >"$T/out" 2>&1
rc=$?
expect "eval: without --set data.max_bad_fraction, the default 1% stops it" [ $rc -eq 1 ]
expect "eval: the default 1% named" contains "$T/out" "max_bad_fraction 1.00%"
# --set on a vanilla file: the keys of how to evaluate apply, the others are refused.
wide="$T/wide.png" # a preview grid: not 16x16
"$VANILLA" data preview "$T/base.yaml" --n 2 -o "$wide" >/dev/null 2>&1
"$VANILLA" predict "$T/deploy.safetensors" "$wide" >"$T/out" 2>&1
expect "predict 24x20 at 16 px, official eval: refused" [ $? -eq 1 ]
"$VANILLA" predict "$T/deploy.safetensors" "$wide" --set data.eval_mode=resize-crop >"$T/out" 2>&1
expect "predict --set data.eval_mode=resize-crop on a vanilla file: applies" [ $? -eq 0 ]
"$VANILLA" predict "$T/deploy.safetensors" "$wide" --set model.act_num=1 >"$T/out" 2>&1
rc=$?
expect "predict --set model.* on a vanilla file: exit 2" [ $rc -eq 2 ]
expect "predict --set model.* on a vanilla file: says why" contains "$T/out" "stores its model"

# The checksum covers the header too: one changed byte in the stored preprocessing mean or in
# a tensor name is refused, by name, by every command that reads the file.
# (The mean sits in a JSON text inside the header's JSON, hence the escaped quote.)
for what in 'mean:mean\":[' 'name:stem1.0.weigh'; do
  tag=${what%%:*}
  cp "$T/run/checkpoints/best.safetensors" "$T/hdr_$tag.safetensors"
  expect "flip a byte of the header ($tag)" "$TOOL" flip "$T/hdr_$tag.safetensors" "${what#*:}"
done
cp "$T/deploy.safetensors" "$T/hdr_deploy.safetensors"
expect "flip a byte of the header (deploy)" "$TOOL" flip "$T/hdr_deploy.safetensors" 'mean\":['
refused() { # description, file, command...
  local d=$1 f=$2; shift 2
  "$@" >"$T/out" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && contains "$T/out" "$f: checksum mismatch"; then ok "$d"
  else bad "$d (exit $rc: $(head -c 300 "$T/out"))"; fi
}
for tag in mean name deploy; do
  f="$T/hdr_$tag.safetensors"
  refused "changed header ($tag): info" "$f" "$VANILLA" info "$f"
  refused "changed header ($tag): eval" "$f" "$VANILLA" eval "$f" --data "$T/data/val"
  refused "changed header ($tag): predict" "$f" "$VANILLA" predict "$f" "$T/data/val/c0/$(ls "$T/data/val/c0" | head -1)"
  [ $tag = deploy ] && continue
  refused "changed header ($tag): export" "$f" "$VANILLA" export "$f" -o "$T/hdr_out.safetensors"
  refused "changed header ($tag): resume" "$f" "$VANILLA" train "$T/base.yaml" --set output.dir="$T/hdr_run" --resume "$f"
  refused "changed header ($tag): model.init" "$f" "$VANILLA" train "$T/base.yaml" --set output.dir="$T/hdr_run" --set model.init="$f"
done
expect "changed header: nothing exported" [ ! -e "$T/hdr_out.safetensors" ]

# SIGTERM: finish the step, checkpoint, exit 3; then resume.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig" --set train.epochs=100000 >"$T/sig.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  ls "$T"/sig/checkpoints/ckpt-*.safetensors >/dev/null 2>&1 && break
  sleep 0.1
done
# A second training into the same folder while the first runs: refused, naming the process.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig" --set train.epochs=100000 --resume auto >"$T/sig_second.log" 2>&1
rc=$?
expect "a second training into a folder in use: exit 1" [ $rc -eq 1 ]
expect "a second training into a folder in use: names the process" contains "$T/sig_second.log" "is in use by another training (process $pid)"
kill -TERM $pid
wait $pid
expect "SIGTERM: exit 3" [ $? -eq 3 ]
expect "SIGTERM: says how to resume" contains "$T/sig.log" "--resume auto"
expect "SIGTERM: the resume command keeps the --set options" \
  contains "$T/sig.log" "resume with: $VANILLA train $T/base.yaml --set output.dir=$T/sig --set train.epochs=100000 --resume auto"
last=$(ls "$T"/sig/checkpoints/ckpt-*.safetensors | sort | tail -1)
step=$(basename "$last" | sed 's/ckpt-s0*\([0-9]*\).safetensors/\1/')
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig" --set train.epochs=100000 \
  --set train.max_steps=$((step + 3)) --resume auto >"$T/sig2.log" 2>&1
expect "resume after SIGTERM: exit 0" [ $? -eq 0 ]
# Resuming on a training folder that gained an image since the run started: refused
# (dataset.txt beside the checkpoints), --force goes on and records the new size.
cp "$T/data/train/c0/$(ls "$T/data/train/c0" | head -1)" "$T/data/train/c0/zz_added.png"
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig" --set train.epochs=100000 \
  --set train.max_steps=$((step + 4)) --resume auto >"$T/sig4.log" 2>&1
expect "resume after an image was added: exit 1" [ $? -eq 1 ]
expect "resume after an image was added: says so" contains "$T/sig4.log" "had 96 images when this run started"
rm "$T/data/train/c0/zz_added.png"
# Resuming on a training folder whose classes changed: said in words, not by tensor shapes.
cp -r "$T/data" "$T/data5" && mv "$T/data5/train/c3" "$T/data5/train/c3x" && mv "$T/data5/val/c3" "$T/data5/val/c3x"
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig" --set train.epochs=100000 \
  --set data.root="$T/data5" --resume auto >"$T/sig3.log" 2>&1
expect "resume with a class renamed: exit 1" [ $? -eq 1 ]
expect "resume with a class renamed: says so" contains "$T/sig3.log" "class 3 is 'c3' there and 'c3x' now"
expect "resume after SIGTERM: continues at step $step" contains "$T/sig2.log" "step $step"

# Tied and NaN logits are not right answers: a copy of a deploy file whose classifier is zero
# (every logit 0) ranks ties to the lowest class, as argmax and predict pick, so top-1 is class
# c0's share (8 of 32 images) and the loss ln 4; one whose classifier bias is NaN scores 0%.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/lr0" --set train.max_steps=2 >/dev/null 2>&1
"$VANILLA" export "$T/lr0/checkpoints/ckpt-s0000000002.safetensors" -o "$T/lr0.safetensors" --force >/dev/null 2>&1
/usr/bin/python3 - "$T/lr0.safetensors" "$T/zero.safetensors" "$T/nan.safetensors" <<'PY'
import json, struct, sys
import numpy as np
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h.pop('__metadata__', None)
t = {k: np.frombuffer(b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]],
                      np.float32).reshape(v['shape']).copy() for k, v in h.items()}
def save(path, d):
    hdr, off, blobs = {}, 0, []
    for k, a in d.items():
        hdr[k] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    j = json.dumps(hdr).encode()
    open(path, 'wb').write(struct.pack('<Q', len(j)) + j + b''.join(blobs))
cls = [k for k in t if k.startswith('cls.')]
save(sys.argv[2], {k: np.zeros_like(a) if k in cls else a for k, a in t.items()})
save(sys.argv[3], {k: np.full_like(a, np.nan) if k in cls and k.endswith('bias') else a
                   for k, a in t.items()})
PY
"$VANILLA" eval "$T/zero.safetensors" --config "$T/base.yaml" --data "$T/data/val" >"$T/zero.log" 2>&1
expect "all logits equal: top-1 25% (ties to the lowest class), not 100%" \
  contains "$T/zero.log" "top-1 25.00%  top-5 100.00%  loss 1.3863"
"$VANILLA" eval "$T/nan.safetensors" --config "$T/base.yaml" --data "$T/data/val" >"$T/nan.log" 2>&1
expect "NaN logits: top-1 and top-5 0%" contains "$T/nan.log" "top-1 0.00%  top-5 0.00%  loss nan"

# An evaluation that fails (here: an unreadable validation image, over max_bad_fraction)
# keeps the epoch's steps in a checkpoint; once the image is back, the resume evaluates again
# and ends with the straight run's tensors.
cp -r "$T/data" "$T/dev"
first=$(ls "$T/dev/val/c1" | head -1)
head -c 50 "$T/data/val/c1/$first" >"$T/dev/val/c1/$first"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dev" --set output.dir="$T/r_ev" --set train.epochs=2 >"$T/ev1.log" 2>&1
expect "failed evaluation: exit 1" [ $? -eq 1 ]
expect "start summary: the data" contains "$T/ev1.log" "data:  96 training images in 4 classes ($T/dev/train), 32 validation images"
expect "start summary: the steps" contains "$T/ev1.log" "steps: 12 per epoch of 8 images (batch 8 x update_freq 1), 2 epochs"
expect "start summary: the loss" contains "$T/ev1.log" "; loss ce, smoothing 0.1; act_learn 0 -> 1 over 2 epochs"
expect "decay_epochs 2 with 2 epochs (act_learn per iteration): warned" contains "$T/ev1.log" \
  "deep_training.decay_epochs 2 with train.epochs 2: act_learn ends at 0.958 < 1"
expect "failed evaluation: the epoch's steps kept" contains "$T/ev1.log" "the training so far is kept in $T/r_ev/checkpoints/ckpt-s0000000024.safetensors: once the cause is fixed, the run goes on from there, where the evaluation of epoch 1 runs again"
cp "$T/data/val/c1/$first" "$T/dev/val/c1/$first"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dev" --set output.dir="$T/r_ev" --set train.epochs=2 --resume auto >"$T/ev2.log" 2>&1
expect "failed evaluation: the resume exits 0" [ $? -eq 0 ]
expect "failed evaluation: the resume trains no step" contains "$T/ev2.log" "epoch 1, position 96, step 24"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dev" --set output.dir="$T/r_st" --set train.epochs=2 >/dev/null 2>&1
expect "failed evaluation: resumed run equals the straight one" "$TOOL" same \
  "$T/r_st/checkpoints/ckpt-s0000000024.safetensors" "$T/r_ev/checkpoints/ckpt-s0000000024.safetensors"
# The same at train.max_steps: the steps up to the limit are kept.
cp "$T/data/val/c1/$first" "$T/dev/val/c1/$first.good" && head -c 50 "$T/data/val/c1/$first" >"$T/dev/val/c1/$first"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dev" --set output.dir="$T/r_evl" --set train.max_steps=5 >"$T/evl.log" 2>&1
expect "failed evaluation at max_steps: exit 1" [ $? -eq 1 ]
expect "failed evaluation at max_steps: the steps kept" contains "$T/evl.log" "the training so far is kept in $T/r_evl/checkpoints/ckpt-s0000000005.safetensors"
mv "$T/dev/val/c1/$first.good" "$T/dev/val/c1/$first"
# A run folder where a model file is expected: its best and newest checkpoints are named.
for c in eval export predict info; do
  if [ $c = predict ]; then "$VANILLA" predict "$T/r_ev" "$T/data/val/c0/$first" >"$T/out" 2>&1
  elif [ $c = export ]; then "$VANILLA" export "$T/r_ev" -o "$T/x.safetensors" >"$T/out" 2>&1
  else "$VANILLA" $c "$T/r_ev" >"$T/out" 2>&1; fi
  expect "$c RUN_FOLDER: exit 1" [ $? -eq 1 ]
  expect "$c RUN_FOLDER: best and newest named" contains "$T/out" \
    "$T/r_ev is a run folder: give one of its checkpoints, e.g. $T/r_ev/checkpoints/best.safetensors (best) or $T/r_ev/checkpoints/ckpt-s0000000024.safetensors (newest)"
done

# A class folder whose name is not UTF-8 (a Latin-1 archive): refused by name, escaped, at
# the start (data check and train), and the refused start leaves no empty run folder behind.
cp -r "$T/data" "$T/dlat"
mv "$T/dlat/train/c0" "$T/dlat/train/caf$(printf '\351')"
"$VANILLA" data check "$T/dlat/train" >"$T/lat.log" 2>&1
expect "non-UTF-8 class folder: data check exit 1" [ $? -eq 1 ]
expect "non-UTF-8 class folder: data check names it" contains "$T/lat.log" "class folder 'caf\\xe9' has a name that is not UTF-8"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dlat" --set output.dir="$T/r_lat" >"$T/lat2.log" 2>&1
expect "non-UTF-8 class folder: train exit 1" [ $? -eq 1 ]
expect "non-UTF-8 class folder: train names it" contains "$T/lat2.log" "class folder 'caf\\xe9' has a name that is not UTF-8"
expect "a refused start leaves no run folder" [ ! -e "$T/r_lat" ]

# A validation split without one of the training classes' folders: the warning says so.
cp -r "$T/data" "$T/dmiss" && rm -r "$T/dmiss/val/c2"
"$VANILLA" train "$T/base.yaml" --set data.root="$T/dmiss" --set output.dir="$T/r_miss" --set train.max_steps=1 >"$T/miss.log" 2>&1
expect "val without a class folder: trains" [ $? -eq 0 ]
expect "val without a class folder: named as missing" contains "$T/miss.log" "class 'c2' has no images (no folder of that name here)"

# A kill -9 while the best files are linked to a new checkpoint (here: at the link, through an
# LD_PRELOAD shim) leaves the previous checkpoint the newest; the resume redoes the epoch and
# ends with the straight run's best files.
if cc -shared -fPIC -o "$T/kill_at.so" "$(dirname "$0")/../support/kill_at.c" -ldl 2>"$T/cc.log"; then
  KB=(train "$T/base.yaml" --set train.epochs=3 --set train.eval_every=1)
  # (under ASan the shim may come first: its runtime's link-order check is turned off)
  KILL_AT=best.safetensors LD_PRELOAD="$T/kill_at.so" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
    "$VANILLA" "${KB[@]}" --set output.dir="$T/r_kl" >/dev/null 2>&1
  expect "killed at the best link: killed" [ $? -eq 137 ]
  expect "killed at the best link (epoch 1, the first evaluation): its checkpoint not in place" [ ! -e "$T/r_kl/checkpoints/ckpt-s0000000024.safetensors" ]
  "$VANILLA" "${KB[@]}" --set output.dir="$T/r_kl" --resume auto >/dev/null 2>&1
  expect "killed at the best link: the resume exits 0" [ $? -eq 0 ]
  "$VANILLA" "${KB[@]}" --set output.dir="$T/r_ks" >/dev/null 2>&1
  for f in best.safetensors best-ema-0.safetensors ckpt-s0000000036.safetensors; do
    expect "killed at the best link: $f as the straight run's" "$TOOL" same "$T/r_ks/checkpoints/$f" "$T/r_kl/checkpoints/$f"
  done
  expect "killed at the best link: no temporary file left after the resume" \
    [ "$(ls "$T/r_kl/checkpoints" | grep -c '\.tmp\.')" -eq 0 ]
  # Killed as that checkpoint's own temporary file is renamed ("<ckpt>.tmp.<pid>.tmp.<pid>"
  # left behind): the resume removes it and ends as the straight run.
  KILL_AT_RENAME=ckpt-s0000000024.safetensors.tmp. LD_PRELOAD="$T/kill_at.so" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
    "$VANILLA" "${KB[@]}" --set output.dir="$T/r_kr" >/dev/null 2>&1
  expect "killed at the inner rename: killed" [ $? -eq 137 ]
  expect "killed at the inner rename: a nested temporary file left" [ "$(ls "$T/r_kr/checkpoints" | grep -c '\.tmp\.[0-9]*\.tmp\.')" -eq 1 ]
  "$VANILLA" "${KB[@]}" --set output.dir="$T/r_kr" --resume auto >/dev/null 2>&1
  expect "killed at the inner rename: the resume exits 0" [ $? -eq 0 ]
  expect "killed at the inner rename: no temporary file left" [ "$(ls "$T/r_kr/checkpoints" | grep -c '\.tmp\.')" -eq 0 ]
  expect "killed at the inner rename: best.safetensors as the straight run's" "$TOOL" same \
    "$T/r_ks/checkpoints/best.safetensors" "$T/r_kr/checkpoints/best.safetensors"
  # A write that fails as on a full disk: the error, then where the run can go on from.
  FAIL_AT=ckpt-s0000000024 LD_PRELOAD="$T/kill_at.so" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
    "$VANILLA" "${KB[@]}" --set output.dir="$T/r_full" >"$T/full.log" 2>&1
  expect "a full disk at the second checkpoint: exit 1" [ $? -eq 1 ]
  expect "a full disk: the cause" contains "$T/full.log" "No space left on device"
  expect "a full disk: the newest checkpoint and the resume command" contains "$T/full.log" \
    "the run's newest checkpoint is $T/r_full/checkpoints/ckpt-s0000000012.safetensors; once the cause is fixed, resume with: $VANILLA train"
else
  bad "the crash shim compiles (scripts/setup.sh installs gcc): $(cat "$T/cc.log")"
fi

# A SIGTERM that arrives while the process starts (here: already pending, blocked by the parent
# across exec) stops the run cleanly after its first step: exit 3 and a checkpoint, not a kill.
/usr/bin/python3 -c '
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
os.kill(os.getpid(), signal.SIGTERM)
os.execv(sys.argv[1], sys.argv[1:])' "$VANILLA" train "$T/base.yaml" --set output.dir="$T/sig_early" \
  --set train.epochs=100000 --set train.max_steps=3 >"$T/sig_early.log" 2>&1
expect "SIGTERM pending at start: exit 3" [ $? -eq 3 ]
expect "SIGTERM pending at start: checkpoint of step 1" [ -f "$T/sig_early/checkpoints/ckpt-s0000000001.safetensors" ]

# The logged history of a resumed run is the straight run's: the epoch's train loss counts the
# steps before the resume too, and no epoch or evaluation record is listed twice.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/hist_a" --set train.epochs=3 >/dev/null 2>&1
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/hist_b" --set train.epochs=3 --set train.max_steps=17 >/dev/null 2>&1
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/hist_b" --set train.epochs=3 --resume auto >/dev/null 2>&1
expect "a resumed run's epochs.csv: epochs, steps and train losses of the straight run" \
  test "$(cut -d, -f1,2,4 "$T/hist_a/epochs.csv")" = "$(cut -d, -f1,2,4 "$T/hist_b/epochs.csv")"
expect "a resumed run's metrics.jsonl: as many epoch and eval records as the straight run" \
  test "$(grep -cE '"kind":"(epoch|eval)"' "$T/hist_a/metrics.jsonl")" = "$(grep -cE '"kind":"(epoch|eval)"' "$T/hist_b/metrics.jsonl")"

# --profile: the op table after the summary.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/prof" --set train.epochs=1 --profile >"$T/prof.log" 2>&1
expect "profile: exit 0" [ $? -eq 0 ]
expect "profile: the table" contains "$T/prof.log" "op profile of this session"
expect "profile: conv2d rows by kind" grep -qE "^conv2d (1x1|patch|depthwise) +backward +[0-9]+" "$T/prof.log"
expect "profile: share of the wall time" contains "$T/prof.log" "of wall time"

# SIGTERM during the end-of-epoch evaluation: the pass is given up at once, the checkpoint
# keeps the end of the epoch's steps, and the resume evaluates again: the same tensors and the
# same evaluation rows (each once) as a run that was never stopped. A large validation set at
# 128 px makes each pass last about a second; the signal follows the epoch's last step line.
"$TOOL" synth "$T/evdata" 2 700 || { echo "cannot make the evaluation data"; exit 1; }
EV=(train "$T/base.yaml" --set data.root="$T/evdata" --set data.input_size=128 --set train.epochs=3
    --set train.log_every=1)
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev_straight" >"$T/ev_straight.log" 2>&1
expect "eval stop: the straight run exits 0" [ $? -eq 0 ]
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev" >"$T/ev.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  grep -q "^epoch 1/3 1/1" "$T/ev.log" 2>/dev/null && break
  sleep 0.02
done
kill -TERM $pid
wait $pid
expect "eval stop: exit 3" [ $? -eq 3 ]
expect "eval stop: says it stopped during the evaluation" contains "$T/ev.log" "stopping on signal during evaluation"
expect "eval stop: no evaluation row printed" not contains "$T/ev.log" "eval epoch 1"
expect "eval stop: checkpoint at the end of the epoch's steps" [ -f "$T/ev/checkpoints/ckpt-s0000000002.safetensors" ]
"$VANILLA" "${EV[@]}" --set output.dir="$T/ev" --resume auto >"$T/ev2.log" 2>&1
expect "eval stop: resume exits 0" [ $? -eq 0 ]
expect "eval stop: the resume evaluates epoch 1" contains "$T/ev2.log" "eval epoch 1: top-1"
expect "eval stop: the resume takes no step of epoch 1 again" not contains "$T/ev2.log" "epoch 1/3 1/1"
expect "eval stop: final tensors equal the straight run's" quiet "$TOOL" same \
  "$T/ev_straight/checkpoints/ckpt-s0000000003.safetensors" "$T/ev/checkpoints/ckpt-s0000000003.safetensors"
evrows() { grep '"kind":"eval"' "$1" | sed 's/"time":[^,]*,//; s/,"peak_rss_mb":[^,}]*//'; }
expect "eval stop: metrics.jsonl has the straight run's evaluation rows, each once" \
  [ "$(evrows "$T/ev/metrics.jsonl")" = "$(evrows "$T/ev_straight/metrics.jsonl")" ]

# A non-finite loss stops the run (exit 4) with a clear message; the checkpoints written before
# it stay intact. With nonfinite: skip, bad steps are skipped up to max_skip in a row.
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/nan" --set optim.name=sgd --set optim.lr=1e30 \
  --set optim.warmup_epochs=0 --set output.save_every_steps=1 >"$T/nan.log" 2>&1
expect "non-finite loss: exit 4" [ $? -eq 4 ]
expect "non-finite loss: says so" contains "$T/nan.log" "non-finite loss or gradient"
good=$(ls "$T"/nan/checkpoints/ckpt-*.safetensors 2>/dev/null | sort | tail -1)
expect "non-finite loss: the last checkpoint ($(basename "$good")) is intact" quiet "$VANILLA" info "$good"
"$VANILLA" train "$T/base.yaml" --set output.dir="$T/nan2" --set optim.name=sgd --set optim.lr=1e30 \
  --set optim.warmup_epochs=0 --set train.nonfinite=skip --set train.max_skip=3 >"$T/nan2.log" 2>&1
expect "non-finite with skip: exit 4 after max_skip" [ $? -eq 4 ]
expect "non-finite with skip: steps were skipped" contains "$T/nan2.log" "step skipped (3 in a row)"

# A corrupt newest checkpoint: resume says so and uses the one before.
"$TOOL" corrupt "$T/run/checkpoints/ckpt-s0000000096.safetensors"
"$VANILLA" info "$T/run/checkpoints/ckpt-s0000000096.safetensors" >"$T/out" 2>&1
expect "corrupt checkpoint: info exit 1" [ $? -eq 1 ]
expect "corrupt checkpoint: checksum named" contains "$T/out" "checksum mismatch"

# Ablate two tiny variants; a second run redoes nothing.
printf 'name: tiny\nset: {train.epochs: 2}\ngrid:\n  model.act_num: [1, 2]\n' >"$T/abl.yaml"
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/abl" >"$T/abl.log" 2>&1
expect "ablate: exit 0" [ $? -eq 0 ]
expect "ablate: table" contains "$T/abl.log" "| act_num=2 |"
macs=$(awk -F'|' '/^\| act_num=2 \|/ { gsub(/ /, "", $6); print $6; exit }' "$T/abl.log")
expect "ablate: MACs of the trained model ($macs)" [ "${macs:-0}" -gt 0 ]
expect "ablate: results.csv" [ "$(wc -l <"$T/abl/tiny/results.csv")" -eq 3 ]
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/abl" >"$T/abl2.log" 2>&1
expect "ablate again: finished runs not redone" contains "$T/abl2.log" "finished before"
# A run killed after its last checkpoint, before its result.json: the next ablate takes its
# final top-1 from its metrics, as the uninterrupted ablation has it (not -1).
KILL_AT="act_num=1/result.json" LD_PRELOAD="$T/kill_at.so" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
  "$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/ablk" >/dev/null 2>&1
expect "ablate killed before a result.json: killed" [ $? -eq 137 ]
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/ablk" >"$T/ablk.log" 2>&1
expect "ablate killed before a result.json: the rerun exits 0" [ $? -eq 0 ]
expect "ablate killed before a result.json: the table as uninterrupted" \
  cmp -s <(cut -d, -f1-5 "$T/abl/tiny/results.csv") <(cut -d, -f1-5 "$T/ablk/tiny/results.csv")
# A finished run is not reported as the result of other values; two runs cannot share a name.
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/abl" --set optim.lr=0.02 >"$T/abl3.log" 2>&1
expect "ablate with a changed base: exit 1" [ $? -eq 1 ]
expect "ablate with a changed base: names the key" contains "$T/abl3.log" "optim.lr: 0.01 -> 0.02"
# A run cut short by train.max_steps is not taken as finished: the next ablate continues it.
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/ablms" --set train.max_steps=2 >"$T/ablms.log" 2>&1
expect "ablate with train.max_steps: says the runs stopped early" contains "$T/ablms.log" "stopped at step 2 by train.max_steps"
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/ablms" >"$T/ablms2.log" 2>&1
expect "ablate again without the limit: the runs continue, not 'finished before'" \
  bash -c "! grep -q 'finished before' '$T/ablms2.log' && grep -q 'resumed from' '$T/ablms2.log'"
printf 'variants:\n  - {name: a b, set: {optim.lr: 0.1}}\n  - {name: a_b, set: {optim.lr: 0.2}}\n' >"$T/dup.yaml"
"$VANILLA" ablate "$T/base.yaml" "$T/dup.yaml" --set output.dir="$T/dup" >"$T/dup.log" 2>&1
expect "ablate with two runs of one folder name: exit 1" [ $? -eq 1 ]
expect "ablate with two runs of one folder name: says so" contains "$T/dup.log" "runs 1 and 2 both have the name 'a_b'"

# A folder that an import began and did not finish: said when it is read.
mkdir -p "$T/half/train/c0" && cp "$T/data/train/c0/"* "$T/half/train/c0/" && touch "$T/half/.vn_import_started"
"$VANILLA" data check "$T/half/train" >"$T/out" 2>&1
expect "an unfinished import: warned" contains "$T/out" "the import that writes this folder did not finish"

# ablate's tables: a write that fails is an error naming the file (here results.md is a folder).
rm -f "$T/ablms/tiny/results.md" && mkdir "$T/ablms/tiny/results.md"
"$VANILLA" ablate "$T/base.yaml" "$T/abl.yaml" --set output.dir="$T/ablms" >"$T/ablw.log" 2>&1
expect "ablate, results.md cannot be written: exit 1" [ $? -eq 1 ]
expect "ablate, results.md cannot be written: named" contains "$T/ablw.log" "cannot write $T/ablms/tiny/results.md"
expect "ablate, results.md cannot be written: no temporary file left" [ -z "$(ls "$T/ablms/tiny" | grep tmp)" ]

# data check and info.
printf 'hello' >"$T/data/val/c0/notes.txt"
cp "$T/junk.png" "$T/data/val/c1/broken.png"
"$VANILLA" data check "$T/data/val" >"$T/check" 2>&1
expect "data check with a broken file: exit 1" [ $? -eq 1 ]
expect "data check: names the broken file" contains "$T/check" "broken.png"
ln -s "$T/nonexistent.png" "$T/data/val/c2/dangling.png"
"$VANILLA" data check "$T/data/val" >"$T/check" 2>&1
expect "data check: a dangling link is reported, not dropped" contains "$T/check" "dangling.png: cannot open"
rm "$T/data/val/c2/dangling.png"
"$VANILLA" info "$T/base.yaml" >"$T/info" 2>&1
expect "info: exit 0" [ $? -eq 0 ]
# A released variant with only its widths changed keeps its strides (vanillanet_5: 2, 2, 2);
# a count that does not fit the variant's is named as the variant's.
"$VANILLA" info --set model.dims=[16,24,32,40] --set model.num_classes=10 --set data.input_size=64 >"$T/out" 2>&1
expect "variant with dims only: exit 0" [ $? -eq 0 ]
expect "variant with dims only: the variant's third pooling stage" grep -qE "stages\.2\.pool +maxpool 2 " "$T/out"
"$VANILLA" info --set model.dims=[16,24,32] --set model.num_classes=10 >"$T/out" 2>&1
expect "variant with too few dims: exit 1" [ $? -eq 1 ]
expect "variant with too few dims: strides named as the variant's" contains "$T/out" "model.strides 3 (the variant's)"

# model.ada_pool 0 on a pooling stage is the plain MaxPool2d(stride), as the official Block.
"$VANILLA" info --set model.name=custom --set "model.dims=[8,16,24,32]" --set "model.strides=[2,2,1]" \
  --set "model.ada_pool=[3,0,0]" --set model.num_classes=10 --set data.input_size=28 >"$T/out" 2>&1
expect "ada_pool 0 on a pooling stage: the plain max pool" grep -qE "stages\.1\.pool +maxpool 2 " "$T/out"
expect "info: totals" contains "$T/info" "total"

# data preview: a PNG grid of augmented samples (5 tiles of 16 px: 3 x 2 with 2-px gaps),
# the same bytes for the same seed, others for another; bad augmentation keys are named.
P="--set data.auto_augment=rand-m9-mstd0.5-inc1 --set data.reprob=0.5 --n 5"
"$VANILLA" data preview "$T/base.yaml" $P --seed 2 -o "$T/grid.png" >"$T/preview" 2>&1
expect "data preview: exit 0" [ $? -eq 0 ]
expect "data preview: reports the tiles" contains "$T/preview" "5 training samples"
expect "data preview: a 56x38 PNG" [ "$(od -An -tu1 -j16 -N8 "$T/grid.png" 2>/dev/null | tr -s ' ')" = " 0 0 0 56 0 0 0 38" ]
"$VANILLA" data preview "$T/base.yaml" $P --seed 2 -o "$T/grid2.png" >/dev/null 2>&1
expect "data preview: same seed, same bytes" cmp -s "$T/grid.png" "$T/grid2.png"
"$VANILLA" data preview "$T/base.yaml" $P --seed 3 -o "$T/grid3.png" >/dev/null 2>&1
expect "data preview: another seed, other samples" not cmp -s "$T/grid.png" "$T/grid3.png"
"$VANILLA" data preview "$T/base.yaml" --set data.auto_augment=rand-m99 -o "$T/g.png" >"$T/preview_bad" 2>&1
expect "data preview with --set data.auto_augment=rand-m99: a bad command line, exit 2" [ $? -eq 2 ]
expect "data preview with rand-m99: names data.auto_augment" contains "$T/preview_bad" "data.auto_augment"
"$VANILLA" data preview "$T/base.yaml" --set data.reprob=2 -o "$T/g.png" >"$T/preview_bad" 2>&1
expect "data preview with reprob 2: names data.reprob" contains "$T/preview_bad" "data.reprob"
"$VANILLA" data preview "$T/base.yaml" >/dev/null 2>&1
expect "data preview without -o: usage error" [ $? -eq 2 ]

# The README's config reference is the schema's own output (no drift).
if [ $# -ge 3 ]; then
  "$VANILLA" config schema >"$T/schema.md"
  awk '/<!-- schema:end -->/{p=0} p{print} /<!-- schema:begin -->/{p=1}' "$3" >"$T/readme_schema.md"
  expect "README config reference matches the schema (scripts/update_readme_schema.sh)" cmp -s "$T/schema.md" "$T/readme_schema.md"
  "$VANILLA" config official >"$T/official.md"
  awk '/<!-- official:end -->/{p=0} p{print} /<!-- official:begin -->/{p=1}' "$3" >"$T/readme_official.md"
  expect "README official flag table matches vanilla config official (scripts/update_readme_schema.sh)" cmp -s "$T/official.md" "$T/readme_official.md"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
