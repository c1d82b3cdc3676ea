/* Op benchmark: the machine's ceilings (OpenBLAS sgemm, memcpy) and the hot ops of
 * VanillaNet measured against them.
 *
 *   bench_ops [reps]      (default 5 timed repetitions after one warm-up; median reported)
 *
 * Compute-bound ops are reported in GFLOPS and as a fraction of the measured sgemm rate;
 * memory-bound ops in GB/s of the bytes they must read and write at least, and as a
 * fraction of memcpy bandwidth (counted the same way: bytes read + bytes written).
 * Backward figures time the op's own backward kernel (the tape entry's function), called
 * on a gradient of the output, so that seeding the gradient is not counted. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ops_impl.h"

#define MB (1024.0 * 1024.0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, int64_t n, float scale)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = scale * ((float)(s >> 40) / (float)(1u << 24) - 0.5f);
    }
}

static float *alloc_floats(int64_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)n * sizeof(float)) != 0) {
        fprintf(stderr, "bench_ops: out of memory for %lld floats\n", (long long)n);
        exit(1);
    }
    fill(p, n, 1.0f);
    return p;
}

/* ---- ceilings ---------------------------------------------------------------------------- */

static double bench_sgemm(int reps, int m, int n, int k)
{
    float *a = alloc_floats((int64_t)m * k), *b = alloc_floats((int64_t)n * k);
    float *c = alloc_floats((int64_t)m * n);
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c,
                    n);
        if (r >= 0) t[r] = now_s() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / median(t, reps) / 1e9;
}

static double bench_memcpy(int reps)
{
    size_t bytes = (size_t)256 << 20;
    float *a = alloc_floats((int64_t)(bytes / 4)), *b = alloc_floats((int64_t)(bytes / 4));
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
        /* Split across the threads, as our loops are. */
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            size_t chunk = (bytes / (size_t)nt) & ~(size_t)63;
            size_t off = (size_t)id * chunk, len = id == nt - 1 ? bytes - off : chunk;
            memcpy((char *)b + off, (const char *)a + off, len);
        }
        if (r >= 0) t[r] = now_s() - t0;
    }
    free(a);
    free(b);
    return 2.0 * (double)bytes / median(t, reps) / 1e9;
}

/* ---- op timing ----------------------------------------------------------------------------- */

typedef vn_tensor *(*op_fn)(vn_ctx *ctx, vn_tensor *const *in, void *user);

typedef struct op_times {
    double fwd, bwd; /* median seconds; bwd < 0 when it failed */
} op_times;

/* Times the forward (grad mode off) and the backward kernel of the tape entry recorded by a
 * forward with grad on. in[0] is copied into a step tensor that requires grad each time, as
 * an activation would be, so its gradient buffer is fresh as in a real step. */
static op_times time_op(int reps, vn_ctx *ctx, op_fn fn, vn_tensor *const *in, int n_in,
                        void *user, const char *name)
{
    op_times res = {-1, -1};
    double tf[64], tb[64];
    vn_tensor *args[8];
    for (int r = -1; r < reps; r++) {
        vn_ctx_reset(ctx);
        vn_ctx_set_grad(ctx, false);
        double t0 = now_s();
        vn_tensor *y = fn(ctx, in, user);
        double t1 = now_s();
        vn_ctx_set_grad(ctx, true);
        if (!y) {
            fprintf(stderr, "%s: forward failed: %s\n", name, vn_ctx_error(ctx));
            return res;
        }
        if (r >= 0) tf[r] = t1 - t0;

        vn_ctx_reset(ctx);
        vn_tensor *x = vn_ctx_tensor(ctx, in[0]->ndim, in[0]->shape);
        if (!x) return res;
        memcpy(x->data, in[0]->data, (size_t)x->numel * sizeof(float));
        x->flags |= VN_TENSOR_REQUIRES_GRAD;
        args[0] = x;
        for (int i = 1; i < n_in; i++) args[i] = in[i];
        y = fn(ctx, args, user);
        if (!y || !y->node) {
            fprintf(stderr, "%s: forward with grad failed: %s\n", name, vn_ctx_error(ctx));
            return res;
        }
        bool fresh;
        float *g = vn__grad_uninit(ctx, y, &fresh);
        if (!g) return res;
        fill(g, y->numel, 1.0f);
        t0 = now_s();
        y->node->backward(ctx, y->node);
        t1 = now_s();
        if (vn_ctx_status(ctx) != VN_OK) {
            fprintf(stderr, "%s: backward failed: %s\n", name, vn_ctx_error(ctx));
            return res;
        }
        if (r >= 0) tb[r] = t1 - t0;
    }
    vn_ctx_reset(ctx);
    res.fwd = median(tf, reps);
    res.bwd = median(tb, reps);
    return res;
}

typedef struct conv_args {
    vn_conv_params p;
} conv_args;

static vn_tensor *run_conv(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const conv_args *a = user;
    return vn_conv2d(ctx, in[0], in[1], in[2], a->p);
}

static vn_tensor *run_bn(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    return vn_batch_norm2d(ctx, in[0], in[1], in[2], in[3], in[4], NULL, true, 0.1f, 1e-6f);
}

static vn_tensor *param(int64_t d0, int64_t d1, int64_t d2, int64_t d3, int ndim, float scale)
{
    int64_t s[4] = {d0, d1, d2, d3};
    vn_tensor *t = vn_tensor_new(ndim, s, true);
    if (!t) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    fill(t->data, t->numel, scale);
    if (vn_tensor_zero_grad(t) != VN_OK) exit(1);
    return t;
}

static void bench_conv1x1(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t cin, int64_t cout,
                          double sgemm_peak)
{
    vn_tensor *x = param(n, hw, hw, cin, 4, 2.0f);
    vn_tensor *w = param(cout, 1, 1, cin, 4, 0.1f);
    vn_tensor *b = param(cout, 0, 0, 0, 1, 0.1f);
    vn_tensor *in[3] = {x, w, b};
    conv_args a = {VN_CONV(1, 0, 1)};
    char name[128];
    snprintf(name, sizeof name, "conv1x1 [%lld,%lld,%lld,%lld]->%lld", (long long)n,
             (long long)hw, (long long)hw, (long long)cin, (long long)cout);
    op_times t = time_op(reps, ctx, run_conv, in, 3, &a, name);
    double flops = 2.0 * (double)(n * hw * hw) * (double)cin * (double)cout;
    if (t.fwd > 0)
        printf("%-44s forward  %8.2f ms %7.1f GFLOPS  %5.1f%% of sgemm\n", name, 1e3 * t.fwd,
               flops / t.fwd / 1e9, 100.0 * flops / t.fwd / 1e9 / sgemm_peak);
    if (t.bwd > 0)
        printf("%-44s backward %8.2f ms %7.1f GFLOPS  %5.1f%% of sgemm (dx, dw, db)\n", name,
               1e3 * t.bwd, 2 * flops / t.bwd / 1e9, 100.0 * 2 * flops / t.bwd / 1e9 / sgemm_peak);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}

static void report_bw(const char *name, const char *dir, double sec, double bytes, double memcpy_bw,
                      const char *what)
{
    if (sec <= 0) return;
    printf("%-44s %-8s %8.2f ms %7.2f GB/s   %5.1f%% of memcpy (%s)\n", name, dir, 1e3 * sec,
           bytes / sec / 1e9, 100.0 * bytes / sec / 1e9 / memcpy_bw, what);
}

static void bench_depthwise(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t c, int k,
                            double memcpy_bw)
{
    vn_tensor *x = param(n, hw, hw, c, 4, 2.0f);
    vn_tensor *w = param(c, k, k, 1, 4, 0.1f);
    vn_tensor *in[3] = {x, w, NULL};
    conv_args a = {VN_CONV(1, k / 2, (int)c)};
    char name[128];
    snprintf(name, sizeof name, "depthwise %dx%d [%lld,%lld,%lld,%lld]", k, k, (long long)n,
             (long long)hw, (long long)hw, (long long)c);
    op_times t = time_op(reps, ctx, run_conv, in, 3, &a, name);
    double act = (double)x->numel * sizeof(float);
    report_bw(name, "forward", t.fwd, 2 * act, memcpy_bw, "read x, write y");
    report_bw(name, "backward", t.bwd, 3 * act, memcpy_bw, "read dy and x, write dx");
    double macs = (double)x->numel * k * k;
    if (t.fwd > 0)
        printf("%-44s forward  %7.1f GFLOPS; backward %7.1f GFLOPS (dx and dw)\n", name,
               2 * macs / t.fwd / 1e9, 4 * macs / t.bwd / 1e9);
    vn_tensor_free(x);
    vn_tensor_free(w);
}

static void bench_batch_norm(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t c,
                             double memcpy_bw)
{
    vn_tensor *x = param(n, hw, hw, c, 4, 2.0f);
    vn_tensor *gamma = param(c, 0, 0, 0, 1, 1.0f);
    vn_tensor *beta = param(c, 0, 0, 0, 1, 1.0f);
    int64_t cs[1] = {c};
    vn_tensor *rm = vn_tensor_new(1, cs, false), *rv = vn_tensor_new(1, cs, false);
    vn_tensor_fill(rv, 1.0f);
    vn_tensor *in[5] = {x, gamma, beta, rm, rv};
    char name[128];
    snprintf(name, sizeof name, "batch_norm2d train [%lld,%lld,%lld,%lld]", (long long)n,
             (long long)hw, (long long)hw, (long long)c);
    op_times t = time_op(reps, ctx, run_bn, in, 5, NULL, name);
    double act = (double)x->numel * sizeof(float);
    report_bw(name, "forward", t.fwd, 2 * act, memcpy_bw, "read x, write y");
    report_bw(name, "backward", t.bwd, 3 * act, memcpy_bw, "read dy and x, write dx");
    vn_tensor_free(x);
    vn_tensor_free(gamma);
    vn_tensor_free(beta);
    vn_tensor_free(rm);
    vn_tensor_free(rv);
}

static bool want(int argc, char **argv, const char *section)
{
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] >= '0' && argv[i][0] <= '9') continue;
        any = true;
        if (!strcmp(argv[i], section)) return true;
    }
    return !any;
}

int main(int argc, char **argv)
{
    int reps = 5;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] >= '0' && argv[i][0] <= '9') reps = atoi(argv[i]);
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_ops [reps 1..64] [ceil] [conv1x1] [depthwise] [bn]\n");
        return 2;
    }
    vn_set_threads(0);
    printf("bench_ops: %d threads, median of %d runs after one warm-up\n", vn_get_threads(), reps);

    double peak = bench_sgemm(reps, 4096, 1024, 1024);
    printf("%-44s %7.1f GFLOPS\n", "sgemm 4096x1024x1024 (NT)", peak);
    double peak_1x1 = bench_sgemm(reps, 8 * 56 * 56, 1024, 512);
    printf("%-44s %7.1f GFLOPS\n", "sgemm 25088x1024x512 (NT, 1x1 conv shape)", peak_1x1);
    double bw = bench_memcpy(reps);
    printf("%-44s %7.2f GB/s (bytes read + written, 256 MB buffers)\n", "memcpy", bw);
    /* The ratio below is against the larger of the two sgemm rates. */
    double sg = peak > peak_1x1 ? peak : peak_1x1;

    vn_ctx *ctx = vn_ctx_create();
    if (!ctx) return 1;
    if (want(argc, argv, "conv1x1")) {
        bench_conv1x1(reps, ctx, 8, 56, 512, 1024, sg);
        bench_conv1x1(reps, ctx, 128, 8, 64, 128, sg);
        vn_ctx_trim(ctx);
    }
    if (want(argc, argv, "depthwise")) {
        bench_depthwise(reps, ctx, 8, 56, 512, 7, bw);
        vn_ctx_trim(ctx);
    }
    /* BatchNorm2d is written in autograd/ops_norm.c. */
    if (want(argc, argv, "bn")) bench_batch_norm(reps, ctx, 8, 56, 512, bw);
    vn_ctx_destroy(ctx);
    return 0;
}
