/* The update kernels of SGD, AdamW and LAMB.
 *
 * Each kernel repeats PyTorch's float32 operation order for the reference implementation
 * (torch 1.13 _single_tensor_sgd / _single_tensor_adamw, timm 0.6.12 Lamb.step): products
 * with python scalars use the scalar rounded to float, `a.add_(b, alpha=s)` is fmaf(s, b, a)
 * (ATen's vectorised add is a fused multiply-add), `addcmul` is a + (s * b) * c and `addcdiv`
 * a + (s * b) / c. Norms are accumulated in double in a fixed chunk order (optim_impl.h).
 * Large tensors are split into chunks processed by OpenMP threads; every element's update is
 * independent, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "optim/optim_impl.h"
#include "optim/vn_grad.h"

static void chunk_bounds(int c, int64_t chunk, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = (int64_t)c * chunk;
    *hi = n - *lo < chunk ? n : *lo + chunk;
}

/* What vn__for_chunks hands to a chunk function: the parameter and its optimizer's scalars
 * (sgd_args or adamw_args). */
typedef struct chunk_args {
    vn__optim_param *prm;
    const void *a;
} chunk_args;

/* ---------------------------------------------------------------------------------- SGD */

typedef vn__sgd_args sgd_args;

static void sgd_range(float *restrict p, const float *restrict g, float *restrict buf,
                      const sgd_args *args, int64_t lo, int64_t hi)
{
    const sgd_args a = *args;
    for (int64_t i = lo; i < hi; i++) {
        float d = g[i];
        if (a.has_wd) d = fmaf(a.wd, p[i], d);
        if (a.has_momentum) {
            /* torch clones d_p into a fresh buffer on the first step. */
            float b = a.first ? d : fmaf(a.damp1, d, buf[i] * a.momentum);
            buf[i] = b;
            d = a.nesterov ? fmaf(a.momentum, b, d) : b;
        }
        p[i] = fmaf(a.neg_lr, d, p[i]);
    }
}

static void sgd_chunk(void *arg, int64_t lo, int64_t hi)
{
    const chunk_args *ca = arg;
    vn__optim_param *prm = ca->prm;
    sgd_range(prm->t->data, prm->t->grad, prm->buf0, ca->a, lo, hi);
}

vn__sgd_args vn__sgd_args_of(const vn_optim *opt, const vn__optim_param *prm)
{
    const vn_optim_config *c = &opt->cfg;
    double wd = prm->decay ? opt->weight_decay : 0.0;
    double lr = vn__param_lr(opt, prm);
    return (vn__sgd_args){
        .wd = (float)wd, .momentum = (float)c->momentum, .damp1 = (float)(1.0 - c->dampening),
        .neg_lr = (float)(-lr), .has_wd = wd != 0.0, .has_momentum = c->momentum != 0.0,
        .nesterov = c->nesterov, .first = opt->step == 1,
    };
}

static void sgd_param(vn_optim *opt, vn__optim_param *prm)
{
    sgd_args a = vn__sgd_args_of(opt, prm);
    chunk_args ca = {prm, &a};
    vn__for_chunks(prm->t->numel, sgd_chunk, &ca);
}

/* -------------------------------------------------------------------------------- AdamW */

typedef vn__adamw_args adamw_args;

static void adamw_range(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, const adamw_args *args, int64_t lo, int64_t hi)
{
    const adamw_args a = *args;
    for (int64_t i = lo; i < hi; i++) {
        float gi = g[i];
        float pi = p[i] * a.decay_mul;
        float mi = fmaf(a.c1, gi, m[i] * a.beta1);
        float vi = v[i] * a.beta2 + (a.c2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
        p[i] = pi + (a.neg_step * mi) / denom;
    }
}

static void adamw_chunk(void *arg, int64_t lo, int64_t hi)
{
    const chunk_args *ca = arg;
    vn__optim_param *prm = ca->prm;
    adamw_range(prm->t->data, prm->t->grad, prm->buf0, prm->buf1, ca->a, lo, hi);
}

vn__adamw_args vn__adamw_args_of(const vn_optim *opt, const vn__optim_param *prm)
{
    const vn_optim_config *c = &opt->cfg;
    double wd = prm->decay ? opt->weight_decay : 0.0;
    double lr = vn__param_lr(opt, prm);
    double step = (double)opt->step;
    double bc1 = 1.0 - pow(c->beta1, step);
    double bc2 = 1.0 - pow(c->beta2, step);
    return (vn__adamw_args){
        .decay_mul = (float)(1.0 - lr * wd), .beta1 = (float)c->beta1,
        .c1 = (float)(1.0 - c->beta1), .beta2 = (float)c->beta2, .c2 = (float)(1.0 - c->beta2),
        .bc2_sqrt = (float)sqrt(bc2), .eps = (float)c->eps, .neg_step = (float)(-(lr / bc1)),
    };
}

static void adamw_param(vn_optim *opt, vn__optim_param *prm)
{
    adamw_args a = vn__adamw_args_of(opt, prm);
    chunk_args ca = {prm, &a};
    vn__for_chunks(prm->t->numel, adamw_chunk, &ca);
}

/* --------------------------------------------------------------------------------- LAMB */

typedef vn__lamb_args lamb_args;

/* The update direction of one element from the new moments (timm: (m / bc1) / denom, plus
 * wd * p where weight decay applies). Used twice per element when the trust ratio needs the
 * update's norm first; both uses give bit-identical results. */
static inline float lamb_update(float m, float v, float p, const lamb_args *a)
{
    float denom = sqrtf(v) / a->bc2_sqrt + a->eps;
    float u = (m / a->bc1) / denom;
    if (a->has_wd) u = fmaf(a->wd, p, u);
    return u;
}

/* New moments of [lo, hi); when wsq is given, also sum(p^2) and sum(update^2) of the range
 * in double, in the same pass so the moments are read once. Updates go through a small block
 * in L1 and are summed by vn__sumsq_seq, whose order is fixed by the C source (not by the
 * vector width, alignment or thread count), so a resumed run reproduces the same norms. */
#define LAMB_BLOCK 512

static void lamb_moments_range(const float *restrict p, const float *restrict g,
                               float *restrict m, float *restrict v, const lamb_args *args,
                               int64_t lo, int64_t hi, double *wsq, double *usq)
{
    const lamb_args a = *args;
    if (!wsq) {
        for (int64_t i = lo; i < hi; i++) {
            float gi = g[i] / a.clip;
            m[i] = fmaf(a.beta3, gi, m[i] * a.beta1);
            v[i] = v[i] * a.beta2 + (a.c2 * gi) * gi;
        }
        return;
    }
    float ub[LAMB_BLOCK];
    double sw = 0.0, su = 0.0;
    for (int64_t b = lo; b < hi; b += LAMB_BLOCK) {
        int64_t len = hi - b < LAMB_BLOCK ? hi - b : LAMB_BLOCK;
        for (int64_t j = 0; j < len; j++) {
            int64_t i = b + j;
            float gi = g[i] / a.clip;
            float mi = fmaf(a.beta3, gi, m[i] * a.beta1);
            float vi = v[i] * a.beta2 + (a.c2 * gi) * gi;
            m[i] = mi;
            v[i] = vi;
            ub[j] = lamb_update(mi, vi, p[i], &a);
        }
        sw += vn__sumsq_seq(p + b, len);
        su += vn__sumsq_seq(ub, len);
    }
    *wsq = sw;
    *usq = su;
}

static void lamb_apply_range(float *restrict p, const float *restrict m,
                             const float *restrict v, const lamb_args *args, float trust,
                             bool use_trust, int64_t lo, int64_t hi)
{
    const lamb_args a = *args;
    for (int64_t i = lo; i < hi; i++) {
        float u = lamb_update(m[i], v[i], p[i], &a);
        if (use_trust) u *= trust;
        p[i] = fmaf(a.neg_lr, u, p[i]);
    }
}

vn__lamb_args vn__lamb_args_of(const vn_optim *opt, const vn__optim_param *prm, float clip)
{
    const vn_optim_config *c = &opt->cfg;
    double wd = prm->decay ? opt->weight_decay : 0.0;
    double lr = vn__param_lr(opt, prm);
    double bc1 = 1.0, bc2 = 1.0;
    if (c->bias_correction) {
        bc1 = 1.0 - pow(c->beta1, (double)opt->step);
        bc2 = 1.0 - pow(c->beta2, (double)opt->step);
    }
    return (vn__lamb_args){
        .clip = clip, .beta1 = (float)c->beta1,
        .beta3 = c->grad_averaging ? (float)(1.0 - c->beta1) : 1.0f, .beta2 = (float)c->beta2,
        .c2 = (float)(1.0 - c->beta2), .bc1 = (float)bc1, .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)c->eps, .wd = (float)wd, .neg_lr = (float)(-lr), .has_wd = wd != 0.0,
    };
}

bool vn__lamb_uses_trust(const vn_optim *opt, const vn__lamb_args *a)
{
    return a->has_wd || opt->cfg.always_adapt;
}

float vn__lamb_trust(const vn_optim_config *cfg, double wsq, double usq)
{
    float trust = 1.0f;
    float w_norm = (float)sqrt(wsq), u_norm = (float)sqrt(usq);
    if (w_norm > 0.0f && u_norm > 0.0f) trust = w_norm / u_norm;
    if (cfg->trust_clip && trust > 1.0f) trust = 1.0f;
    return trust;
}

static void lamb_param(vn_optim *opt, vn__optim_param *prm, float clip)
{
    lamb_args a = vn__lamb_args_of(opt, prm, clip);
    bool use_trust = vn__lamb_uses_trust(opt, &a);
    int64_t n = prm->t->numel;
    float *p = prm->t->data;
    int nchunks;
    int64_t chunk;
    vn__chunking(n, &nchunks, &chunk);
    double wpart[VN__MAX_CHUNKS], upart[VN__MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int k = 0; k < nchunks; k++) {
        int64_t lo, hi;
        chunk_bounds(k, chunk, n, &lo, &hi);
        lamb_moments_range(p, prm->t->grad, prm->buf0, prm->buf1, &a, lo, hi,
                           use_trust ? &wpart[k] : NULL, use_trust ? &upart[k] : NULL);
    }
    float trust = 1.0f;
    if (use_trust) {
        double wsq = 0.0, usq = 0.0;
        for (int k = 0; k < nchunks; k++) {
            wsq += wpart[k];
            usq += upart[k];
        }
        trust = vn__lamb_trust(&opt->cfg, wsq, usq);
    }
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (int k = 0; k < nchunks; k++) {
        int64_t lo, hi;
        chunk_bounds(k, chunk, n, &lo, &hi);
        lamb_apply_range(p, prm->buf0, prm->buf1, &a, trust, use_trust, lo, hi);
    }
}

/* ----------------------------------------------------------------------------- dispatch */

int vn_optim_step(vn_optim *opt, vn_error *err)
{
    if (opt->n > 0 && opt->p[0].t->device != VN_DEVICE_CPU) {
        const vn__backend *b = vn__backend_of(opt->p[0].t->device);
        if (!b)
            return vn_error_set(err, VN_ERR_UNSUPPORTED, "optimizer step: parameters on %s "
                                "without its backend", vn_device_name(opt->p[0].t->device));
        return b->optim_step(opt, err);
    }
    return vn__optim_step_cpu(opt, err);
}

int vn__optim_step_cpu(vn_optim *opt, vn_error *err)
{
    for (int i = 0; i < opt->n; i++)
        if (!opt->p[i].t->grad)
            return vn_error_set(err, VN_ERR_STATE,
                                "optimizer step: parameter '%s' has no gradient buffer "
                                "(run backward or vn_optim_zero_grad first)", opt->p[i].name);
    /* The global gradient norm, in parameter order: LAMB clips with it, and a non-finite
     * value stops the step before anything changes. */
    double sumsq = 0.0;
    int first_bad = -1;
    for (int i = 0; i < opt->n; i++) {
        double s = vn_sumsq_f32(opt->p[i].t->grad, opt->p[i].t->numel);
        if (!isfinite(s) && first_bad < 0) first_bad = i;
        sumsq += s;
    }
    double norm = sqrt(sumsq);
    if (!isfinite(norm)) {
        opt->last_grad_norm = norm;
        if (first_bad >= 0)
            return vn_error_set(err, VN_ERR_NUMERIC,
                                "optimizer step skipped: gradient of '%s' is not finite",
                                opt->p[first_bad].name);
        return vn_error_set(err, VN_ERR_NUMERIC,
                            "optimizer step skipped: gradient norm overflows");
    }
    opt->last_grad_norm = norm;
    opt->step++;
    switch (opt->cfg.kind) {
    case VN_OPTIM_SGD:
        for (int i = 0; i < opt->n; i++) sgd_param(opt, &opt->p[i]);
        break;
    case VN_OPTIM_ADAMW:
        for (int i = 0; i < opt->n; i++) adamw_param(opt, &opt->p[i]);
        break;
    case VN_OPTIM_LAMB: {
        /* timm 0.6.12: clip = global_norm / max_grad_norm where the norm exceeds it, in
         * float32; each gradient is divided by it. */
        float clip = 1.0f;
        double max_norm = opt->cfg.max_grad_norm;
        if (max_norm > 0.0 && (float)norm > (float)max_norm)
            clip = (float)norm / (float)max_norm;
        for (int i = 0; i < opt->n; i++) lamb_param(opt, &opt->p[i], clip);
        break;
    }
    }
    return VN_OK;
}

int vn_optim_zero_grad(vn_optim *opt)
{
    int rc = VN_OK;
    for (int i = 0; i < opt->n; i++) {
        vn_tensor *t = opt->p[i].t;
        if (t->grad && t->device == VN_DEVICE_CPU) memset(t->grad, 0, (size_t)t->numel * sizeof(float));
        else if (vn_tensor_zero_grad(t) != VN_OK) rc = VN_ERR_NOMEM;
    }
    return rc;
}
