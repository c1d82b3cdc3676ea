/* Gradient norms and clipping (see vn_grad.h). */
#include "optim/vn_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_impl.h"

double vn__sumsq_seq(const float *x, int64_t n)
{
    /* Eight independent accumulators in a fixed pattern: vectorisable, and the order of
     * additions depends only on n. */
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) {
            double v = (double)x[i + k];
            acc[k] += v * v;
        }
    }
    double tail = 0.0;
    for (; i < n; i++) {
        double v = (double)x[i];
        tail += v * v;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) +
           tail;
}

typedef struct {
    const float *x;
    int64_t n, chunk;
    double *part;
} sumsq_job;

static void sumsq_chunks(void *arg, int64_t c0, int64_t c1, int tid)
{
    (void)tid;
    const sumsq_job *J = arg;
    for (int64_t c = c0; c < c1; c++) {
        int64_t lo, hi;
        vn_chunk_range(c, J->n, J->chunk, &lo, &hi);
        J->part[c] = vn__sumsq_seq(J->x + lo, hi - lo);
    }
}

double vn_sumsq_f32(const float *x, int64_t n)
{
    int nchunks;
    int64_t chunk;
    vn__chunking(n, &nchunks, &chunk);
    if (nchunks == 1) return vn__sumsq_seq(x, n);
    double part[VN__MAX_CHUNKS];
    sumsq_job J = {x, n, chunk, part};
    vn_par_for(nchunks, true, sumsq_chunks, &J);
    double s = 0.0;
    for (int c = 0; c < nchunks; c++) s += part[c];
    return s;
}

double vn_norm_f32(const float *x, int64_t n) { return sqrt(vn_sumsq_f32(x, n)); }

/* Gradients on a device are read into host memory (one buffer for the largest), where the
 * same chunked sums and scaling as on the CPU run: the same bytes whichever device holds them.
 * A read that cannot be made gives NaN (the step is then skipped or stops the run). */
static float *grad_staging(vn_tensor *const *params, int n, bool *any /* may be NULL */)
{
    int64_t most = 0;
    for (int i = 0; i < n; i++)
        if (params[i] && params[i]->grad && params[i]->device != VN_DEVICE_CPU &&
            params[i]->numel > most)
            most = params[i]->numel;
    if (any) *any = most > 0;
    return most ? malloc((size_t)most * sizeof(float)) : NULL;
}

static const float *host_grad(const vn_tensor *t, float *staging)
{
    if (t->device == VN_DEVICE_CPU) return t->grad;
    return staging && vn_tensor_read_grad(t, staging) == VN_OK ? staging : NULL;
}

double vn_grad_norm(vn_tensor *const *params, int n)
{
    float *staging = grad_staging(params, n, NULL); /* NULL: a device read gives NaN */
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        if (!params[i] || !params[i]->grad) continue;
        const float *g = host_grad(params[i], staging);
        s += g ? vn_sumsq_f32(g, params[i]->numel) : NAN;
    }
    free(staging);
    return sqrt(s);
}

typedef struct {
    vn__range_fn fn;
    void *arg;
    int64_t n, chunk;
} chunks_job;

static void run_chunks(void *arg, int64_t k0, int64_t k1, int tid)
{
    (void)tid;
    const chunks_job *J = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t lo, hi;
        vn_chunk_range(k, J->n, J->chunk, &lo, &hi);
        J->fn(J->arg, lo, hi);
    }
}

void vn__for_chunks(int64_t n, vn__range_fn fn, void *arg)
{
    int nchunks;
    int64_t chunk;
    vn__chunking(n, &nchunks, &chunk);
    chunks_job J = {fn, arg, n, chunk};
    vn_par_for(nchunks, nchunks > 1, run_chunks, &J);
}

typedef struct scale_args {
    float *x;
    float s;
} scale_args;

static void scale_range(void *arg, int64_t lo, int64_t hi)
{
    const scale_args *a = arg;
    float *x = a->x;
    const float s = a->s;
    for (int64_t i = lo; i < hi; i++) x[i] *= s;
}

static void scale_f32(float *x, int64_t n, float s)
{
    scale_args a = {x, s};
    vn__for_chunks(n, scale_range, &a);
}

double vn_clip_grad_norm(vn_tensor *const *params, int n, double max_norm)
{
    double total = vn_grad_norm(params, n);
    if (!isfinite(total)) return total;
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32. */
    float coef = (float)max_norm / ((float)total + 1e-6f);
    if (!(coef < 1.0f)) return total;
    bool dev;
    float *staging = grad_staging(params, n, &dev);
    if (dev && !staging) return NAN;
    for (int i = 0; i < n; i++) {
        if (!params[i] || !params[i]->grad) continue;
        if (params[i]->device == VN_DEVICE_CPU) {
            scale_f32(params[i]->grad, params[i]->numel, coef);
            continue;
        }
        /* Device gradients: read, scale on the host, write back. */
        if (vn_tensor_read_grad(params[i], staging) != VN_OK) total = NAN;
        scale_f32(staging, params[i]->numel, coef);
        if (isfinite(total) && vn_tensor_write_grad(params[i], staging) != VN_OK) total = NAN;
    }
    free(staging);
    return total;
}
