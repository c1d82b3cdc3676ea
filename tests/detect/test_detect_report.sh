#!/usr/bin/env bash
# Detector runs through `vanilla report` and `vanilla ablate` on a tiny set made by the
# Fashion-MNIST detection importer from synthetic items (15 epochs of 6 steps, no EMA, so the
# mAP is above 0 after a few seconds): the page's cards, evaluation table and per-class table
# show the figures of metrics.jsonl (best: the evaluation with the highest Ultralytics fitness
# 0.1 mAP50 + 0.9 mAP50-95, recomputed here with awk), the detector's PNG charts are written;
# the ablation table (printed, results.md, results.csv) holds each run's best and final mAP50-95
# and mAP50 from its metrics.jsonl, the parameters and multiply-adds of the merged detector as
# `vanilla info` counts them, no top-1; a second ablate does not redo finished runs; the report
# of the ablation folder reads the detector results.csv back.
# Usage (from meson): test_detect_report.sh VANILLA DETECTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_detrep_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"
not_contains() { ! grep -qF -- "$2" "$1"; }

# Figures of a run's metrics.jsonl as "best_map best_map50 final_map final_map50 final_p final_r
# best_epoch" with the given printf format for the mAP figures.
figures() {
  awk -v fmt="$2" '
    function val(line, key,   re) {
      re = "\"" key "\":[^,}]*"
      if (!match(line, re)) return "nan"
      return substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3) + 0
    }
    /"kind":"eval"/ && /"val_mAP50-95":/ {
      m50 = val($0, "val_mAP50"); m = val($0, "val_mAP50-95"); n++
      fm = m; fm50 = m50; fp = val($0, "val_P"); fr = val($0, "val_R")
      f = 0.1 * m50 + 0.9 * m
      if (n == 1 || f > bf) { bf = f; bm = m; bm50 = m50; be = val($0, "epoch") }
    }
    END {
      if (!n) { print "none"; exit }
      printf fmt " " fmt " " fmt " " fmt " " fmt " " fmt " %d\n", bm, bm50, fm, fm50, fp, fr, be
    }' "$1/metrics.jsonl"
}

"$TOOL" fmd "$T/fmd" 24 6 64 || { echo "cannot make the detection set"; exit 1; }
cat >"$T/det.yaml" <<YAML
model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}
detect: {data: $T/fmd/data.yaml, imgsz: 64, width_multiple: 0.125, depth_multiple: 0.34,
         close_mosaic: 15, ema_decay: 0}
data: {mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.01, weight_decay: 0.0005, warmup_epochs: 0, warmup_steps: 2, update_freq: 1,
        clip_grad: 10.0}
deep_training: {decay_epochs: 0}
train: {epochs: 15, batch_size: 4, threads: 1, log_every: 2, eval_every: 1}
output: {dir: $T/a, keep_last: 0, tensorboard: false}
YAML

# ---- vanilla report on one detector run
"$VANILLA" train "$T/det.yaml" >"$T/a.log" 2>&1
expect "train exits 0" test $? -eq 0
read -r bm bm50 fm fm50 fp fr be <<<"$(figures "$T/a" %.4f)"
echo "# metrics.jsonl: best mAP50-95 $bm mAP50 $bm50 (epoch $be), final $fm $fm50 P $fp R $fr"
# On this machine the run reaches mAP50-95 0.0862; other BLAS kernels may round otherwise, so
# 0 here is a note, not a failure (test_report_detect checks non-zero figures on fixed records).
awk -v m="$bm" 'BEGIN { exit !(m > 0) }' || echo "# note: mAP50-95 is 0: the checks below compare zeros"
"$VANILLA" report "$T/a" -o "$T/a.html" --png >"$T/rep.log" 2>&1
expect "report exits 0" test $? -eq 0
card() { contains "$T/a.html" "<div class=\"k\">$1</div><div class=\"v\">$2</div>"; }
expect "card best mAP50-95 = metrics.jsonl's at the best fitness ($bm)" card "Best mAP50-95" "$bm"
expect "card best mAP50 = the same evaluation's ($bm50)" card "Best mAP50" "$bm50"
expect "card best: its epoch" grep -qE "0.9 mAP50-95\) [0-9.]+, epoch $be<" "$T/a.html"
expect "card final mAP50-95 ($fm)" card "Final mAP50-95" "$fm"
expect "card final mAP50 ($fm50)" card "Final mAP50" "$fm50"
expect "card final precision ($fp)" card "Final precision" "$fp"
expect "card final recall ($fr)" card "Final recall" "$fr"
expect "no top-1 card" not_contains "$T/a.html" '<div class="k">Best top-1'
expect "the best row of the evaluation table" grep -qE "<tr class=\"best\"><td>$be</td><td>[0-9]+</td><td>[0-9.]+</td><td>[0-9.]+</td><td>$bm50</td><td>$bm</td>" "$T/a.html"
# Per-class AP: the last class record of the last evaluation.
cls=$(grep -o '"val_mAP50/[^"]*":[^,}]*' "$T/a/metrics.jsonl" | tail -n 1)
name=${cls#\"val_mAP50/}; name=${name%%\"*}
ap50=$(printf '%.4f' "${cls##*:}")
ap=$(printf '%.4f' "$(grep -o "\"val_mAP50-95/$name\":[^,}]*" "$T/a/metrics.jsonl" | tail -n 1 | cut -d: -f2)")
expect "per-class table: $name mAP50 $ap50 mAP50-95 $ap (last evaluation)" \
  contains "$T/a.html" "<tr><td>$name</td><td>$ap50</td><td>$ap</td></tr>"
for f in box_loss cls_loss dfl_loss precision recall mAP50 mAP50-95; do
  expect "PNG chart $f" test -s "$T/a-$f.png"
done
expect "no top-1 PNG for a detector" test ! -e "$T/a-top1.png"

# ---- vanilla ablate on detectors
cat >"$T/abl.yaml" <<YAML
name: act
grid:
  model.act_num: [1, 2]
YAML
"$VANILLA" ablate "$T/det.yaml" "$T/abl.yaml" --set output.dir="$T/abl" >"$T/abl.log" 2>&1
expect "ablate exits 0" test $? -eq 0
expect "ablate: the detector table" contains "$T/abl.log" "| run | best mAP50-95 | best mAP50 | final mAP50-95 | final mAP50 | params (deploy) | MACs (deploy) | time (s) |"
expect "ablate: no top-1" not_contains "$T/abl.log" "top-1"
expect "ablate: no -1.00" not_contains "$T/abl.log" "-1.00"
CSV="$T/abl/act/results.csv"
expect "results.csv: the detector header" test "$(head -n 1 "$CSV")" = \
  "run,best_mAP50-95,best_mAP50,final_mAP50-95,final_mAP50,params,macs,seconds"
expect "results.csv: two runs" test "$(wc -l <"$CSV")" -eq 3
for run in act_num=1 act_num=2; do
  dir="$T/abl/act/$run"
  read -r m m50 f f50 _ <<<"$(figures "$dir" %.6f)"
  row=$(grep "^$run," "$CSV")
  expect "$run: results.csv mAP = metrics.jsonl's ($m $m50 $f $f50)" \
    test "$(echo "$row" | cut -d, -f2-5)" = "$m,$m50,$f,$f50"
  read -r m4 m504 f4 f504 _ <<<"$(figures "$dir" %.4f)"
  expect "$run: the printed table row" contains "$T/abl.log" "| $run | $m4 | $m504 | $f4 | $f504 |"
  "$VANILLA" info "$dir/checkpoints/best.safetensors" >"$T/info.log" 2>&1
  params=$(sed -n 's/.*summary (deploy): \([0-9]*\) parameters, \([0-9.e-]*\) GFLOPs.*/\1/p' "$T/info.log")
  gflops=$(sed -n 's/.*summary (deploy): \([0-9]*\) parameters, \([0-9.e-]*\) GFLOPs.*/\2/p' "$T/info.log")
  expect "$run: params = vanilla info's deploy count ($params)" test "$(echo "$row" | cut -d, -f6)" = "$params"
  macs=$(echo "$row" | cut -d, -f7)
  expect "$run: MACs = vanilla info's deploy GFLOPs / 2 ($macs, $gflops GFLOPs)" \
    test "$(awk -v m="$macs" 'BEGIN { printf "%.3g", 2 * m / 1e9 }')" = "$gflops"
  expect "$run: time > 0" awk -v s="$(echo "$row" | cut -d, -f8)" 'BEGIN { exit !(s > 0) }'
  expect "$run: result.json says detect" contains "$dir/result.json" '"task": "detect"'
done
cp "$CSV" "$T/results1.csv"
"$VANILLA" ablate "$T/det.yaml" "$T/abl.yaml" --set output.dir="$T/abl" >"$T/abl2.log" 2>&1
expect "ablate again: finished runs not redone, mAP shown" contains "$T/abl2.log" "finished before: best mAP50-95"
expect "ablate again: the same results.csv (from result.json)" test "$(cut -d, -f1-7 "$CSV")" = "$(cut -d, -f1-7 "$T/results1.csv")"

# ---- vanilla report on the ablation folder: results.csv read back (-o into a folder that
# does not exist yet: it is made)
"$VANILLA" report "$T/abl/act" -o "$T/new/dir/abl.html" >/dev/null 2>&1
expect "report makes the output's folder" test -s "$T/new/dir/abl.html"
cp "$T/new/dir/abl.html" "$T/abl.html"
expect "report of the ablation exits 0" test $? -eq 0
expect "ablation page: bars of best mAP50-95" contains "$T/abl.html" "Best mAP50-95 per run"
read -r m m50 f f50 _ <<<"$(figures "$T/abl/act/act_num=2" %.4f)"
expect "ablation page: the act_num=2 row ($m $m50 $f $f50)" \
  grep -qE "<td>act_num=2</td><td>$m</td><td>$m50</td><td>$f</td><td>$f50</td>" "$T/abl.html"
expect "ablation page: runs labelled detect" contains "$T/abl.html" "detect (mAP50-95)"

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
