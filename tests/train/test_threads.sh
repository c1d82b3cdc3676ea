#!/usr/bin/env bash
# Passive OpenMP waiting (issue 19, vn_threads_prefer_passive): `vanilla` runs with libgomp's
# passive wait policy unless the user chose one, so that a busy neighbour on the same cores
# does not make its threads spin against it (bench/shared_cores.sh measures the effect).
# libgomp prints its settings at load with OMP_DISPLAY_ENV=verbose; the last block printed is
# the one of the process that runs.
# Usage (from meson): test_threads.sh VANILLA
set -u
VANILLA=$1
fail=0
# (the OpenMP checks keep OpenBLAS's own choice, so that only the wait policy can exec)
spin() { OMP_DISPLAY_ENV=verbose VN_BLAS_AUTO=0 "$@" "$VANILLA" --version 2>&1 | grep "GOMP_SPINCOUNT"; }
check() { # name expected-last expected-count output
  local last count
  last=$(tail -1 <<<"$4" | sed "s/.*= '\(.*\)'/\1/")
  count=$(grep -c . <<<"$4")
  if [[ "$last" == "$2" && "$count" == "$3" ]]; then echo "ok - $1: spin count $last, loaded $count time(s)"
  else echo "FAIL - $1: spin count '$last' loaded $count time(s) (expected '$2', $3)"; fail=1; fi
}
check "no setting: passive (one exec)" 0 2 "$(spin env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)"
check "OMP_WAIT_POLICY=active kept" 30000000000 1 "$(spin env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active)"
check "GOMP_SPINCOUNT=1234 kept" 1234 1 "$(spin env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1234)"
# OpenBLAS's kernels: what it picks by itself, and what runs
cores() { OPENBLAS_VERBOSE=2 OMP_WAIT_POLICY=passive "$@" "$VANILLA" --version 2>&1 | sed -n 's/^Core: //p'; }
own=$(cores env -u OPENBLAS_CORETYPE VN_BLAS_AUTO=0)
if [[ -z "$own" ]]; then
  echo "ok - # SKIP OpenBLAS prints no core (not a DYNAMIC_ARCH build)"
else
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
  want=$own
  case "$own" in Prescott | Core2 | Nehalem | Sandybridge)
    if has avx512f avx512cd avx512bw avx512dq avx512vl; then want=SkylakeX
    elif has avx2 fma; then want=Haswell; fi ;;
  esac
  got=$(cores env -u OPENBLAS_CORETYPE -u VN_BLAS_AUTO)
  loads=$(grep -c . <<<"$got")
  expect_loads=1; [[ "$want" != "$own" ]] && expect_loads=2
  if [[ "$(tail -1 <<<"$got")" == "$want" && "$loads" == "$expect_loads" ]]; then
    echo "ok - OpenBLAS picks $own; runs $want ($loads load(s))"
  else echo "FAIL - OpenBLAS picks $own, expected $want in $expect_loads load(s), got: $got"; fail=1; fi
  got=$(cores env -u VN_BLAS_AUTO OPENBLAS_CORETYPE=Prescott)
  if [[ "$got" == "Prescott" ]]; then echo "ok - OPENBLAS_CORETYPE=Prescott kept, no exec"
  else echo "FAIL - OPENBLAS_CORETYPE=Prescott: $got"; fail=1; fi
  got=$(cores env -u OPENBLAS_CORETYPE VN_BLAS_AUTO=0)
  if [[ "$got" == "$own" ]]; then echo "ok - VN_BLAS_AUTO=0 keeps OpenBLAS's choice, no exec"
  else echo "FAIL - VN_BLAS_AUTO=0: $got"; fail=1; fi
fi
# the re-executed program still gets its arguments and exit status
out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$VANILLA" no-such-command 2>&1); rc=$?
if ((rc == 2)) && grep -q "unknown command 'no-such-command'" <<<"$out"; then
  echo "ok - arguments and exit status survive the exec"
else echo "FAIL - exit $rc: $out"; fail=1; fi
exit $fail
