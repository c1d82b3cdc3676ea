#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, a separate clang build in build-fuzz/) and runs
# each for SECONDS (default 60) from its seed corpus, with its dictionary when there is one.
#   scripts/fuzz.sh [--cpu] [SECONDS] [TARGET...]
#   targets: safetensors config png jpeg idx pth yolo (default all)
# --cpu: SECONDS is CPU time, not wall time: each target runs in segments (new inputs kept in
# its corpus between them) until its fuzzer processes have used SECONDS of CPU, however busy
# the machine is (the README's long runs: scripts/fuzz.sh --cpu 1800). Every run adds its CPU
# seconds and executions to build-fuzz/ledger/<target> (with the corpus, the campaign so far);
# with --cpu, the CPU already in the ledger counts, so an interrupted long run resumes where
# it stopped. FUZZ_LEDGER_RESET=1 starts the ledgers again.
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
  local ledger="$dir/ledger/$t" rc=0 cpu=0 execs=0 seg segs=0 cpu0=0 execs0=0
  mkdir -p "$dir/ledger"
  [[ "${FUZZ_LEDGER_RESET:-0}" == 1 ]] && rm -f "$ledger"
  [[ -f "$ledger" ]] && read -r cpu0 execs0 <"$ledger"
  if ((cpu_mode)) && awk -v c="$cpu0" -v s="$seconds" 'BEGIN{exit !(c >= s)}'; then
    printf 'fuzz %-12s ledger already holds %s CPU s (%s execs); nothing to do\n' "$t" "$cpu0" "$execs0"
    return 0
  fi
  while :; do
    local left=$seconds
    ((cpu_mode)) && left=$(awk -v s="$seconds" -v c="$cpu0" 'BEGIN{l = s - c; if (l > 600) l = 600; printf "%d", (l < 30 ? 30 : l)}')
    seg=$(fuzz_segment "$t" "$left" "$log")
    cat "$log" >>"$log.all"
    segs=$((segs + 1))
    cpu=$(awk -v c="$cpu" -v s="$seg" 'BEGIN{split(s, a, " "); printf "%.1f", c + a[1] + a[2]}')
    local n
    n=$(awk '/stat::number_of_executed_units:/{print $2}' "$log" | tail -1)
    execs=$((execs + ${n:-0}))
    awk -v a="$cpu0" -v s="$seg" -v e="$execs0" -v n="${n:-0}" \
      'BEGIN{split(s, x, " "); printf "%.1f %d\n", a + x[1] + x[2], e + n}' >"$ledger"
    read -r cpu0 execs0 <"$ledger"
    [[ -f "$log.rc" ]] && { rc=$(awk '{print $2}' "$log.rc"); rm -f "$log.rc"; break; }
    ((cpu_mode)) || break
    awk -v c="$cpu0" -v s="$seconds" 'BEGIN{exit !(c >= s)}' && break
  done
  mv "$log.all" "$log"
  local cov ft ncrash
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  # slow-unit-* files only say an input took long (a loaded machine): not failures
  ncrash=$(find "$crashes" -type f ! -name 'slow-unit-*' | wc -l)
  printf 'fuzz %-12s %10s execs  %7.1f CPU s  (ledger %s CPU s, %s execs)  cov %5s  ft %6s  corpus %5s  crashes %s  rc %s\n' \
    "$t" "$execs" "$cpu" "$cpu0" "$execs0" "${cov:-?}" "${ft:-?}" \
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
