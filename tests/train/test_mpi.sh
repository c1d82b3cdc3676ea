#!/usr/bin/env bash
# Data-parallel training on MPI (issue 15), 2 ranks started by
# `mpirun --oversubscribe --allow-run-as-root -np 2` on a small model and synthetic data:
#  1. equivalence: 2 ranks x update_freq 1 against 1 process x update_freq 2, SGD and LAMB,
#     20 steps: every tensor of the checkpoint (model with BN buffers, optimizer, EMA) within
#     1e-5 of its largest value (testtool close), and the same evaluation; with a bucket per
#     tensor (LAMB) every bucket's allreduce starts during backward;
#  2. sync_bn: 2 ranks x batch 4 against 1 process x batch 8, 20 steps at lr 0.01: the model
#     within 1e-5 (another summation order; see below why not at lr 0.05);
#  3. SIGUSR1 to mpirun mid-run, then --resume auto: byte-identical to a straight 2-rank run;
#  4. SIGKILL of one rank: mpirun exits non-zero within 60 s naming the rank, the last
#     checkpoint opens;
#  5. a rank that stops answering (SIGSTOP): the other one gives up after train.dist_timeout
#     with a message saying so, and the job exits non-zero;
#  6. ranks that resume from different steps (not the same output.dir) are refused;
#  7. a non-finite loss on one rank only (its lr is 1e30, the other's is not): both ranks
#     stop at the same step with exit 4, naming it, and the last checkpoint is intact;
#  8. ranks with different configs are refused (with --force on all: a warning), different
#     model sizes always;
#  9. a 2-rank checkpoint resumed by one process is refused (the schedule would change);
# 10. a detector under mpirun is refused with a message.
# Skipped (exit 77) without mpirun or in a build without MPI.
# Usage (from meson): test_mpi.sh VANILLA TESTTOOL
set -u
VANILLA=$(readlink -f "$1")
TOOL=$(readlink -f "$2")
MPI_TAG=mpi MPI_UF=2
source "$(dirname "$0")/mpi_setup.sh"

# 1. Equivalence, SGD and LAMB.
# SGD with the default bucket (one for this small model), LAMB with a bucket per tensor,
# started during backward by the tape's hook.
for opt in sgd lamb; do
  bucket=$([[ $opt == lamb ]] && echo 0 || echo 25)
  "$VANILLA" train "$T/cfg.yaml" --set optim.name=$opt --set output.dir="$T/one-$opt" >"$T/one-$opt.log" 2>&1
  "${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" --set optim.name=$opt --set optim.update_freq=1 \
    --set train.dist_bucket_mb=$bucket --set output.dir="$T/two-$opt" >"$T/two-$opt.log" 2>&1
  check "$opt: 1 process and 2 ranks finish" test -f "$(ck "$T/two-$opt" 20)" -a -f "$(ck "$T/one-$opt" 20)"
  check "$opt: 2 ranks x update_freq 1 = 1 process x update_freq 2 (all tensors, 1e-5)" \
    "$TOOL" close "$(ck "$T/one-$opt" 20)" "$(ck "$T/two-$opt" 20)" 1e-5
  check "$opt: the same evaluation (sharded over the ranks)" \
    test "$(grep '^final:' "$T/one-$opt.log")" = "$(grep '^final:' "$T/two-$opt.log")"
done
grep '^final:' "$T/one-sgd.log" "$T/two-sgd.log"
grep 'buckets started during backward' "$T/two-lamb.log"
check "lamb, a bucket per tensor: every bucket started during backward" \
  grep -qE ' ([1-9][0-9]+) of \1 buckets started during backward' "$T/two-lamb.log"

# 2. sync_bn: 2 ranks x batch 4 = 1 process x batch 8, 20 steps. The statistics are combined
# in another order (per-rank mean and M2 merged, the backward sums added over ranks), so the
# bytes differ by rounding, which training amplifies: at the config's lr 0.05 a BatchNorm bias
# differs by 7.7e-4 after 20 steps (1.3e-5 after 1), a trajectory that magnifies any rounding;
# at lr 0.01 the same 20 steps stay within 4.7e-6 (measured), checked at 1e-5 as issue 15 asks.
tol=1e-5
"$VANILLA" train "$T/cfg.yaml" --set model.sync_bn=true --set optim.update_freq=1 --set optim.lr=0.01 \
  --set train.batch_size=8 --set train.max_steps=20 --set output.dir="$T/sync1" >"$T/sync1.log" 2>&1
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" --set model.sync_bn=true --set optim.update_freq=1 \
  --set optim.lr=0.01 --set train.max_steps=20 --set output.dir="$T/sync2" >"$T/sync2.log" 2>&1
check "sync_bn: 2 ranks x batch 4 = 1 process x batch 8 (model with BN buffers, 20 steps, $tol)" \
  "$TOOL" close "$(ck "$T/sync1" 20)" "$(ck "$T/sync2" 20)" $tol model.

# 3. SIGUSR1 through mpirun, then --resume auto: the same bytes as a straight run.
LONG=(--set optim.update_freq=1 --set train.epochs=60 --set train.eval_every=0)
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${LONG[@]}" --set output.dir="$T/straight" >"$T/straight.log" 2>&1
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${LONG[@]}" --set output.dir="$T/stopped" >"$T/stopped.log" 2>&1 &
mp=$!
for _ in $(seq 400); do
  [[ -f "$T/stopped/metrics.jsonl" ]] && (($(wc -l <"$T/stopped/metrics.jsonl") > 20)) && break
  sleep 0.02
done
kill -USR1 $mp
wait $mp
rc=$?
n=$(ls "$T/stopped/checkpoints" 2>/dev/null | wc -l)
check "SIGUSR1: the job stops (exit $rc) with a checkpoint before the end ($n written)" \
  test $rc -ne 0 -a "$n" -ge 1 -a ! -f "$(ck "$T/stopped" 240)"
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${LONG[@]}" --set output.dir="$T/stopped" --resume auto \
  >"$T/resumed.log" 2>&1
check "SIGUSR1 + --resume auto: byte-identical to the straight run" \
  "$TOOL" same "$(ck "$T/straight" 240)" "$(ck "$T/stopped" 240)"

# 4. SIGKILL of rank 1.
KEEP=(--set optim.update_freq=1 --set train.epochs=100000 --set train.eval_every=0 --set output.save_every_steps=20)
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${KEEP[@]}" --set output.dir="$T/killed" >"$T/killed.log" 2>&1 &
mp=$!
for _ in $(seq 400); do
  [[ -f "$T/killed/metrics.jsonl" ]] && (($(wc -l <"$T/killed/metrics.jsonl") > 50)) && break
  sleep 0.02
done
ranks=($(pgrep -P $mp -f "vanilla train"))
t0=$(date +%s.%N)
kill -KILL "${ranks[1]}"
wait $mp
rc=$?
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "SIGKILL of rank pid ${ranks[1]}: exit $rc after $dt s"
grep -E "rank [0-9]|exited on signal" "$T/killed.log" | head -3
last=$(ls "$T/killed/checkpoints" | tail -1)
check "SIGKILL of one rank: non-zero exit within 60 s" awk -v r=$rc -v d="$dt" 'BEGIN{exit !(r != 0 && d < 60)}'
check "SIGKILL of one rank: the message names the rank" grep -qE "rank [01] .*(signal 9|Killed)" "$T/killed.log"
check "SIGKILL of one rank: the last checkpoint ($last) is intact" \
  "$TOOL" same "$T/killed/checkpoints/$last" "$T/killed/checkpoints/$last"

# 5. A rank that stops answering: the watchdog of the other.
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" "${KEEP[@]}" --set train.dist_timeout=3 \
  --set output.dir="$T/hung" >"$T/hung.log" 2>&1 &
mp=$!
for _ in $(seq 400); do
  [[ -f "$T/hung/metrics.jsonl" ]] && (($(wc -l <"$T/hung/metrics.jsonl") > 50)) && break
  sleep 0.02
done
ranks=($(pgrep -P $mp -f "vanilla train"))
t0=$(date +%s.%N)
kill -STOP "${ranks[1]}"
wait $mp
rc=$?
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
kill -KILL "${ranks[1]}" 2>/dev/null
grep "did not complete" "$T/hung.log"
check "a hung rank: the other exits non-zero ($rc) after the 3 s timeout ($dt s)" \
  awk -v r=$rc -v d="$dt" 'BEGIN{exit !(r != 0 && d >= 3 && d < 60)}'
check "a hung rank: the message names the waiting rank and the timeout" \
  grep -qE "rank [01] of 2: .*did not complete within 3 s" "$T/hung.log"

# 6. Ranks that would resume from different places (not the same output.dir) are refused.
mpirun --oversubscribe --allow-run-as-root \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set optim.update_freq=1 --set output.dir="$T/two-sgd" --resume auto : \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set optim.update_freq=1 --set output.dir="$T/elsewhere" --resume auto \
  >"$T/apart.log" 2>&1
rc=$?
grep "starts at step" "$T/apart.log" | head -1
check "ranks resuming from different checkpoints: refused (exit $rc), naming the steps" \
  grep -q "rank 1 starts at step 0 but rank 0 at step 20" "$T/apart.log"

# 7. A non-finite loss on one rank only: rank 0 steps with lr 1e30, rank 1 with the config's
# (configs that differ need --force on every rank, see 8), so after the first update only rank
# 0's loss is non-finite; the per-step agreement stops both.
mpirun --oversubscribe --allow-run-as-root \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set optim.update_freq=1 --set optim.lr=1e30 \
    --set output.save_every_steps=1 --set output.dir="$T/nonfinite" --force : \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set optim.update_freq=1 \
    --set output.save_every_steps=1 --set output.dir="$T/nonfinite" --force >"$T/nonfinite.log" 2>&1
rc=$?
grep "non-finite" "$T/nonfinite.log" | head -2
check "non-finite loss on one rank: the job exits 4 ($rc)" [ $rc -eq 4 ]
for r in 0 1; do
  check "non-finite loss on one rank: rank $r stops at step 1" \
    grep -q "rank $r of 2: non-finite loss or gradient at epoch 0, step 1 " "$T/nonfinite.log"
done
check "non-finite loss on one rank: no rank waits for the other" \
  bash -c "! grep -q 'did not complete' '$T/nonfinite.log'"
check "non-finite loss on one rank: the last checkpoint is intact" \
  "$TOOL" same "$T/nonfinite/checkpoints/ckpt-s0000000001.safetensors" \
  "$T/nonfinite/checkpoints/ckpt-s0000000001.safetensors"

check "configs that differ, with --force on every rank: a warning names them" \
  grep -q "rank 1 runs another config than rank 0 .*going on (--force)" "$T/nonfinite.log"

# 8. Ranks with different configs: refused at the start, before any gradient is exchanged;
# different model sizes are refused even with --force (no buffers of different sizes mixed).
mpirun --oversubscribe --allow-run-as-root \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/mixed" : \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/mixed" --set train.seed=1 >"$T/mixed.log" 2>&1
rc=$?
check "ranks with different configs: refused (exit $rc)" [ $rc -ne 0 ]
check "ranks with different configs: the message says so" grep -q "rank 1 runs another config than rank 0" "$T/mixed.log"
check "ranks with different configs: no step taken" [ ! -d "$T/mixed/checkpoints" -o -z "$(ls "$T/mixed/checkpoints" 2>/dev/null)" ]
mpirun --oversubscribe --allow-run-as-root \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/mixed2" --force : \
  -np 1 "$VANILLA" train "$T/cfg.yaml" --set output.dir="$T/mixed2" --set "model.dims=[8,16,24]" --force \
  >"$T/mixed2.log" 2>&1
rc=$?
check "ranks with different model sizes, --force: refused (exit $rc)" [ $rc -ne 0 ]
check "ranks with different model sizes: named, no memory error" \
  bash -c "grep -q 'rank 1 builds another model than rank 0' '$T/mixed2.log' && ! grep -qiE 'corruption|double free|Signal: Aborted' '$T/mixed2.log'"

# 9. Resuming a 2-rank checkpoint in one process: refused (the schedule would jump), --force
# goes on.
"$VANILLA" train "$T/cfg.yaml" --set optim.update_freq=1 --set output.dir="$T/two-sgd" \
  --resume auto >"$T/oneafter.log" 2>&1
rc=$?
check "resume of a 2-rank run in 1 process: refused (exit $rc)" [ $rc -eq 1 ]
check "resume of a 2-rank run in 1 process: says why and how" \
  grep -q "was written by a run of 2 ranks (effective batch 8) and this one has 1 (4)" "$T/oneafter.log"

# 10. The detector does not train data-parallel: refused with a message, not a lock error.
"${MPIRUN[@]}" "$VANILLA" train "$T/cfg.yaml" --set model.task=detect --set detect.data="$T/none.yaml" \
  --set output.dir="$T/det" >"$T/det.log" 2>&1
rc=$?
check "a detector under mpirun: refused (exit $rc) with a message" \
  bash -c "[ $rc -ne 0 ] && grep -q 'the detector trains in one process' '$T/det.log'"

((fail == 0)) && echo "mpi: all checks passed"
exit $fail
