#!/usr/bin/env bash
# YOLO11-VanillaNet training step, vanilla (bench/bench_detect) against PyTorch 1.13
# (bench/torch_detect.py: the same model, input, boxes and Ultralytics loss), alternating in
# one run so that both see the same machine: images/s (median of the steps after the first)
# and peak RSS, and the ratios. Issue 17 asks for >= 1.3x the images/s at <= 0.6x the RSS.
#   bench/compare_detect.sh [IMGSZ 320] [BATCH 8] [STEPS 3] [THREADS: all cores] [ROUNDS 2]
# Needs a release build in build/ (meson compile -C build) and python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
imgsz=${1:-320} batch=${2:-8} steps=${3:-3} threads=${4:-$(nproc)} rounds=${5:-2}
B=${BUILD:-build}/bench/bench_detect
[[ -x $B ]] || { echo "compare_detect: $B missing (meson compile -C ${BUILD:-build})" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
med() { # file field-regex -> median of the values after the first step
  sed -n "s/.*step [1-9][0-9]*:.* \([0-9.]*\) img\/s.*/\1/p" "$1" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                           else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
rss() { sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p' "$1" | sort -n | tail -1; }
echo "imgsz $imgsz, batch $batch, $steps steps, $threads threads, $rounds rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$B" "$imgsz" "$batch" "$steps" \
    | tee "$out/vn.$r" | sed 's/^/  vanilla: /'
  /usr/bin/python3 bench/torch_detect.py "$imgsz" "$batch" "$steps" "$threads" \
    | tee "$out/pt.$r" | sed 's/^/  pytorch: /'
done
cat "$out"/vn.* >"$out/vn"
cat "$out"/pt.* >"$out/pt"
a=$(med "$out/vn") b=$(med "$out/pt") ra=$(rss "$out/vn") rb=$(rss "$out/pt")
printf '\n| | images/s | peak RSS (MB) |\n|---|---:|---:|\n'
printf '| vanilla | %s | %s |\n| PyTorch 1.13 | %s | %s |\n' "$a" "$ra" "$b" "$rb"
awk -v a="$a" -v b="$b" -v ra="$ra" -v rb="$rb" \
  'BEGIN{printf "| ratio | %.2fx | %.2fx |\n", a / b, ra / rb}'
