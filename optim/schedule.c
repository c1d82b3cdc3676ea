/* Per-iteration schedules (see vn_schedule.h). Values are computed on demand with the same
 * formulas and operation order as the official numpy code, so they match its arrays. */
#include "optim/vn_schedule.h"

#include "optim/optim_impl.h"

#include <math.h>
#include <string.h>

static void fill(vn_schedule *s, vn_sched_kind kind, double base, int64_t epochs, int64_t niter,
                 int64_t warmup_epochs, int64_t warmup_steps)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->base_value = base;
    s->final_value = base;
    s->epochs = epochs;
    s->niter_per_ep = niter;
    s->warmup_epochs = warmup_epochs;
    s->warmup_steps = warmup_steps;
    s->start_warmup_value = 0.0;
    s->step_epochs = 1;
    s->step_gamma = 1.0;
}

void vn_schedule_cosine(vn_schedule *s, double base_value, double final_value, int64_t epochs,
                        int64_t niter_per_ep, int64_t warmup_epochs, int64_t warmup_steps)
{
    fill(s, VN_SCHED_COSINE, base_value, epochs, niter_per_ep, warmup_epochs, warmup_steps);
    s->final_value = final_value;
}

void vn_schedule_step(vn_schedule *s, double base_value, double gamma, int64_t step_epochs,
                      int64_t epochs, int64_t niter_per_ep, int64_t warmup_epochs,
                      int64_t warmup_steps)
{
    fill(s, VN_SCHED_STEP, base_value, epochs, niter_per_ep, warmup_epochs, warmup_steps);
    s->step_gamma = gamma;
    s->step_epochs = step_epochs;
}

void vn_schedule_constant(vn_schedule *s, double base_value, int64_t epochs,
                          int64_t niter_per_ep, int64_t warmup_epochs, int64_t warmup_steps)
{
    fill(s, VN_SCHED_CONSTANT, base_value, epochs, niter_per_ep, warmup_epochs, warmup_steps);
}

static const char *const kind_names[] = {"cosine", "step", "constant"}; /* by vn_sched_kind */
static const vn__enum_names kinds = {kind_names, VN_SCHED_CONSTANT + 1, "schedule",
                                     "cosine, step or constant"};

const char *vn_sched_kind_name(vn_sched_kind kind) { return vn__enum_name(&kinds, (int)kind); }

int vn_sched_kind_parse(const char *str, vn_sched_kind *out, vn_error *err)
{
    int v;
    int rc = vn__enum_parse(&kinds, str, &v, err);
    if (rc == VN_OK) *out = (vn_sched_kind)v;
    return rc;
}

int64_t vn_schedule_total_iters(const vn_schedule *s) { return s->epochs * s->niter_per_ep; }

int64_t vn_schedule_warmup_iters(const vn_schedule *s)
{
    return s->warmup_steps > 0 ? s->warmup_steps : s->warmup_epochs * s->niter_per_ep;
}

int vn_schedule_check(const vn_schedule *s, vn_error *err)
{
    const char *k = vn_sched_kind_name(s->kind);
    if (s->kind != VN_SCHED_COSINE && s->kind != VN_SCHED_STEP && s->kind != VN_SCHED_CONSTANT)
        return vn_error_set(err, VN_ERR_INVALID, "schedule: unknown kind %d", (int)s->kind);
    if (s->epochs <= 0)
        return vn_error_set(err, VN_ERR_INVALID, "%s schedule: epochs must be > 0 (got %lld)", k,
                            (long long)s->epochs);
    if (s->niter_per_ep <= 0)
        return vn_error_set(err, VN_ERR_INVALID,
                            "%s schedule: iterations per epoch must be > 0 (got %lld; is the "
                            "dataset smaller than one batch?)", k, (long long)s->niter_per_ep);
    if (s->epochs > INT64_MAX / s->niter_per_ep)
        return vn_error_set(err, VN_ERR_INVALID, "%s schedule: epochs x iterations overflows", k);
    if (s->warmup_epochs < 0)
        return vn_error_set(err, VN_ERR_INVALID, "%s schedule: warmup_epochs must be >= 0", k);
    if (s->warmup_steps <= 0 && s->warmup_epochs > s->epochs)
        return vn_error_set(err, VN_ERR_INVALID,
                            "%s schedule: warmup_epochs %lld exceeds epochs %lld", k,
                            (long long)s->warmup_epochs, (long long)s->epochs);
    int64_t total = vn_schedule_total_iters(s);
    if (vn_schedule_warmup_iters(s) > total)
        return vn_error_set(err, VN_ERR_INVALID,
                            "%s schedule: warmup of %lld iterations is longer than training "
                            "(%lld iterations)", k, (long long)vn_schedule_warmup_iters(s),
                            (long long)total);
    if (!isfinite(s->base_value) || !isfinite(s->final_value) ||
        !isfinite(s->start_warmup_value))
        return vn_error_set(err, VN_ERR_INVALID, "%s schedule: values must be finite", k);
    if (s->kind == VN_SCHED_STEP) {
        if (s->step_epochs <= 0)
            return vn_error_set(err, VN_ERR_INVALID,
                                "step schedule: step_epochs must be > 0 (got %lld)",
                                (long long)s->step_epochs);
        if (!isfinite(s->step_gamma) || s->step_gamma < 0.0)
            return vn_error_set(err, VN_ERR_INVALID, "step schedule: gamma must be >= 0 (got %g)",
                                s->step_gamma);
    }
    return VN_OK;
}

/* numpy.linspace(start, stop, num)[i], including its special cases. */
static double linspace_at(double start, double stop, int64_t num, int64_t i)
{
    if (num > 1 && i == num - 1) return stop;
    double delta = stop - start;
    double y = (double)i;
    int64_t div = num - 1;
    if (div > 0) {
        double step = delta / (double)div;
        if (step == 0.0) y = y / (double)div * delta;
        else y = y * step;
    } else {
        y = y * delta;
    }
    return y + start;
}

double vn_schedule_value(const vn_schedule *s, int64_t it)
{
    int64_t total = vn_schedule_total_iters(s);
    int64_t warm = vn_schedule_warmup_iters(s);
    if (total <= 0) return s->base_value;
    if (it >= total) it = total - 1;
    if (it < 0) it = 0;
    if (it < warm) return linspace_at(s->start_warmup_value, s->base_value, warm, it);
    switch (s->kind) {
    case VN_SCHED_COSINE: {
        double i = (double)(it - warm), len = (double)(total - warm);
        return s->final_value +
               0.5 * (s->base_value - s->final_value) * (1.0 + cos(M_PI * i / len));
    }
    case VN_SCHED_STEP: {
        int64_t period = s->step_epochs * s->niter_per_ep;
        int64_t k = period > 0 ? it / period : 0;
        return s->base_value * pow(s->step_gamma, (double)k);
    }
    case VN_SCHED_CONSTANT: return s->base_value;
    }
    return s->base_value;
}
