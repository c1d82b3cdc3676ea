#!/usr/bin/env bash
# The detector through the vanilla command (model.task: detect) on a tiny set made by the
# Fashion-MNIST detection importer from synthetic items: train a few steps with the eval
# table and metrics.jsonl, resume mid-epoch byte-identical to an uninterrupted run, SIGTERM
# stops with a checkpoint and exit code 3, eval prints the table, predict prints boxes and
# draws a PNG, export merges the backbone (same outputs) and the merged file evaluates, a bad
# label line is reported with its file and line.
# Usage (from meson): test_detect_cli.sh VANILLA DETECTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_detcli_XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
expect() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
contains() { grep -qF -- "$2" "$1"; }

"$TOOL" fmd "$T/fmd" 24 6 64 || { echo "cannot make the detection set"; exit 1; }
cat >"$T/det.yaml" <<YAML
model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}
detect: {data: $T/fmd/data.yaml, imgsz: 64, width_multiple: 0.125, depth_multiple: 0.34,
         close_mosaic: 1}
data: {mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.002, weight_decay: 0.0005, warmup_epochs: 0, warmup_steps: 2,
        clip_grad: 10.0}
deep_training: {decay_epochs: 1, update: iteration}
train: {epochs: 2, batch_size: 4, threads: 1, log_every: 2, eval_every: 1}
output: {dir: $T/a, keep_last: 0, tensorboard: false}
YAML

# A full run: the table after each epoch, the metrics, a checkpoint per epoch.
"$VANILLA" train "$T/det.yaml" >"$T/a.log" 2>&1
expect "train exits 0" test $? -eq 0
expect "train prints the table header" contains "$T/a.log" "Class      Images   Instances       Box(P           R       mAP50   mAP50-95)"
expect "train prints the row all" grep -qE '^ +all +6 ' "$T/a.log"
expect "metrics.jsonl has mAP50-95" contains "$T/a/metrics.jsonl" '"val_mAP50-95"'
expect "metrics.jsonl has per-class AP" contains "$T/a/metrics.jsonl" '"val_mAP50/'
A_LAST="$T/a/checkpoints/ckpt-s0000000012.safetensors"
expect "final checkpoint at step 12" test -f "$A_LAST"

# Stopped at step 3 (mid-epoch), resumed: the same final weights and optimizer state.
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/b" --set train.max_steps=3 >"$T/b1.log" 2>&1
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/b" --resume auto >"$T/b2.log" 2>&1
expect "resume reports where it continues" contains "$T/b2.log" "position 12, step 3"
expect "resumed run equals the uninterrupted one" "$TOOL" same "$A_LAST" "$T/b/checkpoints/ckpt-s0000000012.safetensors"

# SIGTERM: a checkpoint and exit code 3; resume finishes the run.
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/c" --set train.epochs=400 >"$T/c.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  [ -f "$T/c/metrics.jsonl" ] && grep -q '"kind":"step"' "$T/c/metrics.jsonl" && break
  sleep 0.1
done
kill -TERM $pid
wait $pid
rc=$?
expect "SIGTERM exits 3" test $rc -eq 3
expect "SIGTERM wrote a checkpoint" contains "$T/c.log" "stopping on signal: checkpoint written"
"$VANILLA" train "$T/det.yaml" --set output.dir="$T/c" --set train.epochs=400 --set train.max_steps=8 \
  --resume auto >"$T/c2.log" 2>&1
expect "resume after SIGTERM" test $? -eq 0

# eval and predict on the checkpoint.
"$VANILLA" eval "$A_LAST" >"$T/eval.log" 2>&1
expect "eval exits 0" test $? -eq 0
expect "eval prints the table" contains "$T/eval.log" "mAP50-95)"
IMG="$T/fmd/images/val/000000.png"
"$VANILLA" predict "$A_LAST" "$IMG" --conf 0.0001 -o "$T/pred.png" >"$T/pred.log" 2>&1
expect "predict exits 0" test $? -eq 0
expect "predict prints boxes" grep -qE 'boxes$' "$T/pred.log"
expect "predict -o writes a PNG" test "$(head -c 4 "$T/pred.png" | tail -c 3)" = "PNG"

# export merges the backbone (deep training is over at the end); the merged file evaluates to
# the same table.
"$VANILLA" export "$A_LAST" -o "$T/merged.safetensors" >"$T/export.log" 2>&1
expect "export exits 0" test $? -eq 0
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

# A detector config without detect.data is refused with the key named.
"$VANILLA" train "$T/det.yaml" --set detect.data= --set output.dir="$T/f" >"$T/nodata.log" 2>&1
expect "no detect.data: refused" contains "$T/nodata.log" "detect.data"

"$VANILLA" train "$T/det.yaml" --set detect.imgsz=100 --set output.dir="$T/g" >"$T/imgsz.log" 2>&1
expect "imgsz not a multiple of 32: usage error naming the key" contains "$T/imgsz.log" "detect.imgsz 100 is not a multiple of 32"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
