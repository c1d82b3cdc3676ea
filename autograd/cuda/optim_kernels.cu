// Fused optimizer and EMA kernels (optim/optim_cuda.c calls them). Each element's update
// repeats the float32 operation order of the CPU kernels in optim/optim_step.c, with fmaf
// where they use fmaf and no other contraction (nvcc --fmad=false), so that one step on
// either device gives the same values up to the libm differences of sqrtf. Sums of squares
// are per-block partials in double over a fixed grid, summed in order on the host.
#include "autograd/cuda/optim_kernels.h"

#include <cuda_runtime.h>

#define OT 256

__device__ static double block_sum_d(double v)
{
    __shared__ double sh[OT];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = OT / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

#define LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)blockDim.x * gridDim.x)

__global__ void sumsq_parts(double *part, const float *x, int64_t n)
{
    double s = 0.0;
    LOOP(i, n) s += (double)x[i] * (double)x[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sgd_k(float *p, const float *g, float *buf, vn__sgd_args a, int64_t n)
{
    LOOP(i, n)
    {
        float d = g[i];
        if (a.has_wd) d = __fmaf_rn(a.wd, p[i], d);
        if (a.has_momentum) {
            float b = a.first ? d : __fmaf_rn(a.damp1, d, buf[i] * a.momentum);
            buf[i] = b;
            d = a.nesterov ? __fmaf_rn(a.momentum, b, d) : b;
        }
        p[i] = __fmaf_rn(a.neg_lr, d, p[i]);
    }
}

__global__ void adamw_k(float *p, const float *g, float *m, float *v, vn__adamw_args a, int64_t n)
{
    LOOP(i, n)
    {
        float gi = g[i];
        float pi = p[i] * a.decay_mul;
        float mi = __fmaf_rn(a.c1, gi, m[i] * a.beta1);
        float vi = v[i] * a.beta2 + (a.c2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / a.bc2_sqrt + a.eps;
        p[i] = pi + (a.neg_step * mi) / denom;
    }
}

__device__ static inline float lamb_update(float m, float v, float p, const vn__lamb_args &a)
{
    float denom = sqrtf(v) / a.bc2_sqrt + a.eps;
    float u = (m / a.bc1) / denom;
    if (a.has_wd) u = __fmaf_rn(a.wd, p, u);
    return u;
}

__global__ void lamb_moments_k(const float *p, const float *g, float *m, float *v,
                               vn__lamb_args a, int64_t n, double *wpart, double *upart)
{
    double sw = 0.0, su = 0.0;
    LOOP(i, n)
    {
        float gi = g[i] / a.clip;
        float mi = __fmaf_rn(a.beta3, gi, m[i] * a.beta1);
        float vi = v[i] * a.beta2 + (a.c2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        if (wpart) {
            float u = lamb_update(mi, vi, p[i], a);
            sw += (double)p[i] * (double)p[i];
            su += (double)u * (double)u;
        }
    }
    if (!wpart) return;
    sw = block_sum_d(sw);
    su = block_sum_d(su);
    if (threadIdx.x == 0) {
        wpart[blockIdx.x] = sw;
        upart[blockIdx.x] = su;
    }
}

__global__ void lamb_apply_k(float *p, const float *m, const float *v, vn__lamb_args a,
                             float trust, bool use_trust, int64_t n)
{
    LOOP(i, n)
    {
        float u = lamb_update(m[i], v[i], p[i], a);
        if (use_trust) u *= trust;
        p[i] = __fmaf_rn(a.neg_lr, u, p[i]);
    }
}

__global__ void ema_k(float *e, const float *x, int64_t n, float d, float c)
{
    LOOP(i, n) e[i] = e[i] * d + c * x[i];
}

static unsigned blocks(int64_t n)
{
    int64_t b = (n + OT - 1) / OT;
    return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}

extern "C" {

int vn__ok_sumsq(vn__stream s, double *part, const float *x, int64_t n)
{
    sumsq_parts<<<VN__OPT_PARTS, OT, 0, s>>>(part, x, n);
    return (int)cudaGetLastError();
}

int vn__ok_sgd(vn__stream s, float *p, const float *g, float *buf, const vn__sgd_args *a,
               int64_t n)
{
    sgd_k<<<blocks(n), OT, 0, s>>>(p, g, buf, *a, n);
    return (int)cudaGetLastError();
}

int vn__ok_adamw(vn__stream s, float *p, const float *g, float *m, float *v,
                 const vn__adamw_args *a, int64_t n)
{
    adamw_k<<<blocks(n), OT, 0, s>>>(p, g, m, v, *a, n);
    return (int)cudaGetLastError();
}

int vn__ok_lamb_moments(vn__stream s, const float *p, const float *g, float *m, float *v,
                        const vn__lamb_args *a, int64_t n, double *wpart, double *upart)
{
    lamb_moments_k<<<wpart ? VN__OPT_PARTS : blocks(n), OT, 0, s>>>(p, g, m, v, *a, n, wpart,
                                                                   upart);
    return (int)cudaGetLastError();
}

int vn__ok_lamb_apply(vn__stream s, float *p, const float *m, const float *v,
                      const vn__lamb_args *a, float trust, bool use_trust, int64_t n)
{
    lamb_apply_k<<<blocks(n), OT, 0, s>>>(p, m, v, *a, trust, use_trust, n);
    return (int)cudaGetLastError();
}

int vn__ok_ema(vn__stream s, float *e, const float *x, int64_t n, float d, float c)
{
    ema_k<<<blocks(n), OT, 0, s>>>(e, x, n, d, c);
    return (int)cudaGetLastError();
}

} // extern "C"
