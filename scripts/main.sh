#!/usr/bin/env bash
# The main job: set up, build, import Fashion-MNIST (Debian's dataset-fashion-mnist) into
# ImageNet-format PNG folders, train a small VanillaNet from scratch with deep training,
# evaluate it, export the merged deploy network, evaluate that on the same images, and print
# both accuracies, the time taken and where everything is.
#
#   scripts/main.sh            resume the run in runs/fashion_mnist if it was interrupted;
#                              a finished run is not retrained (only evaluated and exported)
#   scripts/main.sh --fresh    delete runs/fashion_mnist and train again from scratch
#   scripts/main.sh -- ARGS    extra arguments for `vanilla train` (e.g. --set train.epochs=4)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

fresh=0
extra=()
while (($#)); do
  case "$1" in
    --fresh) fresh=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "main.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup.sh
[[ -f build/build.ninja ]] || meson setup build --buildtype=release >/dev/null
echo "== building =="
meson compile -C build >/dev/null
V=build/train/cli/vanilla
CONFIG=examples/fashion_mnist.yaml
RUN=runs/fashion_mnist

echo "== importing Fashion-MNIST =="
$V data import --format fashion-mnist /usr/share/datasets/fashion-mnist datasets/fashion-mnist

echo "== training ($CONFIG) =="
((fresh)) && rm -rf "$RUN"
$V train "$CONFIG" --set output.dir="$RUN" --resume auto "${extra[@]}"

ckpt=$(ls "$RUN"/checkpoints/ckpt-s*.safetensors | sort | tail -1)
echo "== evaluating the trained network (eval mode): $ckpt =="
$V eval "$ckpt" --data datasets/fashion-mnist/val | tee "$RUN/eval_train.txt"
echo "== exporting the deploy network =="
$V export "$ckpt" -o "$RUN/deploy.safetensors"
echo "== evaluating the deploy network =="
$V eval "$RUN/deploy.safetensors" --data datasets/fashion-mnist/val | tee "$RUN/eval_deploy.txt"

echo "== report =="
$V report "$RUN" -o "$RUN/report.html"

top1() { sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' "$1"; }
a=$(top1 "$RUN/eval_train.txt")
b=$(top1 "$RUN/eval_deploy.txt")
end=$(date +%s)
cat <<SUMMARY

== summary ==
top-1, trained network (eval mode):  $a%
top-1, deploy network:               $b%
time taken:                          $((end - start)) s
checkpoint:       $ckpt
deploy weights:   $RUN/deploy.safetensors
metrics:          $RUN/metrics.jsonl, $RUN/epochs.csv
report:           $RUN/report.html   (curves, tables, config: open it in a browser)
TensorBoard logs: $RUN/tb   (tensorboard --logdir $RUN/tb)
SUMMARY
