/* Per-iteration schedules for the learning rate and the weight decay.
 *
 * Every kind starts with the same optional linear warmup, numpy.linspace(start_warmup_value,
 * base_value, warmup_iters) (both ends included), where warmup_iters = warmup_steps when
 * warmup_steps > 0, else warmup_epochs * niter_per_ep. Then, for the remaining
 * L = epochs * niter_per_ep - warmup_iters iterations, i = it - warmup_iters:
 *   COSINE   final + 0.5 * (base - final) * (1 + cos(pi * i / L))   (official cosine_scheduler;
 *            the last value stays just above final, as there)
 *   STEP     base * step_gamma ^ floor(it / (step_epochs * niter_per_ep)), the epoch counted
 *            from the start of training, warmup included (timm StepLRScheduler; without
 *            warmup this is torch StepLR stepped once per epoch)
 *   CONSTANT base
 * Values are computed on demand in double and equal the official numpy arrays (same formulas
 * and operation order). Iterations past the end keep the last value; negative ones the first.
 *
 * Difference from the official code: it builds the warmup only when warmup_epochs > 0 and
 * then fails its length assertion when warmup_steps is set with warmup_epochs 0; here
 * warmup_steps alone is enough. */
#ifndef VN_SCHEDULE_H
#define VN_SCHEDULE_H

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_sched_kind {
    VN_SCHED_COSINE = 0,
    VN_SCHED_STEP = 1,
    VN_SCHED_CONSTANT = 2
} vn_sched_kind;

typedef struct vn_schedule {
    vn_sched_kind kind;
    double base_value;
    double final_value;        /* COSINE: min_lr (or the weight-decay end value) */
    int64_t epochs;
    int64_t niter_per_ep;      /* optimizer steps per epoch */
    int64_t warmup_epochs;
    int64_t warmup_steps;      /* > 0 overrides warmup_epochs */
    double start_warmup_value; /* 0 in the official trainer */
    int64_t step_epochs;       /* STEP: decay period in epochs */
    double step_gamma;         /* STEP: factor per period */
} vn_schedule;

/* The official cosine_scheduler(base, final, epochs, niter_per_ep, warmup_epochs,
 * start_warmup_value = 0, warmup_steps). The weight-decay schedule is
 * vn_schedule_cosine(&s, wd, wd_end, epochs, niter_per_ep, 0, -1). */
void vn_schedule_cosine(vn_schedule *s, double base_value, double final_value, int64_t epochs,
                        int64_t niter_per_ep, int64_t warmup_epochs, int64_t warmup_steps);
void vn_schedule_step(vn_schedule *s, double base_value, double gamma, int64_t step_epochs,
                      int64_t epochs, int64_t niter_per_ep, int64_t warmup_epochs,
                      int64_t warmup_steps);
void vn_schedule_constant(vn_schedule *s, double base_value, int64_t epochs,
                          int64_t niter_per_ep, int64_t warmup_epochs, int64_t warmup_steps);

/* "cosine", "step", "constant" and back (case-insensitive). */
const char *vn_sched_kind_name(vn_sched_kind kind);
int vn_sched_kind_parse(const char *s, vn_sched_kind *out, vn_error *err);

/* Checks the fields (epochs and niter_per_ep > 0, warmup not longer than training, finite
 * values, step_epochs > 0 for STEP, ...); err names the field. */
int vn_schedule_check(const vn_schedule *s, vn_error *err);

int64_t vn_schedule_total_iters(const vn_schedule *s);
int64_t vn_schedule_warmup_iters(const vn_schedule *s);
/* The value at optimizer iteration it (0-based, counted over the whole run). */
double vn_schedule_value(const vn_schedule *s, int64_t it);

#ifdef __cplusplus
}
#endif
#endif
