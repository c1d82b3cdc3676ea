/* Training metrics: one call logs a set of named scalars to every sink of a run directory.
 *
 *   <run_dir>/metrics.jsonl  one JSON object per line, for every kind:
 *       {"kind":"step","epoch":3,"step":1200,"time":1712345678.123,"loss":0.4321,"lr":0.001}
 *     "time" is wall-clock seconds since the Unix epoch (millisecond resolution); then the
 *     scalars in the order given. JSON has no NaN or infinity: non-finite values are written
 *     as null.
 *   <run_dir>/epochs.csv     one row per EPOCH record: "epoch,step,time,<columns...>".
 *     The columns are the ones given at open, or else the names of the first EPOCH record.
 *     A value the record does not have is left empty; a name that is not a column is not
 *     written to the CSV (it is still in the JSONL and TensorBoard). Non-finite values are
 *     written as nan, inf, -inf (what pandas, numpy and spreadsheet programs read).
 *   <run_dir>/tb/events.out.tfevents.*  TensorBoard scalars tagged "<kind>/<name>"
 *     ("step/loss", "epoch/val_acc1", "eval/acc1"), all against the global step.
 *
 * Numbers are written exactly: a value that is a float32 value with the fewest digits that
 * read back as that float (0.4321f -> 0.4321), any other double with the fewest of 15-17
 * digits that read back as that double.
 *
 * Names are 1-64 characters from [A-Za-z0-9_.-/] and none of kind, epoch, step, time, so
 * they need no quoting in JSON or CSV.
 *
 * Resume: a run resumed from a checkpoint taken at global step S opens with resume_step = S.
 * Lines of metrics.jsonl and rows of epochs.csv whose step is > S (written by the crashed run
 * after its last checkpoint) are dropped, and so are lines cut short by a crash (no final
 * newline, or unreadable); the files are rewritten through a temporary file and rename, so
 * an interruption leaves the old or the new file, never a mix. When the CSV columns of the
 * resumed run differ from the file's header, the file is rewritten with the union of both
 * (the new run's columns first, then the old ones it lacks), old rows keeping their values.
 * A new TensorBoard file is started and begins with a SessionLog START event at step S + 1,
 * which makes TensorBoard drop the old files' points at steps > S. resume_step < 0 starts a
 * fresh run: metrics.jsonl and epochs.csv are emptied, and the START event at step 0 hides
 * the curves of any earlier events files in tb/.
 *
 * Writes are flushed after every record (JSONL, CSV) or every couple of seconds and at
 * every EPOCH/EVAL record (TensorBoard). A failed write (disk full, ...) returns VN_ERR_IO
 * with the file named in the message; the other sinks are still written, and the next call
 * tries again (a TensorBoard writer stops after its first failure, see vn_tbwriter.h). */
#ifndef VN_METRICS_H
#define VN_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_metrics_kind {
    VN_METRICS_STEP = 0,  /* training steps (every N steps) */
    VN_METRICS_EPOCH = 1, /* one per epoch: train and eval summaries; the CSV rows */
    VN_METRICS_EVAL = 2   /* evaluations outside the epoch summary */
} vn_metrics_kind;

/* "step", "epoch", "eval" (the JSONL "kind" and the TensorBoard tag prefix). */
const char *vn_metrics_kind_name(vn_metrics_kind kind);

#define VN_METRICS_NAME_MAX 64

typedef struct vn_metrics_opts {
    /* Scalar columns of epochs.csv after epoch,step,time; NULL: the names of the first EPOCH
     * record. */
    const char *const *csv_columns;
    int n_csv_columns;
    bool no_tensorboard; /* true: no tb/ directory */
    /* Wall-clock source in seconds since the Unix epoch (tests); NULL: the real clock. */
    double (*clock)(void *user);
    void *clock_user;
    /* true: every EPOCH and EVAL record of fewer than 64 names also carries peak_rss_mb, the
     * process's peak resident set size so far in MiB (getrusage), unless the caller gives
     * that name itself. */
    bool process_stats;
    /* With a resume: the epoch in progress at the checkpoint. EPOCH and EVAL records of that
     * epoch or later are dropped too, even at the checkpoint's step (an evaluation the resume
     * runs again must not be listed twice). 0 with resume_epoch_set false: not used. */
    bool resume_epoch_set;
    int64_t resume_epoch;
} vn_metrics_opts;

typedef struct vn_metrics vn_metrics;

/* Creates run_dir if missing and opens the sinks as described above. opts may be NULL. */
int vn_metrics_open(const char *run_dir, int64_t resume_step, const vn_metrics_opts *opts,
                    vn_metrics **out, vn_error *err);

/* Logs names[i] = values[i] (i < n) to every sink. n may be 0. Invalid names return
 * VN_ERR_INVALID before anything is written. */
int vn_metrics_log(vn_metrics *m, vn_metrics_kind kind, int64_t epoch, int64_t step,
                   const char *const *names, const double *values, int n, vn_error *err);

int vn_metrics_flush(vn_metrics *m, vn_error *err);
/* Flushes, closes and frees (always frees). NULL is a no-op. */
int vn_metrics_close(vn_metrics *m, vn_error *err);

/* The events file of this run, NULL when TensorBoard output is off. */
const char *vn_metrics_tb_path(const vn_metrics *m);

/* Writes v as described above into buf (at least 32 bytes); non-finite values as "nan",
 * "inf", "-inf". Returns buf. */
char *vn_metrics_format_number(char *buf, size_t cap, double v);

/* The sum and count of a STEP record value (key) over the records of one epoch in
 * run_dir/metrics.jsonl, in file order, each value as strtod reads its text (what
 * vn_metrics_as_logged gives when it is logged):
 * a run resumed in the middle of an epoch recovers that epoch's running train loss. A missing
 * file gives 0 and 0. */
int vn_metrics_sum_steps(const char *run_dir, int64_t epoch, const char *key, double *sum,
                         int64_t *n);
/* v as a reader of metrics.jsonl gets it back (the logged text read with strtod): an epoch's
 * mean of step values summed from these equals one summed again from the file on resume. */
double vn_metrics_as_logged(double v);

#ifdef __cplusplus
}
#endif
#endif
