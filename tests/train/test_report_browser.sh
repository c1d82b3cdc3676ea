#!/usr/bin/env bash
# `vanilla report` in a real browser: trains a short run on a synthetic image folder, writes
# its report (and PNG charts), renders the page in headless Chromium to a PNG screenshot and
# checks that it loaded without console errors and parsed to the end; then a 100,000-step
# run: its report is under 2 MB and takes under 2 s more CPU time to load and render than a
# trivial page. Skipped (exit 77) when chromium is not installed.
# Usage (from meson): test_report_browser.sh VANILLA TESTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
T=$(mktemp -d /tmp/vn_report_XXXXXX)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/../support/expect.sh"

# The command line (no browser needed).
"$VANILLA" report --help >"$T/help" 2>&1
expect "report --help: exit 0" [ $? -eq 0 ] && expect "report --help: usage" grep -q "usage: vanilla report" "$T/help"
"$VANILLA" report >/dev/null 2>&1
expect "report without folders: exit 2" [ $? -eq 2 ]
"$VANILLA" report --frobnicate x >/dev/null 2>&1
expect "report with an unknown option: exit 2" [ $? -eq 2 ]

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$CHROMIUM" ]]; then
  echo "SKIP: chromium is not installed (scripts/setup.sh installs it); $pass passed, $fail failed"
  [ "$fail" -eq 0 ] && exit 77
  exit 1
fi
calc() { awk "BEGIN { printf \"%.3f\", $1 }" | sed 's/\.000$//'; }
is_png() { [[ -s "$1" && $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }

# One headless Chromium, a fresh profile each time, nothing fetched from the network.
browse() { # out-prefix, url, extra flags...
  local out=$1 url=$2; shift 2
  rm -rf "$T/profile"
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
    --user-data-dir="$T/profile" --enable-logging=stderr --v=0 --hide-scrollbars "$@" "$url" \
    >"$out.out" 2>"$out.err"
}
# Lines where the page's console reported an error (or a resource failed to load).
console_errors() { grep -E 'CONSOLE|Uncaught|Failed to load resource|net::ERR_' "$1" || true; }

# The detector itself must see an error when there is one.
printf '<!DOCTYPE html><html><body><script>console.error("deliberate")</script></body></html>\n' >"$T/bad.html"
browse "$T/bad" "file://$T/bad.html" --dump-dom
expect "console errors are detected (self-check)" [ -n "$(console_errors "$T/bad.err")" ]

# A short real run.
"$TOOL" synth "$T/data" 24 8 || { echo "cannot make the synthetic data"; exit 1; }
cat >"$T/run.yaml" <<YAML
model: {name: custom, dims: [8, 16, 16], strides: [1, 2], in_chans: 1, num_classes: 4}
data: {root: $T/data, input_size: 16, grayscale: true, mean: [0.3], std: [0.3], augment: none,
       crop_pct: 1.0, mixup: 0, cutmix: 0}
optim: {name: adamw, lr: 0.01, weight_decay: 0.01, update_freq: 1, warmup_epochs: 1}
deep_training: {decay_epochs: 2, update: iteration}
ema: {decays: [0.9]}
loss: {bce: false}
train: {epochs: 4, batch_size: 8, threads: 2, log_every: 1000, eval_every: 1}
output: {dir: $T/run, keep_last: 2}
YAML
"$VANILLA" train "$T/run.yaml" >"$T/train.out" 2>&1
expect "short training run" [ $? -eq 0 ]
expect "epoch records carry peak_rss_mb" grep -q '"kind":"epoch".*"peak_rss_mb"' "$T/run/metrics.jsonl"

"$VANILLA" report "$T/run" -o "$T/report.html" --png >"$T/report.out" 2>&1
expect "report: exit 0" [ $? -eq 0 ]
expect "report: says where" grep -q "report: $T/report.html (1 run" "$T/report.out"
for c in loss top1 lr act_learn throughput; do
  expect "--png: $c chart" is_png "$T/report-$c.png"
done
expect "page has no scripts" [ "$(grep -c '<script' "$T/report.html")" -eq 0 ]

browse "$T/shot" "file://$T/report.html" --window-size=1280,2600 --screenshot="$T/shot.png"
expect "screenshot written" is_png "$T/shot.png"
expect "screenshot is not blank (> 30 kB)" [ "$(stat -c %s "$T/shot.png")" -gt 30000 ]
errs=$(console_errors "$T/shot.err")
expect "no console errors while rendering${errs:+: $errs}" [ -z "$errs" ]

browse "$T/dom" "file://$T/report.html" --dump-dom
expect "DOM parsed to the end (footer present)" grep -q '<footer' "$T/dom.out"
svg_file=$(grep -o '<svg' "$T/report.html" | wc -l)
svg_dom=$(grep -o '<svg' "$T/dom.out" | wc -l)
expect "every chart in the DOM ($svg_dom of $svg_file)" [ "$svg_file" -gt 5 -a "$svg_dom" -eq "$svg_file" ]

# Broken inputs: a missing folder next to the run, and a run cut mid-record.
cp -r "$T/run" "$T/cut"
printf '{"kind":"step","epoch":9,"st' >>"$T/cut/metrics.jsonl"
"$VANILLA" report "$T/cut" "$T/missing" -o "$T/broken.html" >"$T/broken.out" 2>&1
expect "broken inputs: exit 0 (something was read)" [ $? -eq 0 ]
expect "broken inputs: missing folder named" grep -q "$T/missing: no such folder" "$T/broken.out"
expect "broken inputs: page lists the partial line" grep -q "ends in the middle of a record" "$T/broken.html"
"$VANILLA" report "$T/missing" -o "$T/none.html" >"$T/none.out" 2>&1
expect "nothing readable: exit 1, no page written" [ $? -eq 1 -a ! -e "$T/none.html" ]
cp -r "$T/cut" "$T/cut2"
"$VANILLA" report "$T/cut2" -o "$T/cut2/metrics.jsonl" >"$T/self.out" 2>&1
expect "a page onto the run's own metrics.jsonl: refused (exit 1)" [ $? -eq 1 ]
expect "a page onto the run's own metrics.jsonl: the file is intact" cmp -s "$T/cut/metrics.jsonl" "$T/cut2/metrics.jsonl"

# An ablation folder as `vanilla ablate` leaves it: results table, bar chart, runs overlaid.
printf 'name: act\nset: {train.epochs: 2}\ngrid:\n  model.act_num: [0, 1]\n' >"$T/abl.yaml"
"$VANILLA" ablate "$T/run.yaml" "$T/abl.yaml" --set output.dir="$T/ablations" >"$T/abl.out" 2>&1
expect "ablation ran" [ $? -eq 0 -a -s "$T/ablations/act/results.csv" ]
"$VANILLA" report "$T/ablations/act" -o "$T/abl.html" >"$T/ablr.out" 2>&1
expect "ablation report: exit 0, both runs" grep -q "(2 runs" "$T/ablr.out"
expect "ablation report: bar chart" grep -q "Best top-1 per run" "$T/abl.html"
expect "ablation report: config differences" grep -q "model.act_num: 0 -&gt; 1" "$T/abl.html"
browse "$T/ashot" "file://$T/abl.html" --window-size=1280,2000 --screenshot="$T/ashot.png"
errs=$(console_errors "$T/ashot.err")
expect "ablation report renders without console errors${errs:+: $errs}" [ -z "$errs" ] && is_png "$T/ashot.png"

# 100,000 logged steps: size and load time.
mkdir -p "$T/big"
awk 'BEGIN {
  for (s = 1; s <= 100000; s++) {
    e = int((s - 1) / 1000)
    printf "{\"kind\":\"step\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"loss\":%.7g,\"lr\":%.7g,\"act_learn\":%.5g,\"grad_norm\":%.5g,\"img_per_s\":%.5g,\"data_wait_s\":%.4f,\"wd\":0.05}\n", e, s, 1.7e9 + s * 0.1, 2 / (1 + s / 5000) + 0.1 * sin(s), 0.001 * (1 + cos(3.14159 * s / 100000)) / 2, (s < 50000 ? s / 50000 : 1), 1 + 0.2 * sin(s / 7), 1200 + 50 * sin(s), (s - e * 1000) * 0.002
    if (s % 1000 == 0) {
      printf "{\"kind\":\"eval\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"val_top1\":%.4f,\"val_top5\":%.4f,\"val_loss\":%.4f,\"act_learn\":1,\"peak_rss_mb\":%d}\n", e, s, 1.7e9 + s * 0.1, 90 - 40 / (1 + e), 99 - 9 / (1 + e), 0.3 + 1 / (1 + e), 400 + e
      printf "{\"kind\":\"epoch\",\"epoch\":%d,\"step\":%d,\"time\":%.3f,\"train_loss\":%.4f,\"lr\":0.001,\"epoch_seconds\":100,\"peak_rss_mb\":%d}\n", e, s, 1.7e9 + s * 0.1, 2 / (1 + s / 5000), 410 + e
    }
  }
}' >"$T/big/metrics.jsonl"
cp "$T/run/config.yaml" "$T/big/"
t0=$(date +%s.%N)
"$VANILLA" report "$T/big" -o "$T/big.html" >"$T/big.out" 2>&1
t1=$(date +%s.%N)
size=$(stat -c %s "$T/big.html")
echo "# 100,000 steps: report of $size bytes written in $(calc "$t1 - $t0") s"
expect "100,000 steps: report under 2 MB ($size bytes)" [ "$size" -lt 2097152 ]
printf '<!DOCTYPE html><html><body><p>x</p></body></html>\n' >"$T/tiny.html"
# Seconds of CPU (user + system, the browser and its child processes) and of wall clock for a
# headless screenshot of a page, best of 2. CPU time is the criterion: on a shared machine
# the wall clock mostly measures the other users.
load_time() {
  local best_cpu=999 best_wall=999 c w
  for _ in 1 2; do
    TIMEFORMAT='%U %S %R'
    { time browse "$T/lt" "file://$1" --window-size=1280,2600 --screenshot="$T/lt.png"; } 2>"$T/time"
    read -r u s w <"$T/time"
    c=$(calc "$u + $s")
    best_cpu=$(calc "($c < $best_cpu) ? $c : $best_cpu")
    best_wall=$(calc "($w < $best_wall) ? $w : $best_wall")
  done
  echo "$best_cpu $best_wall"
}
read -r c_tiny w_tiny < <(load_time "$T/tiny.html")
read -r c_big w_big < <(load_time "$T/big.html")
extra=$(calc "$c_big - $c_tiny")
echo "# load + render, CPU seconds: trivial page $c_tiny, 100,000-step report $c_big (extra $extra);"
echo "# wall seconds: $w_tiny and $w_big (shared machine, noisy)"
expect "100,000 steps: opens in under 2 s of CPU more than a trivial page" [ "$(calc "($extra < 2) ? 1 : 0")" = 1 ]
errs=$(console_errors "$T/lt.err")
expect "100,000 steps: no console errors${errs:+: $errs}" [ -z "$errs" ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
