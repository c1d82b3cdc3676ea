#!/usr/bin/env bash
# Sets up (packages), builds and runs the whole test suite: once in the release build and
# once under AddressSanitizer + UndefinedBehaviorSanitizer. Prints "N passed, M failed".
#   scripts/test.sh            everything
#   scripts/test.sh --no-asan  release build only (faster, for iterating)
#   scripts/test.sh -- ARGS    extra arguments for `meson test` (e.g. a suite: --suite conv)
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
extra=()
while (($#)); do
  case "$1" in
    --no-asan) asan=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup.sh

passed=0
failed=0
run_suite() { # build-dir, meson setup options...
  local dir=$1; shift
  if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
  fi
  meson compile -C "$dir" >"$dir.compile.log" 2>&1 || { tail -50 "$dir.compile.log"; exit 1; }
  local log="$dir/meson-logs/test-summary.txt"
  set +e
  meson test -C "$dir" --print-errorlogs --num-processes 2 "${extra[@]}" 2>&1 | tee "$log"
  set -e
  local ok fail
  ok=$(awk '/^Ok:/{print $2}' "$log" | tail -1)
  fail=$(awk '/^(Fail|Unexpected Pass|Timeout):/{s+=$2} END{print s+0}' "$log")
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0}))
}

echo "== release build (build/) =="
run_suite build --buildtype=release
if ((asan)); then
  echo "== ASan + UBSan build (build-asan/) =="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
fi

echo "tests: $passed passed, $failed failed"
((failed == 0 && passed > 0))
