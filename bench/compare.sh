#!/bin/bash
# Ours against PyTorch, same machine, same run (issue 8): builds bench_train, then for each case
# runs bench/bench_train and bench/torch_baseline.py one after the other (never concurrently,
# one process per run so that each peak RSS is that run's own), and prints a markdown table of
# images/s and peak RSS with the ratios ours / PyTorch, the sgemm ceiling and the training
# step's utilisation of it. The machine may be shared: only the ratios mean something, and the
# load average and each run's CPU share are printed with them.
#
#   bench/compare.sh [--build DIR] [--no-build] [--quick] [--case NAME]... [--threads T]
#                    [--rounds R] [--channels-last] [--logs DIR]
#
# --build DIR      meson build directory (default build; set up as a release build if missing)
# --quick          fewer steps (about 80 s on 2 cores; a full run takes about 3.5 minutes)
# --case NAME      run only these cases (repeatable): v5_train v5_train_ema fmnist_train
#                  v5_deploy_b8 v5_deploy_b1 (default: all). v5_train_ema is v5_train with the
#                  recipe's model EMA (decay 0.9999) on both sides: ours the trainer's EMA
#                  copy, PyTorch timm's ModelEma, each updated after every optimizer step;
#                  fmnist_train runs ours as examples/fashion_mnist.yaml trains it, keeping
#                  the outputs backward would recompute (train.keep_mb 64, same bytes)
# --threads T      threads for both (default: all cores)
# --rounds R       run each pair R times, alternating ours / PyTorch, and report medians
# --channels-last  also run PyTorch with channels_last tensors, as extra rows
# --logs DIR       where the full output of each run goes (default DIR/compare-logs)
# --run-timeout S  stop with an error when one run takes longer (default 600 s; a busy machine
#                  can make PyTorch's vanillanet_5 training steps take minutes each)
#
# Columns: ratio = ours / PyTorch images/s from the median steps (above 1: ours faster);
# ratio of fastest steps = the same from each side's fastest step (less hurt by a transient
# neighbour); RSS ratio = ours / PyTorch peak RSS (below 1: ours smaller); CPU busy = process
# CPU time / (wall time x threads) over the timed steps: well under 100% means another program
# had the cores, and the figures of that row are not to be trusted (rerun it).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build
DO_BUILD=1
QUICK=0
CASES=()
THREADS=$(nproc)
ROUNDS=1
CL=0
LOGS=
RUN_TIMEOUT=600
PY=/usr/bin/python3 # Debian's python3-torch; the python3 on PATH may lack torch

while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD=$2; shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        --quick) QUICK=1; shift ;;
        --case) CASES+=("$2"); shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --channels-last) CL=1; shift ;;
        --logs) LOGS=$2; shift 2 ;;
        --run-timeout) RUN_TIMEOUT=$2; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
ALL_CASES=(v5_train v5_train_ema fmnist_train v5_deploy_b8 v5_deploy_b1)
[ ${#CASES[@]} -eq 0 ] && CASES=("${ALL_CASES[@]}")
for c in "${CASES[@]}"; do
    case " ${ALL_CASES[*]} " in *" $c "*) ;; *) echo "compare.sh: unknown case $c (one of: ${ALL_CASES[*]})" >&2; exit 2 ;; esac
done
LOGS=${LOGS:-$BUILD/compare-logs}

if [ $DO_BUILD -eq 1 ]; then
    if [ ! -d "$BUILD" ]; then
        meson setup "$BUILD" --buildtype=release >/dev/null
    fi
    meson compile -C "$BUILD" bench/bench_train >/dev/null
fi
BENCH=$BUILD/bench/bench_train
[ -x "$BENCH" ] || { echo "compare.sh: $BENCH not built" >&2; exit 1; }
mkdir -p "$LOGS"

# Case -> model and run arguments; steps as "warmup steps" (full / quick).
FMNIST="--dims 64,128,256,512 --strides 1,2,2 --in-chans 1 --classes 10 --act-num 3"
case_args() {
    case "$1" in
        v5_train) echo "--model vanillanet_5 --batch 8 --size 224 --mode train" ;;
        v5_train_ema) echo "--model vanillanet_5 --batch 8 --size 224 --mode train --ema 0.9999" ;;
        fmnist_train) echo "$FMNIST --batch 128 --size 28 --mode train" ;;
        v5_deploy_b8) echo "--model vanillanet_5 --batch 8 --size 224 --mode deploy" ;;
        v5_deploy_b1) echo "--model vanillanet_5 --batch 1 --size 224 --mode deploy" ;;
    esac
}
case_steps() {
    if [ $QUICK -eq 1 ]; then
        case "$1" in
            v5_train|v5_train_ema) echo "--warmup 1 --steps 2" ;;
            fmnist_train) echo "--warmup 2 --steps 5" ;;
            v5_deploy_b8) echo "--warmup 1 --steps 3" ;;
            v5_deploy_b1) echo "--warmup 2 --steps 7" ;;
        esac
    else
        case "$1" in
            v5_train|v5_train_ema) echo "--warmup 1 --steps 5" ;;
            fmnist_train) echo "--warmup 3 --steps 15" ;;
            v5_deploy_b8) echo "--warmup 2 --steps 7" ;;
            v5_deploy_b1) echo "--warmup 3 --steps 21" ;;
        esac
    fi
}
case_label() {
    case "$1" in
        v5_train) echo "vanillanet_5 224 b8 train" ;;
        v5_train_ema) echo "vanillanet_5 224 b8 train, EMA on both sides" ;;
        fmnist_train) echo "Fashion-MNIST model 28 b128 train (keep_mb 64, as its config)" ;;
        v5_deploy_b8) echo "vanillanet_5 224 b8 deploy" ;;
        v5_deploy_b1) echo "vanillanet_5 224 b1 deploy" ;;
    esac
}

# field NAME < RESULT line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
fmt() { awk -v a="$1" -v d="$2" 'BEGIN {printf "%.*f", d, a}'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# run WHO CASE ROUND -> prints the RESULT line; full output in the logs
run_one() {
    local who=$1 c=$2 r=$3 log args
    args="$(case_args "$c") $(case_steps "$c") --threads $THREADS"
    log=$LOGS/$c.$who.$r.log
    case "$who" in
        ours) cmd=("$BENCH" $args)
              # the Fashion-MNIST model as examples/fashion_mnist.yaml trains it: train.keep_mb
              # 64 keeps the outputs backward would recompute (37 MB here; the same bytes)
              case "$c" in fmnist_train) cmd+=(--keep-mb 64) ;; esac
              # the sgemm ceiling right after the training steps, in the same process (its
              # buffers are allocated after the peak RSS is read)
              case "$c" in *_train) cmd+=(--sgemm-peak) ;; esac ;;
        torch) cmd=("$PY" bench/torch_baseline.py $args) ;;
        torch_cl) cmd=("$PY" bench/torch_baseline.py $args --channels-last) ;;
    esac
    { echo "# load average before: $(loadavg)"; echo "# ${cmd[*]}"; } >"$log"
    local rc=0
    timeout "$RUN_TIMEOUT" "${cmd[@]}" >>"$log" 2>&1 || rc=$?
    if [ $rc -eq 124 ]; then
        echo "compare.sh: $who $c took over $RUN_TIMEOUT s (load $(loadavg)); the machine is" \
             "probably busy: rerun later or raise --run-timeout; output so far in $log" >&2
        return 1
    elif [ $rc -ne 0 ]; then
        echo "compare.sh: $who $c failed (exit $rc), see $log" >&2
        tail -5 "$log" >&2
        return 1
    fi
    echo "# load average after: $(loadavg)" >>"$log"
    grep '^RESULT ' "$log" | tail -1
}

echo "compare.sh: $THREADS threads, cases: ${CASES[*]}$([ $QUICK -eq 1 ] && echo ' (quick)'), rounds $ROUNDS"
echo "load average at start: $(loadavg)"
T0=$(date +%s)
sgemm_line=$("$BENCH" --sgemm-only --threads "$THREADS" | grep '^RESULT ')
SGEMM=$(field gflops <<<"$sgemm_line")
GEMM=$(field gemm_gflops <<<"$sgemm_line")

WHOS=(ours torch)
[ $CL -eq 1 ] && WHOS+=(torch_cl)
declare -A R # R[case.who.key] = median over rounds
for c in "${CASES[@]}"; do
    declare -A acc=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for who in "${WHOS[@]}"; do
            echo "  $(case_label "$c"): $who (round $r, load $(loadavg))" >&2
            line=$(run_one "$who" "$c" "$r") || exit 1
            for k in img_s step_ms min_ms rss_mb gflops cpu sgemm_gflops gemm_gflops; do
                v=$(field $k <<<"$line")
                [ -n "$v" ] && acc[$who.$k]+="$v"$'\n'
            done
        done
    done
    for who in "${WHOS[@]}"; do
        for k in img_s step_ms min_ms rss_mb gflops cpu sgemm_gflops gemm_gflops; do
            [ -n "${acc[$who.$k]:-}" ] && R[$c.$who.$k]=$(printf '%s' "${acc[$who.$k]}" | median)
        done
    done
    unset acc
done
sgemm_line=$("$BENCH" --sgemm-only --threads "$THREADS" | grep '^RESULT ')
sgemm_end=$(field gflops <<<"$sgemm_line")
gemm_end=$(field gemm_gflops <<<"$sgemm_line")
T1=$(date +%s)

target() {
    case "$1" in
        v5_train) [ "$2" = torch_cl ] && echo "img/s >= 2x, RSS <= 0.5x" || echo "img/s >= 2.5x, RSS <= 0.5x" ;;
        v5_train_ema) echo "RSS <= 0.5x" ;;
        fmnist_train) echo "img/s >= 1.5x" ;;
        v5_deploy_b8) echo "img/s >= 1.3x" ;;
        v5_deploy_b1) echo "latency <= 1.0x (img/s >= 1.0x)" ;;
    esac
}

echo
echo "| case | vs | ours img/s | PyTorch img/s | ratio | ours ms/step | PyTorch ms/step | ratio of fastest steps | ours peak RSS MB | PyTorch peak RSS MB | RSS ratio | CPU busy ours/PyTorch | target |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for c in "${CASES[@]}"; do
    for who in "${WHOS[@]:1}"; do
        vs=$([ "$who" = torch ] && echo "NCHW" || echo "channels_last")
        oi=${R[$c.ours.img_s]} ti=${R[$c.$who.img_s]}
        om=${R[$c.ours.rss_mb]} tm=${R[$c.$who.rss_mb]}
        echo "| $(case_label "$c") | $vs | $(fmt "$oi" 2) | $(fmt "$ti" 2) | $(ratio "$oi" "$ti") |" \
             "$(fmt "${R[$c.ours.step_ms]}" 1) | $(fmt "${R[$c.$who.step_ms]}" 1) |" \
             "$(ratio "${R[$c.$who.min_ms]}" "${R[$c.ours.min_ms]}") |" \
             "$(fmt "$om" 0) | $(fmt "$tm" 0) | $(ratio "$om" "$tm") |" \
             "$(fmt "$(awk -v a="${R[$c.ours.cpu]}" 'BEGIN{print 100*a}')" 0)% / $(fmt "$(awk -v a="${R[$c.$who.cpu]}" 'BEGIN{print 100*a}')" 0)% | $(target "$c" "$who") |"
    done
done
echo
echo "sgemm 2048^3 (OpenBLAS, $THREADS threads, alone): $(fmt "$SGEMM" 1) GFLOPS at the start, $(fmt "$sgemm_end" 1) at the end"
[ -n "$GEMM" ] && echo "the library's own GEMM, same product: $(fmt "$GEMM" 1) GFLOPS at the start, $(fmt "$gemm_end" 1) at the end (the ceiling below takes the better of the two)"
for c in v5_train fmnist_train; do
    if [ -n "${R[$c.ours.gflops]:-}" ]; then
        # the in-process ceiling: the better of OpenBLAS's sgemm and the library's GEMM (where
        # OpenBLAS runs AVX2 kernels on an AVX-512 CPU, the model's products run on the latter)
        best=$(printf '%s\n' "${R[$c.ours.sgemm_gflops]}" "${R[$c.ours.gemm_gflops]:-0}" "$SGEMM" "$sgemm_end" "${GEMM:-0}" "${gemm_end:-0}" | sort -g | tail -1)
        pct() { awk -v a="${R[$c.ours.gflops]}" -v b="$1" 'BEGIN{printf "%.0f", 100*a/b}'; }
        echo "$(case_label "$c"): ours $(fmt "${R[$c.ours.gflops]}" 1) GFLOPS achieved;" \
             "utilisation $(pct "${R[$c.ours.sgemm_gflops]}")% of OpenBLAS's sgemm right after it in the same process ($(fmt "${R[$c.ours.sgemm_gflops]}" 1) GFLOPS)$([ -n "${R[$c.ours.gemm_gflops]:-}" ] && echo ", $(pct "${R[$c.ours.gemm_gflops]}")% of the library's GEMM there ($(fmt "${R[$c.ours.gemm_gflops]}" 1))")," \
             "$(pct "$best")% of the best product rate seen in this run ($(fmt "$best" 1)); PyTorch $(fmt "${R[$c.torch.gflops]}" 1) GFLOPS"
        # The most any implementation of these FLOPs gets here: every FLOP at the best product
        # rate of the run. A ratio to PyTorch above this line's is out of this machine's reach.
        cap=$(awk -v s="$best" -v g="${R[$c.ours.gflops]}" -v i="${R[$c.ours.img_s]}" \
              'BEGIN{if (g > 0) printf "%.4f", s * i / g; else print 0}')
        line="  ceiling: every FLOP at $(fmt "$best" 1) GFLOPS gives $(fmt "$cap" 2) img/s"
        for who in "${WHOS[@]:1}"; do
            line+=", $(ratio "$cap" "${R[$c.$who.img_s]}")x PyTorch $([ "$who" = torch ] && echo NCHW || echo channels_last)"
        done
        echo "$line; ours is at $(awk -v a="${R[$c.ours.img_s]}" -v b="$cap" 'BEGIN{printf "%.0f", 100*a/b}')% of it"
    fi
done
case " ${CASES[*]} " in *_train*) echo "(targets: training-step utilisation of the sgemm after the steps >= 90% for vanillanet_5, >= 65% for the Fashion-MNIST model; where the library's GEMM beats OpenBLAS, as on CPUs whose OpenBLAS runs AVX2 kernels, its rate is the stricter ceiling)" ;; esac
echo "(FLOPs: 2 x conv multiply-adds x batch, x3 for a training step; see bench/bench_train.c)"
echo "load average at the end: $(loadavg); $((T1 - T0)) s; logs in $LOGS"
echo "reproduce: bench/compare.sh --build $BUILD$([ $QUICK -eq 1 ] && echo ' --quick')$(for c in "${CASES[@]}"; do [ ${#CASES[@]} -lt ${#ALL_CASES[@]} ] && printf ' --case %s' "$c"; done) --threads $THREADS --rounds $ROUNDS$([ $CL -eq 1 ] && echo ' --channels-last')"
