/* Optimizer steps and EMA for parameters on a CUDA device: the updates of optim_step.c as
 * fused kernels (autograd/cuda/optim_kernels.cu) with the same scalars (vn__*_args_of, the
 * same trust ratio), the global gradient norm and LAMB's per-parameter norms as fixed-order
 * sums. The moments live on the device (dev_moments); the state functions see a host copy
 * that is downloaded when asked for and uploaded again before the next step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_impl.h"
#include "autograd/cuda/optim_kernels.h"
#include "optim/optim_impl.h"

static double sum_parts(const double *h)
{
    double s = 0.0;
    for (int k = 0; k < VN__OPT_PARTS; k++) s += h[k];
    return s;
}

/* The partial sums of every parameter (2 x VN__OPT_PARTS doubles each), allocated once. */
static int parts_ready(vn_optim *opt, vn_error *err)
{
    size_t bytes = (size_t)(opt->n > 0 ? opt->n : 1) * 2 * VN__OPT_PARTS * sizeof(double);
    if (opt->parts_for < opt->n) { /* parameters were added since */
        if (opt->dev_parts) (void)cudaFree(opt->dev_parts);
        free(opt->host_parts);
        opt->dev_parts = opt->host_parts = NULL;
    }
    opt->parts_for = opt->n;
    if (!opt->host_parts && !(opt->host_parts = malloc(bytes)))
        return vn_error_set(err, VN_ERR_NOMEM, "optimizer step: out of memory");
    if (!opt->dev_parts && cudaMalloc((void **)&opt->dev_parts, bytes) != cudaSuccess) {
        opt->dev_parts = NULL;
        return vn_error_set(err, VN_ERR_NOMEM, "optimizer step: no device memory for %zu "
                            "bytes of partial sums", bytes);
    }
    return VN_OK;
}

static double *dev_parts_of(const vn_optim *opt, int i, int which)
{
    return opt->dev_parts + ((size_t)i * 2 + (size_t)which) * VN__OPT_PARTS;
}

static const double *host_parts_of(const vn_optim *opt, int i, int which)
{
    return opt->host_parts + ((size_t)i * 2 + (size_t)which) * VN__OPT_PARTS;
}

/* Brings the partial sums of every parameter to the host once the queued kernels ran. 0 or a
 * CUDA error. */
static int fetch_parts(vn_optim *opt, vn__cuda *c)
{
    size_t bytes = (size_t)opt->n * 2 * VN__OPT_PARTS * sizeof(double);
    if (cudaMemcpyAsync(opt->host_parts, opt->dev_parts, bytes, cudaMemcpyDeviceToHost,
                        c->stream) != cudaSuccess ||
        cudaStreamSynchronize(c->stream) != cudaSuccess) {
        int ce = (int)cudaGetLastError();
        return ce ? ce : (int)cudaErrorUnknown;
    }
    return 0;
}

static int upload_moments(vn_optim *opt, vn_error *err)
{
    size_t bytes = opt->n_moment_floats * sizeof(float);
    if (bytes == 0) return VN_OK;
    if (!opt->dev_moments) {
        if (cudaMalloc((void **)&opt->dev_moments, bytes) != cudaSuccess) {
            opt->dev_moments = NULL;
            return vn_error_set(err, VN_ERR_NOMEM, "optimizer: no device memory for %zu bytes "
                                "of moments", bytes);
        }
        opt->dev_stale = true;
    }
    /* On the backend's stream (non-blocking: a plain cudaMemcpy is not ordered with it), and
     * finished before the step's kernels read them: the backend's own copy. */
    if (opt->dev_stale && vn__cuda_copy(opt->dev_moments, opt->moments, bytes) != VN_OK)
        return vn_error_set(err, VN_ERR_IO, "optimizer: copying the moments to the device failed");
    opt->dev_stale = false;
    return VN_OK;
}

void vn__optim_moments_to_host(vn_optim *opt)
{
    vn__cuda *c = vn__cuda_get(NULL, 0);
    if (!c || !opt->dev_moments) return;
    (void)cudaStreamSynchronize(c->stream);
    (void)cudaMemcpy(opt->moments, opt->dev_moments, opt->n_moment_floats * sizeof(float),
                     cudaMemcpyDeviceToHost);
    opt->dev_stale = true;
}

void vn__optim_free_cuda(vn_optim *opt)
{
    if (opt->dev_moments) (void)cudaFree(opt->dev_moments);
    if (opt->dev_parts) (void)cudaFree(opt->dev_parts);
    free(opt->host_parts);
    opt->dev_moments = NULL;
    opt->dev_parts = opt->host_parts = NULL;
    opt->parts_for = 0;
}

/* The device copy of a host moment buffer. */
static float *dev_buf(const vn_optim *opt, const float *host)
{
    return host ? opt->dev_moments + (host - opt->moments) : NULL;
}

static int sgd(vn_optim *opt, vn__cuda *c, vn__optim_param *prm)
{
    vn__sgd_args a = vn__sgd_args_of(opt, prm);
    return vn__ok_sgd(c->stream, prm->t->data, prm->t->grad, dev_buf(opt, prm->buf0), &a,
                      prm->t->numel);
}

static int adamw(vn_optim *opt, vn__cuda *c, vn__optim_param *prm)
{
    vn__adamw_args a = vn__adamw_args_of(opt, prm);
    return vn__ok_adamw(c->stream, prm->t->data, prm->t->grad, dev_buf(opt, prm->buf0),
                        dev_buf(opt, prm->buf1), &a, prm->t->numel);
}

/* LAMB in two rounds over the parameters: the moments (and, with the trust ratio, the
 * partial norms of the weights and updates) of all of them, one wait, then every update with
 * its trust ratio. The moments of one parameter never read another's, so this is the
 * arithmetic of one parameter at a time. */
static int lamb_all(vn_optim *opt, vn__cuda *c, float clip)
{
    for (int i = 0; i < opt->n; i++) {
        vn__optim_param *prm = &opt->p[i];
        vn__lamb_args a = vn__lamb_args_of(opt, prm, clip);
        bool trust = vn__lamb_uses_trust(opt, &a);
        int e = vn__ok_lamb_moments(c->stream, prm->t->data, prm->t->grad, dev_buf(opt, prm->buf0),
                                    dev_buf(opt, prm->buf1), &a, prm->t->numel,
                                    trust ? dev_parts_of(opt, i, 0) : NULL,
                                    trust ? dev_parts_of(opt, i, 1) : NULL);
        if (e) return e;
    }
    int e = fetch_parts(opt, c);
    for (int i = 0; i < opt->n && !e; i++) {
        vn__optim_param *prm = &opt->p[i];
        vn__lamb_args a = vn__lamb_args_of(opt, prm, clip);
        bool use_trust = vn__lamb_uses_trust(opt, &a);
        float trust = use_trust ? vn__lamb_trust(&opt->cfg, sum_parts(host_parts_of(opt, i, 0)),
                                                 sum_parts(host_parts_of(opt, i, 1)))
                                : 1.0f;
        e = vn__ok_lamb_apply(c->stream, prm->t->data, dev_buf(opt, prm->buf0),
                              dev_buf(opt, prm->buf1), &a, trust, use_trust, prm->t->numel);
    }
    return e;
}

/* The global gradient norm in parameter order (every parameter's partial sums queued, one
 * wait); VN_ERR_NUMERIC (nothing changed) when it is not finite, as on the CPU. */
static int grad_norm(vn_optim *opt, vn__cuda *c, double *norm, vn_error *err)
{
    for (int i = 0; i < opt->n; i++) {
        if (!opt->p[i].t->grad)
            return vn_error_set(err, VN_ERR_STATE, "optimizer step: parameter '%s' has no "
                                "gradient buffer (run backward or vn_optim_zero_grad first)",
                                opt->p[i].name);
        if (vn__ok_sumsq(c->stream, dev_parts_of(opt, i, 0), opt->p[i].t->grad,
                         opt->p[i].t->numel) != 0)
            return vn_error_set(err, VN_ERR_IO, "optimizer step: the gradient norm kernel "
                                "failed: %s", cudaGetErrorString(cudaGetLastError()));
    }
    int e = fetch_parts(opt, c);
    if (e)
        return vn_error_set(err, VN_ERR_IO, "optimizer step: reading the gradient norm failed: "
                            "%s", cudaGetErrorString((cudaError_t)e));
    double sumsq = 0.0;
    int first_bad = -1;
    for (int i = 0; i < opt->n; i++) {
        double s = sum_parts(host_parts_of(opt, i, 0));
        if (!isfinite(s) && first_bad < 0) first_bad = i;
        sumsq += s;
    }
    *norm = sqrt(sumsq);
    opt->last_grad_norm = *norm;
    if (isfinite(*norm)) return VN_OK;
    if (first_bad >= 0)
        return vn_error_set(err, VN_ERR_NUMERIC, "optimizer step skipped: gradient of '%s' is "
                            "not finite", opt->p[first_bad].name);
    return vn_error_set(err, VN_ERR_NUMERIC, "optimizer step skipped: gradient norm overflows");
}

int vn__optim_step_cuda(vn_optim *opt, vn_error *err)
{
    char why[160];
    vn__cuda *c = vn__cuda_get(why, sizeof why);
    if (!c) return vn_error_set(err, VN_ERR_UNSUPPORTED, "optimizer step: %s", why);
    double norm = 0.0;
    int rc = parts_ready(opt, err);
    if (rc == VN_OK) rc = grad_norm(opt, c, &norm, err);
    if (rc == VN_OK) rc = upload_moments(opt, err);
    if (rc != VN_OK) return rc;
    opt->step++;
    float clip = 1.0f;
    double max_norm = opt->cfg.max_grad_norm;
    if (opt->cfg.kind == VN_OPTIM_LAMB && max_norm > 0.0 && (float)norm > (float)max_norm)
        clip = (float)norm / (float)max_norm;
    int e = 0;
    if (opt->cfg.kind == VN_OPTIM_LAMB) e = lamb_all(opt, c, clip);
    for (int i = 0; i < opt->n && !e && opt->cfg.kind != VN_OPTIM_LAMB; i++) {
        vn__optim_param *prm = &opt->p[i];
        e = opt->cfg.kind == VN_OPTIM_SGD ? sgd(opt, c, prm) : adamw(opt, c, prm);
    }
    if (!e && cudaStreamSynchronize(c->stream) != cudaSuccess) e = (int)cudaGetLastError();
    if (e)
        return vn_error_set(err, VN_ERR_IO, "optimizer step on the device: %s",
                            cudaGetErrorString((cudaError_t)e));
    return VN_OK;
}

int vn__ema_blend_cuda(float *e, const float *x, int64_t n, float d, float c)
{
    vn__cuda *cu = vn__cuda_get(NULL, 0);
    return cu ? vn__ok_ema(cu->stream, e, x, n, d, c) : VN_ERR_UNSUPPORTED;
}
