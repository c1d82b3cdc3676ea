#!/usr/bin/env bash
# Sets up (packages), builds and runs the whole test suite: once in the release build and
# once under AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer target for
# 20 s (scripts/fuzz.sh; each target counts as one test). Prints "N passed, M failed".
#   scripts/test.sh            everything
#   scripts/test.sh --no-asan  release build only (faster, for iterating)
#   scripts/test.sh --no-fuzz  without the fuzz targets
#   (also a portable build, -Dnative=false: no AVX2/AVX-512 kernels, the numeric suites)
#   scripts/test.sh -- ARGS    extra arguments for `meson test` (e.g. a suite: --suite conv)
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
fuzz=1
extra=()
while (($#)); do
  case "$1" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

scripts/setup.sh

passed=0
failed=0
suite_only=() # meson test arguments that narrow a run_suite to some suites
run_suite() { # build-dir, meson setup options...
  local dir=$1; shift
  if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
  fi
  meson compile -C "$dir" >"$dir.compile.log" 2>&1 || { tail -50 "$dir.compile.log"; exit 1; }
  local log="$dir/meson-logs/test-summary.txt"
  set +e
  meson test -C "$dir" --print-errorlogs --num-processes 2 "${suite_only[@]}" "${extra[@]}" 2>&1 | tee "$log"
  set -e
  local ok fail
  ok=$(awk '/^Ok:/{print $2}' "$log" | tail -1)
  fail=$(awk '/^(Fail|Unexpected Pass|Timeout):/{s+=$2} END{print s+0}' "$log")
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0}))
}

echo "== release build (build/) =="
run_suite build --buildtype=release

# Where the CUDA toolkit is, the release build has the CUDA backend module (meson option cuda
# is auto) and ran the CUDA suites above: they skip, exit 77, without a GPU, and the backend
# tests check that a CPU run never loads the module.
if [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
  if [[ -f build/libvanilla_cuda.so ]]; then
    echo "CUDA backend module: build/libvanilla_cuda.so built"
    passed=$((passed + 1))
  else
    echo "CUDA backend module: FAIL (nvcc is here but build/libvanilla_cuda.so was not built;" \
         "see the CUDA lines of build.setup.log)"
    failed=$((failed + 1))
  fi
fi

# The installed library is usable on its own: headers, pkg-config file, shared library.
echo "== install check (meson install into a staging folder, build a program against it) =="
stage=$(mktemp -d)
if DESTDIR="$stage" meson install -C build >/dev/null 2>&1 && (
     pcdir=$(dirname "$(find "$stage" -name vanilla.pc | head -1)")
     export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_PATH="$pcdir"
     printf '#include "models/vn_vanillanet.h"\nint main(void){vn_vanillanet_config c;\nreturn vn_vanillanet_variant("vanillanet_5",&c,0)!=0 || vn_vanillanet_count_params(&c,1)!=15523304;}\n' >"$stage/use.c"
     cc "$stage/use.c" $(pkg-config --cflags --libs vanilla) -o "$stage/use" &&
       LD_LIBRARY_PATH="$(dirname "$(find "$stage" -name 'libvanilla.so' | head -1)")" "$stage/use" &&
       # The CUDA backend module installs beside libvanilla, where the loader looks first.
       { [[ ! -f build/libvanilla_cuda.so ]] ||
         [[ -f "$(dirname "$(find "$stage" -name 'libvanilla.so' | head -1)")/libvanilla_cuda.so" ]]; }); then
  echo "install check: OK"
  passed=$((passed + 1))
else
  echo "install check: FAIL"
  failed=$((failed + 1))
fi
rm -rf "$stage"
if ((asan)); then
  echo "== ASan + UBSan build (build-asan/) =="
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # Without the CUDA module: the suite then also covers a build without the backend (its
  # loader is tested with stand-in modules), and nvcc runs once per test.sh.
  run_suite build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcuda=disabled
fi

# The release builds above use -march=native. A build for any x86-64 has no AVX2 or AVX-512
# kernels (every product goes to OpenBLAS, the depthwise convs run their plain loops): it must
# compile under -Werror and give the same answers. The numeric suites, about a minute.
echo "== portable build (build-portable/: -Dnative=false) =="
suite_only=(--suite conv --suite ops --suite optim --suite models)
run_suite build-portable --buildtype=release -Dnative=false -Dcuda=disabled
suite_only=()

if ((fuzz)); then
  echo "== fuzz targets, ${FUZZ_SECONDS:-20} s each (build-fuzz/) =="
  fuzz_log=$(mktemp)
  scripts/fuzz.sh "${FUZZ_SECONDS:-20}" 2>&1 | tee "$fuzz_log" || true
  fuzz_ok=$(grep -cE '^fuzz .* crashes 0  rc 0$' "$fuzz_log" || true)
  fuzz_all=$(grep -cE '^fuzz .* rc [0-9]+$' "$fuzz_log" || true)
  ((fuzz_all > 0)) || fuzz_all=1 # no target line at all: the fuzz build failed
  passed=$((passed + fuzz_ok))
  failed=$((failed + fuzz_all - fuzz_ok))
  rm -f "$fuzz_log"
fi

echo "tests: $passed passed, $failed failed"
((failed == 0 && passed > 0))
