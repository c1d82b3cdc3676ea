/* Op benchmark: the machine's ceilings (OpenBLAS sgemm, memcpy) and the hot ops of
 * VanillaNet measured against them.
 *
 *   bench_ops [reps] [ceil] [gemm] [conv1x1] [conv3x3] [depthwise] [bn] [par]
 *
 * reps (default 5) timed runs after one warm-up; medians are reported. Naming sections runs
 * only those. Compute-bound ops are reported in GFLOPS and memory-bound ops in GB/s of the
 * bytes they must at least read and write (memcpy counted the same way: read + written).
 *
 * The machine may be shared, so each op is compared with a baseline timed in alternation
 * with it, rep by rep: sgemm of the op's own shape for a 1x1 conv, a memcpy of one
 * activation for memory-bound ops. The ratios printed are against those baselines; the
 * ceilings printed first are for reference.
 *
 * Backward figures time the op's own backward kernel (the tape entry's function) on a
 * gradient of the output, so that seeding the gradient is not counted; the input is a step
 * tensor that requires grad, as an activation is, so its gradient buffer is fresh.
 *
 * par: what one parallel loop costs beyond its work, an OpenMP region (with the waiting policy
 * vn_runtime_setup chose) against the library's vn_par_for, each loop a few microseconds of
 * work followed by a few microseconds of serial work, as in a training step. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/vn_base.h"
#include "base/vn_parallel.h"
#include "autograd/vn_ops.h"
#include "autograd/vn_testing.h"
#include "layers/vn_layers.h"

#define MAX_REPS 64

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

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
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

/* ---- baselines ---------------------------------------------------------------------------- */

typedef struct sgemm_job {
    int m, n, k;
    float *a, *b, *c;
} sgemm_job;

static sgemm_job sgemm_job_new(int m, int n, int k)
{
    sgemm_job j = {m, n, k, alloc_floats((int64_t)m * k), alloc_floats((int64_t)n * k),
                   alloc_floats((int64_t)m * n)};
    return j;
}

static void sgemm_job_free(sgemm_job *j)
{
    free(j->a);
    free(j->b);
    free(j->c);
}

/* C[m, n] = A[m, k] * B[n, k]^T, as a 1x1 conv forward calls it. Returns seconds. */
static double sgemm_run(void *arg)
{
    sgemm_job *j = arg;
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->m, j->n, j->k, 1.0f, j->a, j->k,
                j->b, j->k, 0.0f, j->c, j->n);
    return now_s() - t0;
}

typedef struct copy_job {
    size_t bytes;
    char *src, *dst;
} copy_job;

static copy_job copy_job_new(size_t bytes)
{
    copy_job j = {bytes, (char *)alloc_floats((int64_t)(bytes / 4)),
                  (char *)alloc_floats((int64_t)(bytes / 4))};
    return j;
}

static void copy_job_free(copy_job *j)
{
    free(j->src);
    free(j->dst);
}

/* memcpy split across the threads, as our loops are. Returns seconds. */
static double copy_run(void *arg)
{
    copy_job *j = arg;
    double t0 = now_s();
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        size_t chunk = (j->bytes / (size_t)nt) & ~(size_t)63;
        size_t off = (size_t)id * chunk, len = id == nt - 1 ? j->bytes - off : chunk;
        memcpy(j->dst + off, j->src + off, len);
    }
    return now_s() - t0;
}

typedef double (*run_fn)(void *arg);

static double median_of(int reps, run_fn fn, void *arg)
{
    double t[MAX_REPS];
    fn(arg);
    for (int r = 0; r < reps; r++) t[r] = fn(arg);
    return median(t, reps);
}

/* ---- op timing ------------------------------------------------------------------------------ */

typedef vn_tensor *(*op_fn)(vn_ctx *ctx, vn_tensor *const *in, void *user);

typedef struct op_times {
    double fwd, bwd;          /* median seconds; < 0 when the op failed */
    double base_fwd, base_bwd; /* median seconds of the baseline next to each */
} op_times;

/* Times the forward (grad mode off) and the backward kernel of the tape entry recorded by a
 * forward with grad on, each right after a run of the baseline. */
static op_times time_op(int reps, vn_ctx *ctx, op_fn fn, vn_tensor *const *in, int n_in,
                        void *user, run_fn base, void *base_arg, const char *name)
{
    op_times res = {-1, -1, -1, -1};
    double tf[MAX_REPS], tb[MAX_REPS], bf[MAX_REPS], bb[MAX_REPS];
    vn_tensor *args[8];
    for (int r = -1; r < reps; r++) {
        double b0 = base(base_arg);
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
        if (r >= 0) {
            tf[r] = t1 - t0;
            bf[r] = b0;
        }

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
        float *g = vn_testing_grad(ctx, y);
        if (!g) return res;
        fill(g, y->numel, 1.0f);
        double b1 = base(base_arg);
        t0 = now_s();
        vn_testing_node_backward(ctx, y);
        t1 = now_s();
        if (vn_ctx_status(ctx) != VN_OK) {
            fprintf(stderr, "%s: backward failed: %s\n", name, vn_ctx_error(ctx));
            return res;
        }
        if (r >= 0) {
            tb[r] = t1 - t0;
            bb[r] = b1;
        }
    }
    vn_ctx_reset(ctx);
    res.fwd = median(tf, reps);
    res.bwd = median(tb, reps);
    res.base_fwd = median(bf, reps);
    res.base_bwd = median(bb, reps);
    return res;
}

static vn_tensor *run_conv(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    return vn_conv2d(ctx, in[0], in[1], in[2], *(const vn_conv_params *)user);
}

static vn_tensor *run_bn(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    return vn_batch_norm2d(ctx, in[0], in[1], in[2], in[3], in[4], NULL, true, 0.1f,
                           VN_VANILLANET_BN_EPS);
}

static vn_tensor *param(int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, float scale)
{
    int64_t s[4] = {d0, d1, d2, d3};
    vn_tensor *t = vn_tensor_new(ndim, s, true);
    if (!t || vn_tensor_zero_grad(t) != VN_OK) {
        fprintf(stderr, "bench_ops: out of memory\n");
        exit(1);
    }
    fill(t->data, t->numel, scale);
    return t;
}

/* A k x k convolution (stride s, padding k / 2, groups 1) against sgemm of its im2col
 * product's shape. */
static void bench_conv(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t cin, int64_t cout,
                       int k, int s)
{
    vn_tensor *x = param(4, n, hw, hw, cin, 2.0f);
    vn_tensor *w = param(4, cout, k, k, cin, 0.1f);
    vn_tensor *b = param(1, cout, 0, 0, 0, 0.1f);
    vn_tensor *in[3] = {x, w, b};
    vn_conv_params a = VN_CONV(s, k / 2, 1);
    char name[128];
    snprintf(name, sizeof name, "conv%dx%d/%d [%lld,%lld,%lld,%lld]->%lld", k, k, s, (long long)n,
             (long long)hw, (long long)hw, (long long)cin, (long long)cout);
    int64_t ho = (hw + 2 * (k / 2) - k) / s + 1, m = n * ho * ho, kk = (int64_t)k * k * cin;
    sgemm_job job = sgemm_job_new((int)m, (int)cout, (int)kk);
    op_times t = time_op(reps, ctx, run_conv, in, 3, &a, sgemm_run, &job, name);
    sgemm_job_free(&job);
    double flops = 2.0 * (double)m * (double)kk * (double)cout;
    if (t.fwd > 0) {
        double rate = flops / t.fwd / 1e9, base = flops / t.base_fwd / 1e9;
        printf("%-40s forward  %8.2f ms %7.1f GFLOPS = %5.1f%% of sgemm %dx%dx%d next to it "
               "(%.1f GFLOPS)\n", name, 1e3 * t.fwd, rate, 100 * rate / base, (int)m, (int)cout,
               (int)kk, base);
    }
    if (t.bwd > 0) {
        double rate = 2 * flops / t.bwd / 1e9, base = flops / t.base_bwd / 1e9;
        printf("%-40s backward %8.2f ms %7.1f GFLOPS = %5.1f%% of sgemm %dx%dx%d next to it "
               "(%.1f GFLOPS; dx, dw and db)\n", name, 1e3 * t.bwd, rate, 100 * rate / base,
               (int)m, (int)cout, (int)kk, base);
    }
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}

static void report_bw(const char *name, const char *dir, double sec, double base_sec,
                      double bytes, double act_bytes, const char *what)
{
    if (sec <= 0) return;
    double rate = bytes / sec / 1e9, base = 2 * act_bytes / base_sec / 1e9;
    printf("%-40s %-8s %8.2f ms %7.2f GB/s = %5.1f%% of memcpy next to it (%.2f GB/s); %s\n",
           name, dir, 1e3 * sec, rate, 100 * rate / base, base, what);
}

static void bench_depthwise(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t c, int k)
{
    vn_tensor *x = param(4, n, hw, hw, c, 2.0f);
    vn_tensor *w = param(4, c, k, k, 1, 0.1f);
    vn_tensor *in[3] = {x, w, NULL};
    vn_conv_params a = VN_CONV(1, k / 2, (int)c);
    char name[128];
    snprintf(name, sizeof name, "depthwise %dx%d [%lld,%lld,%lld,%lld]", k, k, (long long)n,
             (long long)hw, (long long)hw, (long long)c);
    double act = (double)x->numel * sizeof(float);
    copy_job job = copy_job_new((size_t)act);
    op_times t = time_op(reps, ctx, run_conv, in, 3, &a, copy_run, &job, name);
    copy_job_free(&job);
    report_bw(name, "forward", t.fwd, t.base_fwd, 2 * act, act, "read x, write y");
    report_bw(name, "backward", t.bwd, t.base_bwd, 3 * act, act,
              "read dy and x, write dx (and dw)");
    double macs = (double)x->numel * k * k;
    if (t.fwd > 0 && t.bwd > 0)
        printf("%-40s forward  %7.1f GFLOPS; backward %7.1f GFLOPS (dx and dw)\n", name,
               2 * macs / t.fwd / 1e9, 4 * macs / t.bwd / 1e9);
    vn_tensor_free(x);
    vn_tensor_free(w);
}

static void bench_batch_norm(int reps, vn_ctx *ctx, int64_t n, int64_t hw, int64_t c)
{
    vn_tensor *x = param(4, n, hw, hw, c, 2.0f);
    vn_tensor *gamma = param(1, c, 0, 0, 0, 1.0f);
    vn_tensor *beta = param(1, c, 0, 0, 0, 1.0f);
    int64_t cs[1] = {c};
    vn_tensor *rm = vn_tensor_new(1, cs, false), *rv = vn_tensor_new(1, cs, false);
    if (!rm || !rv) exit(1);
    vn_tensor_fill(rv, 1.0f);
    vn_tensor *in[5] = {x, gamma, beta, rm, rv};
    char name[128];
    snprintf(name, sizeof name, "batch_norm2d train [%lld,%lld,%lld,%lld]", (long long)n,
             (long long)hw, (long long)hw, (long long)c);
    double act = (double)x->numel * sizeof(float);
    copy_job job = copy_job_new((size_t)act);
    op_times t = time_op(reps, ctx, run_bn, in, 5, NULL, copy_run, &job, name);
    copy_job_free(&job);
    report_bw(name, "forward", t.fwd, t.base_fwd, 2 * act, act, "read x, write y");
    report_bw(name, "backward", t.bwd, t.base_bwd, 3 * act, act, "read dy and x, write dx");
    vn_tensor_free(x);
    vn_tensor_free(gamma);
    vn_tensor_free(beta);
    vn_tensor_free(rm);
    vn_tensor_free(rv);
}

/* ---- gemm: the 1x1 convs' products, ours (autograd/ops_gemm.c) against OpenBLAS ------------ */

typedef struct gemm_job {
    vn__gemm_args g;
    int kind; /* 0 forward x w^T + bias, 1 input gradient dy w, 2 weight gradient dy^T x */
    vn_ctx *ctx;
} gemm_job;

static double gemm_blas_run(void *arg)
{
    gemm_job *j = arg;
    const vn__gemm_args *g = &j->g;
    int m = (int)g->m, n = (int)g->n, k = (int)g->k;
    double t0 = now_s();
    if (j->kind == 0) { /* as ops_conv.c did: the bias rows, then beta 1 */
        for (int i = 0; i < m; i++) memcpy(g->c + (size_t)i * n, g->bias, (size_t)n * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, g->a, k, g->b, k,
                    1.0f, g->c, n);
    } else if (j->kind == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, g->a, k, g->b, n,
                    0.0f, g->c, n);
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1.0f, g->a, m, g->b, n,
                    0.0f, g->c, n);
    }
    return now_s() - t0;
}

static double gemm_ours_run(void *arg)
{
    gemm_job *j = arg;
    double t0 = now_s();
    if (!vn__gemm(j->ctx, &j->g)) return -1.0;
    return now_s() - t0;
}

/* Alternates OpenBLAS and ours rep by rep (a shared machine drifts) and prints both, their
 * ratio and which one the default choice (vn__gemm_prefers) takes. */
static void bench_gemm_shape(int reps, vn_ctx *ctx, int kind, int64_t m, int64_t n, int64_t k,
                             const char *what)
{
    float *a = alloc_floats(m * k), *b = alloc_floats(n * k), *c = alloc_floats(m * n);
    float *bias = alloc_floats(n);
    gemm_job j = {.kind = kind, .ctx = ctx,
                  .g = {.m = m, .n = n, .k = k, .a = a, .b = b, .c = c, .ldc = n, .bias = bias}};
    if (kind == 0) {
        j.g.a_row = k, j.g.a_col = 1, j.g.ldb = k, j.g.b_trans = true;
        j.g.init = VN__GEMM_BIAS;
    } else if (kind == 1) {
        j.g.a_row = k, j.g.a_col = 1, j.g.ldb = n, j.g.init = VN__GEMM_ZERO;
    } else {
        j.g.a_row = 1, j.g.a_col = m, j.g.ldb = n, j.g.init = VN__GEMM_ZERO;
    }
    double tb[MAX_REPS], to[MAX_REPS], ts[MAX_REPS], th[MAX_REPS];
    gemm_blas_run(&j);
    bool ok = gemm_ours_run(&j) >= 0;
    for (int r = 0; ok && r < reps; r++) {
        tb[r] = gemm_blas_run(&j);
        to[r] = gemm_ours_run(&j);
        /* ours in each of the two summation orders (OpenBLAS's SkylakeX and Haswell ones) */
        vn__gemm_set_order(0);
        ts[r] = gemm_ours_run(&j);
        vn__gemm_set_order(1);
        th[r] = gemm_ours_run(&j);
        vn__gemm_set_order(-1);
    }
    static const char *kinds[] = {"fwd", "dx", "dw"};
    double f = 2.0 * (double)m * (double)n * (double)k;
    if (!ok) {
        printf("%-22s %-3s %6lld %5lld %5lld  (left to OpenBLAS: %.0f multiply-adds or fewer)\n",
               what, kinds[kind], (long long)m, (long long)n, (long long)k, VN__GEMM_MIN_MACS);
    } else {
        double mb = median(tb, reps), mo = median(to, reps);
        double ms = median(ts, reps), mh = median(th, reps);
        printf("%-22s %-3s %6lld %5lld %5lld  OpenBLAS %7.3f ms %6.1f GF/s  ours %7.3f ms %6.1f "
               "GF/s  %5.2fx  default: %-8s  ours in SkylakeX / Haswell order %7.3f / %7.3f ms "
               "(%.2fx)\n", what, kinds[kind], (long long)m, (long long)n, (long long)k,
               mb * 1e3, f / mb * 1e-9, mo * 1e3, f / mo * 1e-9, mb / mo,
               vn__gemm_prefers(&j.g) ? "ours" : "OpenBLAS", ms * 1e3, mh * 1e3, mh / ms);
    }
    free(a), free(b), free(c), free(bias);
}

static void bench_gemm(int reps, vn_ctx *ctx)
{
    if (!vn__gemm_compiled()) {
        printf("gemm: this build has no AVX-512 kernels (every product goes to OpenBLAS)\n");
        return;
    }
    vn__gemm_set_mode(2);
    printf("gemm: the products of the 1x1 and patchify convs (m x n x k; dw: n x k over m "
           "rows), OpenBLAS %s kernels; ours in the order it sums in (%s), and in each of the "
           "two orders\n", vn_blas_core(), vn__gemm_order() ? "Haswell" : "SkylakeX");
    /* The Fashion-MNIST model, batch 128 at 28 px (rows 6272 at 7x7, 1152 at 3x3); the
     * weight gradients in the 2,048-row chunks ops_conv.c splits them into. */
    static const struct { int kind; int64_t m, n, k; const char *what; } shapes[] = {
        {0, 6272, 64, 16, "fmnist stem1 (patch)"}, {0, 6272, 64, 64, "fmnist stem2/s0.c1"},
        {0, 6272, 128, 64, "fmnist s0.conv2"}, {0, 6272, 128, 128, "fmnist s1.conv1"},
        {0, 6272, 256, 128, "fmnist s1.conv2"}, {0, 1152, 256, 256, "fmnist s2.conv1"},
        {1, 6272, 16, 64, "fmnist stem1 (patch)"}, {1, 6272, 64, 64, "fmnist stem2/s0.c1"},
        {1, 6272, 64, 128, "fmnist s0.conv2"}, {1, 6272, 128, 128, "fmnist s1.conv1"},
        {1, 6272, 128, 256, "fmnist s1.conv2"}, {1, 1152, 256, 256, "fmnist s2.conv1"},
        {2, 64, 16, 2048, "fmnist stem1 (patch)"}, {2, 64, 64, 2048, "fmnist stem2/s0.c1"},
        {2, 128, 64, 2048, "fmnist s0.conv2"}, {2, 128, 128, 2048, "fmnist s1.conv1"},
        {2, 256, 128, 2048, "fmnist s1.conv2"}, {2, 256, 256, 1152, "fmnist s2.conv1"},
        {0, 25088, 512, 48, "vanillanet_5 stem1"}, {0, 25088, 512, 512, "vanillanet_5 stem2"},
        {0, 25088, 1024, 512, "vanillanet_5 s0.conv2"}, {0, 6272, 1024, 1024, "vanillanet_5 s1.c1"},
        {0, 6272, 2048, 1024, "vanillanet_5 s1.conv2"}, {0, 1568, 2048, 2048, "vanillanet_5 s2.c1"},
        {0, 1568, 4096, 2048, "vanillanet_5 s2.conv2"},
        {1, 25088, 512, 512, "vanillanet_5 stem2"},
        {1, 25088, 512, 1024, "vanillanet_5 s0.conv2"}, {1, 6272, 1024, 1024, "vanillanet_5 s1.c1"},
        {1, 6272, 1024, 2048, "vanillanet_5 s1.conv2"}, {1, 1568, 2048, 2048, "vanillanet_5 s2.c1"},
        {1, 1568, 2048, 4096, "vanillanet_5 s2.conv2"},
        /* weight gradients: 2,048-row chunks where ops_conv.c splits, else one product */
        {2, 512, 48, 2048, "vanillanet_5 stem1"}, {2, 512, 512, 2048, "vanillanet_5 stem2"},
        {2, 1024, 512, 25088, "vanillanet_5 s0.conv2"}, {2, 1024, 1024, 2048, "vanillanet_5 s1.c1"},
        {2, 2048, 1024, 6272, "vanillanet_5 s1.conv2"}, {2, 2048, 2048, 1568, "vanillanet_5 s2.c1"},
        {2, 4096, 2048, 1568, "vanillanet_5 s2.conv2"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        bench_gemm_shape(reps, ctx, shapes[i].kind, shapes[i].m, shapes[i].n, shapes[i].k,
                         shapes[i].what);
    vn__gemm_set_mode(1);
}

/* ---- par: the cost of one parallel loop ----------------------------------------------- */

static volatile double par_sink[64 * 8];

/* About `us` microseconds of arithmetic for item k. */
static void par_work(int64_t k, double us)
{
    double s = 0.0, t0 = now_s();
    while (now_s() - t0 < us * 1e-6) s += 1e-9;
    par_sink[(k % 64) * 8] += s;
}

static void par_items(void *arg, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    for (int64_t k = lo; k < hi; k++) par_work(k, *(const double *)arg);
}

/* Microseconds per loop of `items` items of `us` each, then `gap_us` of serial work. */
static double par_time(bool pool, int loops, int items, double us, double gap_us)
{
    double t0 = now_s();
    for (int i = 0; i < loops; i++) {
        if (pool) {
            vn_par_for(items, true, par_items, &us);
        } else {
#pragma omp parallel for schedule(static)
            for (int k = 0; k < items; k++) par_work(k, us);
        }
        par_work(0, gap_us);
    }
    return (now_s() - t0) / loops * 1e6;
}

static void bench_par(int reps)
{
    const int items = 16;
    const double item_us[] = {0.0, 2.5, 25.0}, gap_us = 5.0;
    const char *wait = getenv("OMP_WAIT_POLICY");
    for (size_t i = 0; i < sizeof item_us / sizeof *item_us; i++) {
        double t_omp[MAX_REPS], t_pool[MAX_REPS];
        for (int r = 0; r < reps; r++) { /* alternated, rep by rep */
            t_omp[r] = par_time(false, 2000, items, item_us[i], gap_us);
            t_pool[r] = par_time(true, 2000, items, item_us[i], gap_us);
        }
        qsort(t_omp, (size_t)reps, sizeof(double), cmp_double);
        qsort(t_pool, (size_t)reps, sizeof(double), cmp_double);
        double serial = items * item_us[i] + gap_us;
        printf("loop of %d x %4.1f us + %.0f us serial (%.0f us on one thread): OpenMP (%s) "
               "%7.1f us, vn_par_for %7.1f us\n",
               items, item_us[i], gap_us, serial, wait ? wait : "libgomp default",
               t_omp[reps / 2], t_pool[reps / 2]);
    }
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
    vn_runtime_setup(argv); /* before any OpenMP or BLAS work; may exec again */
    int reps = 5;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] >= '0' && argv[i][0] <= '9') reps = atoi(argv[i]);
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_ops [reps 1..%d] [ceil] [gemm] [conv1x1] [conv3x3] "
                "[depthwise] [bn] [par]\n",
                MAX_REPS);
        return 2;
    }
    vn_set_threads(0);
    printf("bench_ops: %d threads, median of %d runs after one warm-up\n", vn_get_threads(),
           reps);

    if (want(argc, argv, "ceil")) {
        sgemm_job j = sgemm_job_new(4096, 1024, 1024);
        printf("%-40s          %7.1f GFLOPS\n", "sgemm 4096x1024x1024 (NT)",
               2.0 * 4096 * 1024 * 1024 / median_of(reps, sgemm_run, &j) / 1e9);
        sgemm_job_free(&j);
        j = sgemm_job_new(8 * 56 * 56, 1024, 512);
        printf("%-40s          %7.1f GFLOPS\n", "sgemm 25088x1024x512 (NT, 1x1 shape)",
               2.0 * 25088 * 1024 * 512 / median_of(reps, sgemm_run, &j) / 1e9);
        sgemm_job_free(&j);
        copy_job c = copy_job_new((size_t)256 << 20);
        printf("%-40s          %7.2f GB/s (bytes read + written, 256 MB)\n", "memcpy",
               2.0 * (double)c.bytes / median_of(reps, copy_run, &c) / 1e9);
        copy_job_free(&c);
    }

    vn_ctx *ctx = vn_ctx_create();
    if (!ctx) return 1;
    if (want(argc, argv, "gemm")) {
        bench_gemm(reps, ctx);
        vn_ctx_trim(ctx);
    }
    if (want(argc, argv, "conv1x1")) {
        bench_conv(reps, ctx, 8, 56, 512, 1024, 1, 1);
        bench_conv(reps, ctx, 128, 8, 64, 128, 1, 1);
        vn_ctx_trim(ctx);
    }
    if (want(argc, argv, "conv3x3")) { /* the detector's neck and head, imgsz 128 batch 16 */
        bench_conv(reps, ctx, 16, 16, 64, 64, 3, 1);
        bench_conv(reps, ctx, 16, 16, 64, 64, 3, 2);
        bench_conv(reps, ctx, 16, 8, 128, 64, 3, 1);
        vn_ctx_trim(ctx);
    }
    if (want(argc, argv, "depthwise")) {
        bench_depthwise(reps, ctx, 8, 56, 512, 7);
        vn_ctx_trim(ctx);
    }
    /* BatchNorm2d is written in autograd/ops_norm.c. */
    if (want(argc, argv, "bn")) {
        bench_batch_norm(reps, ctx, 8, 56, 512);
        bench_batch_norm(reps, ctx, 128, 7, 128); /* the Fashion-MNIST model's stage 1 */
    }
    if (want(argc, argv, "par")) bench_par(reps);
    vn_ctx_destroy(ctx);
    return 0;
}
