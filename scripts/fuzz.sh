#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, a separate clang build in build-fuzz/) and runs
# each for SECONDS (default 60) from its seed corpus, with its dictionary when there is one.
#   scripts/fuzz.sh [--cpu] [SECONDS] [TARGET...]
#   targets: safetensors config png jpeg idx pth yolo (default all)
# --cpu: SECONDS is CPU time, not wall time: each target runs in segments (new inputs kept in
# its corpus between them) until its fuzzer processes have used SECONDS of CPU, however busy
# the machine is (the README's long runs: scripts/fuzz.sh --cpu 1800).
# New inputs go into build-fuzz/corpus/<target> (kept between runs, not committed); crashes
# into build-fuzz/crashes/<target>/. Prints one line per target (executions, coverage, CPU
# seconds of the fuzzer process, crashes) and exits non-zero when any target crashed.
# Environment: FUZZ_JOBS=N runs N targets at once (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
cpu_mode=0
if (($#)) && [[ "$1" == --cpu ]]; then cpu_mode=1; shift; fi
if (($#)) && [[ "$1" =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
all=(safetensors config png jpeg idx pth yolo)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (have: ${all[*]})" >&2; exit 2; }
done

dir=build-fuzz
if [[ ! -f "$dir/build.ninja" ]]; then
  CC=clang meson setup "$dir" -Dfuzz=true --buildtype=debugoptimized -Db_lundef=false \
    >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
fi
meson compile -C "$dir" >"$dir.compile.log" 2>&1 || { tail -50 "$dir.compile.log"; exit 1; }

fuzz_segment() { # target wall-seconds log -> prints "user sys" CPU seconds; sets seg_rc
  local t=$1 secs=$2 log=$3 work="$dir/corpus/$t" crashes="$dir/crashes/$t"
  local dict=()
  [[ -f tests/fuzz/$t.dict ]] && dict=("-dict=tests/fuzz/$t.dict")
  local TIMEFORMAT='%U %S'
  { time ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1 "$dir/tests/fuzz/fuzz_$t" "${dict[@]}" \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || echo "rc $?" >"$log.rc"; } 2>&1
}

run_one() { # target
  local t=$1 work="$dir/corpus/$t" crashes="$dir/crashes/$t" log="$dir/fuzz-$t.log"
  mkdir -p "$work" "$crashes"
  : >"$log.all"
  local rc=0 cpu=0 execs=0 seg segs=0
  while :; do
    local left=$seconds
    ((cpu_mode)) && left=$(awk -v s="$seconds" -v c="$cpu" 'BEGIN{l = s - c; if (l > 600) l = 600; printf "%d", (l < 30 ? 30 : l)}')
    seg=$(fuzz_segment "$t" "$left" "$log")
    cat "$log" >>"$log.all"
    segs=$((segs + 1))
    cpu=$(awk -v c="$cpu" -v s="$seg" 'BEGIN{split(s, a, " "); printf "%.1f", c + a[1] + a[2]}')
    execs=$((execs + $(awk '/stat::number_of_executed_units:/{print $2}' "$log" | tail -1)))
    [[ -f "$log.rc" ]] && { rc=$(awk '{print $2}' "$log.rc"); rm -f "$log.rc"; break; }
    ((cpu_mode)) || break
    awk -v c="$cpu" -v s="$seconds" 'BEGIN{exit !(c >= s)}' && break
  done
  mv "$log.all" "$log"
  local cov ft ncrash
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  ncrash=$(find "$crashes" -type f | wc -l)
  printf 'fuzz %-12s %10s execs  %7.1f CPU s  cov %5s  ft %6s  corpus %5s  crashes %s  rc %s\n' \
    "$t" "$execs" "$cpu" "${cov:-?}" "${ft:-?}" \
    "$(find "$work" -type f | wc -l)" "$ncrash" "$rc"
  if ((rc != 0 || ncrash != 0)); then
    grep -E 'ERROR|SUMMARY|==[0-9]+==' "$log" | head -20
    return 1
  fi
}

failed=0
jobs=${FUZZ_JOBS:-1}
if ((jobs <= 1)); then
  for t in "${targets[@]}"; do run_one "$t" || failed=$((failed + 1)); done
else
  pids=()
  for t in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || failed=$((failed + 1)); done
    run_one "$t" &
  done
  while (($(jobs -rp | wc -l))); do wait -n || failed=$((failed + 1)); done
fi
echo "fuzz: ${#targets[@]} targets, $failed failed"
((failed == 0))
