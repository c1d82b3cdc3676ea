#!/bin/bash
# Shared cores (issue 19): how much of its speed a training keeps when it is not alone on the
# machine. For each case, bench_train's training steps (forward, loss, backward, SGD step:
# what `vanilla train` runs per step, without the data loader) are timed
#   alone      one run, all cores;
#   pair       two identical runs started together, each asking for all cores;
#   beside     one run beside a busy single-threaded process (a shell loop that never sleeps).
# and a table gives images/s and each figure as a share of the alone figure (the targets of
# the issue: each of a pair >= 40%, the pair together >= 80%, beside a busy process >= 50%).
# Run it on an otherwise idle machine: anything else running is a neighbour too.
#
#   bench/shared_cores.sh [--build DIR] [--no-build] [--case NAME]... [--threads T]
#                         [--rounds R] [--quick] [--logs DIR]
#
# --case NAME   fmnist (the main job's model, 28x28, batch 128) or v5 (vanillanet_5, 224,
#               batch 8); default both
# --threads T   threads each run asks for (default: all cores)
# --rounds R    repeat each measurement R times and report medians (default 1)
# --quick       fewer steps
# Environment: whatever is set is passed on, e.g. GOMP_SPINCOUNT=300000 measures libgomp's own
# spin-then-sleep default instead of the passive waiting the programs choose
# (vn_runtime_setup in base/vn_base.h).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build
DO_BUILD=1
CASES=()
THREADS=$(nproc)
ROUNDS=1
QUICK=0
LOGS=
while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD=$2; shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        --case) CASES+=("$2"); shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --logs) LOGS=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "shared_cores.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#CASES[@]} -eq 0 ] && CASES=(fmnist v5)
for c in "${CASES[@]}"; do
    case "$c" in fmnist|v5) ;; *) echo "shared_cores.sh: unknown case $c (fmnist or v5)" >&2; exit 2 ;; esac
done
LOGS=${LOGS:-$BUILD/shared-cores-logs}
if [ $DO_BUILD -eq 1 ]; then
    [ -d "$BUILD" ] || meson setup "$BUILD" --buildtype=release >/dev/null
    meson compile -C "$BUILD" bench/bench_train >/dev/null
fi
BENCH=$BUILD/bench/bench_train
[ -x "$BENCH" ] || { echo "shared_cores.sh: $BENCH not built" >&2; exit 1; }
mkdir -p "$LOGS"

case_args() {
    case "$1" in
        fmnist) echo "--dims 64,128,256,512 --strides 1,2,2 --in-chans 1 --classes 10 --batch 128 --size 28" ;;
        v5) echo "--model vanillanet_5 --batch 8 --size 224" ;;
    esac
}
case_steps() {
    case "$1.$QUICK" in
        fmnist.0) echo "--warmup 3 --steps 40" ;;
        fmnist.1) echo "--warmup 2 --steps 15" ;;
        v5.0) echo "--warmup 1 --steps 6" ;;
        v5.1) echo "--warmup 1 --steps 3" ;;
    esac
}
label() { case "$1" in fmnist) echo "Fashion-MNIST model 28 b128" ;; v5) echo "vanillanet_5 224 b8" ;; esac; }
img_s() { sed -n 's/^RESULT .* img_s=\([^ ]*\).*/\1/p' "$1"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }

busy_pid=
cleanup() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null; true; }
trap cleanup EXIT

run() { # case log -> runs one bench_train into log
    # shellcheck disable=SC2046
    "$BENCH" $(case_args "$1") $(case_steps "$1") --threads "$THREADS" >"$2" 2>&1 ||
        { echo "shared_cores.sh: bench_train failed, see $2" >&2; tail -3 "$2" >&2; exit 1; }
}

echo "shared_cores.sh: $THREADS threads per run, cases ${CASES[*]}, rounds $ROUNDS, load $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}" ] &&
    echo "  environment: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-}"
declare -A R
for c in "${CASES[@]}"; do
    declare -A acc=()
    for ((r = 1; r <= ROUNDS; r++)); do
        echo "  $(label "$c"), round $r: alone" >&2
        run "$c" "$LOGS/$c.alone.$r.log"
        acc[alone]+="$(img_s "$LOGS/$c.alone.$r.log")"$'\n'
        echo "  $(label "$c"), round $r: pair" >&2
        run "$c" "$LOGS/$c.pair_a.$r.log" & pa=$!
        run "$c" "$LOGS/$c.pair_b.$r.log" & pb=$!
        wait $pa; wait $pb
        a=$(img_s "$LOGS/$c.pair_a.$r.log"); b=$(img_s "$LOGS/$c.pair_b.$r.log")
        acc[pair_a]+="$a"$'\n'; acc[pair_b]+="$b"$'\n'
        acc[pair]+="$(awk -v a="$a" -v b="$b" 'BEGIN {print a + b}')"$'\n'
        echo "  $(label "$c"), round $r: beside a busy process" >&2
        (while :; do :; done) & busy_pid=$!
        run "$c" "$LOGS/$c.beside.$r.log"
        kill "$busy_pid"; wait "$busy_pid" 2>/dev/null || true; busy_pid=
        acc[beside]+="$(img_s "$LOGS/$c.beside.$r.log")"$'\n'
    done
    for k in alone pair_a pair_b pair beside; do R[$c.$k]=$(printf '%s' "${acc[$k]}" | median); done
    unset acc
done

echo
echo "| case | alone img/s | pair: run A | pair: run B | pair together | beside a busy process |"
echo "|---|---:|---:|---:|---:|---:|"
for c in "${CASES[@]}"; do
    al=${R[$c.alone]}
    printf '| %s | %.2f | %.2f (%s) | %.2f (%s) | %.2f (%s) | %.2f (%s) |\n' "$(label "$c")" "$al" \
        "${R[$c.pair_a]}" "$(pct "${R[$c.pair_a]}" "$al")" "${R[$c.pair_b]}" "$(pct "${R[$c.pair_b]}" "$al")" \
        "${R[$c.pair]}" "$(pct "${R[$c.pair]}" "$al")" "${R[$c.beside]}" "$(pct "${R[$c.beside]}" "$al")"
done
echo "targets: each of a pair >= 40%, the pair together >= 80%, beside a busy process >= 50%."
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg); logs in $LOGS"
