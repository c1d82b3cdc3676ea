/* Training progress on a terminal or in a log.
 *
 * On a terminal one line is redrawn in place (at most 10 times a second, and always at the
 * last step of an epoch):
 *   epoch 3/10 [=====>              ] 120/468 loss 0.4321 lr 1.2e-03 act 0.30 1234 img/s ETA 01:23
 * On a narrow terminal the bar shrinks (and goes when under 5 characters), then the line
 * is cut, so that it never wraps.
 * Elsewhere (a file, a pipe, a batch job's log) the same fields without the bar go out as
 * one plain line every `every` steps and at the last step of an epoch:
 *   epoch 3/10 120/468 loss 0.4321 lr 1.2e-03 act 0.30 1234 img/s ETA 01:23
 *
 * img/s and the ETA come from smoothed step times (exponential moving average, weight 0.3
 * on the newest measurement, as tqdm does); the ETA is for the rest of the epoch, written
 * mm:ss under an hour and h:mm:ss above, --:-- before the first measurement.
 * Progress is cosmetic: write errors on the stream are ignored. */
#ifndef VN_PROGRESS_H
#define VN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_progress_opts {
    FILE *out;     /* NULL: stdout */
    int every;     /* plain mode: one line per `every` steps; <= 0: 50 */
    int mode;      /* VN_PROGRESS_AUTO (0), VN_PROGRESS_PLAIN or VN_PROGRESS_BAR */
    int bar_width; /* terminal mode: characters between the brackets; <= 0: 25 */
    /* Monotonic clock in seconds (tests); NULL: CLOCK_MONOTONIC. */
    double (*clock)(void *user);
    void *clock_user;
} vn_progress_opts;

/* opts.mode: */
#define VN_PROGRESS_AUTO 0  /* a terminal gets the bar, anything else plain lines */
#define VN_PROGRESS_PLAIN 1
#define VN_PROGRESS_BAR 2

/* What one step reports. */
typedef struct vn_progress_stats {
    double loss;      /* always shown; NaN shows as nan */
    double lr;        /* < 0 or NaN: not shown */
    double act_learn; /* < 0 or NaN: not shown (models without activation learning) */
    int64_t images;   /* images processed since the previous report; 0: no img/s */
} vn_progress_stats;

typedef struct vn_progress vn_progress;

int vn_progress_create(const vn_progress_opts *opts, vn_progress **out, vn_error *err);
/* Ends a bar line still open, then frees. NULL is a no-op. */
void vn_progress_destroy(vn_progress *p);
bool vn_progress_is_tty(const vn_progress *p);

/* epoch and n_epochs are shown as given ("epoch 3/10"); total_steps > 0. */
void vn_progress_begin_epoch(vn_progress *p, int64_t epoch, int64_t n_epochs,
                             int64_t total_steps);
/* done: steps finished in this epoch so far (1..total_steps). May be called every step or
 * less often; the step time is averaged over the steps since the previous call. stats may
 * be NULL (loss nan, nothing else shown). */
void vn_progress_step(vn_progress *p, int64_t done, const vn_progress_stats *stats);
/* Shows the final state of the epoch (when not shown yet) and ends the bar's line. */
void vn_progress_end_epoch(vn_progress *p);
/* Prints one line (a newline is added when missing) without breaking the bar: the bar is
 * cleared, the message printed, the bar drawn again below it. */
void vn_progress_message(vn_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The pure formatting used above, for tests and other front ends. */
typedef struct vn_progress_line {
    int64_t epoch, n_epochs, done, total;
    double loss, lr, act_learn; /* as in vn_progress_stats */
    double images_per_s;        /* <= 0 or NaN: not shown */
    double eta_s;               /* < 0 or NaN: --:-- */
} vn_progress_line;

/* Writes the line (no \r, no newline) into buf; bar_width 0 leaves the bar out. Returns the
 * length it would have (as snprintf); buf holds at most cap - 1 characters. */
int vn_progress_format(char *buf, size_t cap, const vn_progress_line *line, int bar_width);
/* 83 s -> "01:23", 3723 s -> "1:02:03", negative or NaN -> "--:--" (rounded to seconds). */
char *vn_progress_format_time(char *buf, size_t cap, double seconds);

#ifdef __cplusplus
}
#endif
#endif
