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
spin() { OMP_DISPLAY_ENV=verbose "$@" "$VANILLA" --version 2>&1 | grep "GOMP_SPINCOUNT"; }
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
# the re-executed program still gets its arguments and exit status
out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$VANILLA" no-such-command 2>&1); rc=$?
if ((rc == 2)) && grep -q "unknown command 'no-such-command'" <<<"$out"; then
  echo "ok - arguments and exit status survive the exec"
else echo "FAIL - exit $rc: $out"; fail=1; fi
exit $fail
