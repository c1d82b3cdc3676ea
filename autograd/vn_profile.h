/* Op profile: where a step's time goes. While enabled, every op the tape runs (forward,
 * backward and the recomputation of freed outputs) adds its wall time and one call to a
 * process-wide table, per op and direction. `vanilla train --profile` and
 * `bench_train --profile` print it. Off by default, when it costs one branch per op.
 *
 * Times are host wall time around each kernel, so the threads inside a kernel count once;
 * an op on a device (CUDA) is timed between two syncs of the device, so its row is its device
 * time plus the launch (the syncs slow the step a little while the profile is on). Work
 * outside the tape (the optimizer step, EMA updates, data loading) is not in the table: the
 * report puts the table's total beside the wall time it is given. Not thread-safe: enable and
 * report from the thread that runs the steps. */
#ifndef VN_PROFILE_H
#define VN_PROFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_profile_dir { VN_PROFILE_FORWARD, VN_PROFILE_BACKWARD, VN_PROFILE_RECOMPUTE } vn_profile_dir;

void vn_profile_enable(bool on);
bool vn_profile_enabled(void);
/* Empties the table (enabled or not). */
void vn_profile_reset(void);
/* One row's figures so far (op: a vn_op). */
void vn_profile_get(int op, vn_profile_dir dir, double *seconds, int64_t *calls);
/* Prints the rows with calls, slowest first: op, direction, calls, total ms, ms per call and
 * share of the table's total, then the total; with wall_s > 0 also each row's share of that
 * wall time and what the table does not cover. Returns the table's total seconds. */
double vn_profile_report(FILE *fp, double wall_s);

#ifdef __cplusplus
}
#endif
#endif
