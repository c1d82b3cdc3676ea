/* The CUDA backend against the CPU backend: every op of VN_OP_LIST, forward and backward, on
 * the same inputs. Skips (exit 77) when no CUDA device is visible or the build has no CUDA
 * backend. Runs in strict FP32 (VN_CUDA_STRICT_FP32=1, set by tests/cuda/meson.build):
 * outputs, input gradients and updated buffers (BatchNorm running statistics) must agree
 * within max|got - want| <= 1e-4 * max|want| (vn_test_rel_err), except where stated; without
 * VN_CUDA_STRICT_FP32=1 (TF32), the convolutions and matrix products within 5e-3. */
#include "vn_test.h"

#include "autograd/vn_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_FP32 1e-4
/* Matrix products and convolutions with TF32 tensor cores (the default unless
 * VN_CUDA_STRICT_FP32=1): a 10-bit mantissa (2^-11 relative rounding of each operand). */
#define REL_TF32 5e-3

/* The bound of the cases whose GEMMs or convolutions may use TF32. */
static double rel_mm(void)
{
    const char *e = getenv("VN_CUDA_STRICT_FP32");
    return e && !strcmp(e, "1") ? REL_FP32 : REL_TF32;
}
#define MAX_IN 6

typedef vn_tensor *(*op_fn)(vn_ctx *ctx, vn_tensor *const *in, const void *user);

typedef struct run_result {
    int64_t out_numel;
    float *out;
    float *grad[MAX_IN];
    float *data[MAX_IN];
} run_result;

static void result_free(run_result *r, int n_in)
{
    free(r->out);
    for (int i = 0; i < n_in; i++) {
        free(r->grad[i]);
        free(r->data[i]);
    }
}

/* Runs fn on inputs of one device, seeds backward with seed (when the output is on the
 * tape), and copies the output, the inputs' gradients and the inputs' data back. */
static void run_on(vn_device dev, op_fn fn, const void *user, int n_in, vn_tensor *const *in,
                   uint64_t seed, run_result *r)
{
    vn_ctx *ctx = vn_ctx_create_on(dev);
    ck_assert_ptr_nonnull(ctx);
    vn_rng_seed(vn_ctx_rng(ctx), 7, 0, 0);
    vn_tensor *out = fn(ctx, in, user);
    ck_assert_msg(out, "%s forward: %s", vn_device_name(dev), vn_ctx_error(ctx));
    r->out_numel = out->numel;
    r->out = malloc((size_t)out->numel * sizeof(float));
    ck_assert_int_eq(vn_tensor_read(out, r->out), VN_OK);
    if (out->node) {
        float *s = malloc((size_t)out->numel * sizeof(float));
        vn_test_fill_uniform(s, out->numel, seed, -1.0f, 1.0f);
        ck_assert_msg(vn_backward_with(ctx, out, s) == VN_OK, "%s backward: %s",
                      vn_device_name(dev), vn_ctx_error(ctx));
        free(s);
    }
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) continue;
        r->data[i] = malloc((size_t)in[i]->numel * sizeof(float));
        ck_assert_int_eq(vn_tensor_read(in[i], r->data[i]), VN_OK);
        if (in[i]->grad) {
            r->grad[i] = malloc((size_t)in[i]->numel * sizeof(float));
            ck_assert_int_eq(vn_tensor_read_grad(in[i], r->grad[i]), VN_OK);
        }
    }
    vn_ctx_destroy(ctx);
}

/* A CUDA copy of a CPU model tensor (data, not gradient). */
static vn_tensor *to_cuda(const vn_tensor *t)
{
    if (!t) return NULL;
    vn_tensor *c = vn_tensor_new(t->ndim, t->shape, vn_tensor_requires_grad(t));
    ck_assert_ptr_nonnull(c);
    vn_tensor_copy_data(c, t);
    ck_assert_int_eq(vn_tensor_to_device(c, VN_DEVICE_CUDA), VN_OK);
    ck_assert_int_eq(c->device, VN_DEVICE_CUDA);
    return c;
}

static void expect_close(const char *what, const char *part, int i, const float *got,
                         const float *want, int64_t n, double rel)
{
    double e = vn_test_rel_err(got, want, n);
    printf("  %-28s %-6s %d: rel err %.3g\n", what, part, i, e);
    ck_assert_msg(e <= rel, "%s: %s %d differs: rel err %g > %g", what, part, i, e, rel);
}

/* Runs fn on CPU tensors and on CUDA copies of them and compares everything. */
static void compare(const char *what, op_fn fn, const void *user, int n_in,
                    vn_tensor *const *cpu_in, double rel)
{
    vn_tensor *gpu_in[MAX_IN] = {0};
    for (int i = 0; i < n_in; i++) {
        /* Inputs are reused across cases: start each from zero gradients on both sides. */
        if (cpu_in[i] && cpu_in[i]->grad) ck_assert_int_eq(vn_tensor_zero_grad(cpu_in[i]), VN_OK);
        gpu_in[i] = to_cuda(cpu_in[i]);
    }
    run_result a = {0}, b = {0};
    run_on(VN_DEVICE_CPU, fn, user, n_in, cpu_in, 99, &a);
    run_on(VN_DEVICE_CUDA, fn, user, n_in, gpu_in, 99, &b);
    ck_assert_int_eq(a.out_numel, b.out_numel);
    expect_close(what, "output", 0, b.out, a.out, a.out_numel, rel);
    for (int i = 0; i < n_in; i++) {
        if (!cpu_in[i]) continue;
        ck_assert_msg(!a.grad[i] == !b.grad[i], "%s: input %d has a gradient on one device only",
                      what, i);
        if (a.grad[i]) expect_close(what, "grad", i, b.grad[i], a.grad[i], cpu_in[i]->numel, rel);
        expect_close(what, "data", i, b.data[i], a.data[i], cpu_in[i]->numel, rel);
    }
    result_free(&a, n_in);
    result_free(&b, n_in);
    for (int i = 0; i < n_in; i++) vn_tensor_free(gpu_in[i]);
}

static uint64_t g_seed = 1;

static vn_tensor *rnd(int64_t d0, int64_t d1, int64_t d2, int64_t d3, int ndim, bool grad)
{
    int64_t s[4] = {d0, d1, d2, d3};
    vn_tensor *t = vn_tensor_new(ndim, s, grad);
    ck_assert_ptr_nonnull(t);
    vn_test_fill_uniform(t->data, t->numel, g_seed++, -1.0f, 1.0f);
    return t;
}

static void free_all(int n, vn_tensor **t)
{
    for (int i = 0; i < n; i++) vn_tensor_free(t[i]);
}

/* ---- conv2d ---------------------------------------------------------------------------- */

static vn_tensor *f_conv(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_conv2d(ctx, in[0], in[1], in[2], *(const vn_conv_params *)user);
}

static vn_tensor *f_conv_relu(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_conv2d_relu(ctx, in[0], in[1], in[2], *(const vn_conv_params *)user);
}

static void conv_case_rel(const char *what, int64_t n, int64_t h, int64_t w, int64_t cin,
                          int64_t cout, int k, vn_conv_params p, bool bias, double rel)
{
    vn_tensor *in[3] = {rnd(n, h, w, cin, 4, true), rnd(cout, k, k, cin / p.groups, 4, true),
                        bias ? rnd(cout, 1, 1, 1, 1, true) : NULL};
    compare(what, f_conv, &p, 3, in, rel);
    free_all(3, in);
}

static void conv_case(const char *what, int64_t n, int64_t h, int64_t w, int64_t cin,
                      int64_t cout, int k, vn_conv_params p, bool bias)
{
    conv_case_rel(what, n, h, w, cin, cout, k, p, bias, rel_mm());
}

START_TEST(conv_1x1) { conv_case("conv 1x1", 2, 7, 5, 24, 40, 1, VN_CONV(1, 0, 1), true); }
END_TEST
/* Patchify (a gather and a GEMM on CUDA): sizes that are and are not multiples of the patch. */
START_TEST(conv_patch)
{
    conv_case("conv 4x4/4 stem", 2, 16, 16, 3, 32, 4, VN_CONV(4, 0, 1), true);
    conv_case("conv 4x4/4 stem 18x17", 2, 18, 17, 3, 24, 4, VN_CONV(4, 0, 1), true);
    conv_case("conv 2x2/2 no bias", 1, 6, 8, 5, 7, 2, VN_CONV(2, 0, 1), false);
}
END_TEST
/* Depthwise: dw_kernels.cu for stride 1 and 3, 5, 7, 9 taps (channel counts below, at and
 * above one block of 128), cuDNN for the rest (stride 2). */
START_TEST(conv_dw)
{
    conv_case("conv dw 7x7", 2, 9, 11, 16, 16, 7, VN_CONV(1, 3, 16), true);
    conv_case("conv dw 7x7 c130", 2, 8, 6, 130, 130, 7, VN_CONV(1, 3, 130), true);
    conv_case("conv dw 3x3 no bias", 3, 5, 7, 40, 40, 3, VN_CONV(1, 1, 40), false);
    conv_case("conv dw 5x5 pad 1", 1, 9, 8, 24, 24, 5, VN_CONV(1, 1, 24), true);
    conv_case("conv dw 9x9", 2, 10, 12, 8, 8, 9, VN_CONV(1, 4, 8), true);
    conv_case("conv dw 3x3/2 (cuDNN)", 2, 9, 9, 16, 16, 3, VN_CONV(2, 1, 16), true);
}
END_TEST
/* vn_conv2d_relu: the ReLU on load in dw_kernels.cu, through a scratch for cuDNN (stride 2);
 * the input's gradient through the mask, fresh and accumulated (x read by a second op). */
static vn_tensor *f_conv_relu_shared(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    vn_tensor *xs = vn_scale(ctx, in[0], 1.0f);
    vn_tensor *y = xs ? vn_conv2d_relu(ctx, xs, in[1], in[2], *(const vn_conv_params *)user) : NULL;
    vn_tensor *a = y ? vn_global_avg_pool(ctx, y) : NULL, *b = xs ? vn_global_avg_pool(ctx, xs) : NULL;
    return a && b ? vn_add(ctx, a, b) : NULL;
}

START_TEST(conv_dw_relu)
{
    const vn_conv_params p7 = VN_CONV(1, 3, 16), p3s2 = VN_CONV(2, 1, 16);
    vn_tensor *in[3] = {rnd(2, 9, 11, 16, 4, true), rnd(16, 7, 7, 1, 4, true), NULL};
    compare("conv dw 7x7 of relu(x)", f_conv_relu, &p7, 3, in, rel_mm());
    compare("conv dw 7x7 of relu(x), x read twice", f_conv_relu_shared, &p7, 3, in, rel_mm());
    free_all(3, in);
    vn_tensor *in2[3] = {rnd(2, 9, 9, 16, 4, true), rnd(16, 3, 3, 1, 4, true),
                         rnd(16, 1, 1, 1, 1, true)};
    compare("conv dw 3x3/2 of relu(x) (cuDNN)", f_conv_relu, &p3s2, 3, in2, rel_mm());
    compare("conv dw 3x3/2 of relu(x), x read twice (cuDNN)", f_conv_relu_shared, &p3s2, 3, in2,
            rel_mm());
    free_all(3, in2);
}
END_TEST
START_TEST(conv_general)
{
    conv_case("conv 3x3/2 pad 1", 2, 9, 10, 8, 12, 3, VN_CONV(2, 1, 1), false);
    conv_case("conv 3x3 groups 2", 1, 6, 6, 8, 6, 3, VN_CONV(1, 1, 2), true);
}
END_TEST

/* ---- batch_norm2d ----------------------------------------------------------------------- */

static vn_tensor *f_bn_train(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_batch_norm2d(ctx, in[0], in[1], in[2], in[3], in[4], NULL, true, 0.1f, 1e-5f);
}

static vn_tensor *f_bn_eval(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_batch_norm2d(ctx, in[0], in[1], in[2], in[3], in[4], NULL, false, 0.1f, 1e-5f);
}

static vn_tensor *f_bn_leaky_train(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_batch_norm2d_leaky(ctx, in[0], in[1], in[2], in[3], in[4], NULL, true, 0.1f, 1e-5f,
                                 *(const float *)user);
}

static vn_tensor *f_bn_leaky_eval(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_batch_norm2d_leaky(ctx, in[0], in[1], in[2], in[3], in[4], NULL, false, 0.1f,
                                 1e-5f, *(const float *)user);
}

START_TEST(batch_norm)
{
    vn_tensor *in[5] = {rnd(4, 9, 7, 70, 4, true), rnd(70, 1, 1, 1, 1, true),
                        rnd(70, 1, 1, 1, 1, true), rnd(70, 1, 1, 1, 1, false),
                        rnd(70, 1, 1, 1, 1, false)};
    for (int64_t i = 0; i < 70; i++) in[4]->data[i] = 0.5f + fabsf(in[4]->data[i]);
    compare("batch_norm2d train", f_bn_train, NULL, 5, in, REL_FP32);
    compare("batch_norm2d eval", f_bn_eval, NULL, 5, in, REL_FP32);
    const float slope = 0.3f, relu = 0.0f;
    compare("batch_norm2d + leaky_relu 0.3 train", f_bn_leaky_train, &slope, 5, in, REL_FP32);
    compare("batch_norm2d + leaky_relu 0 train", f_bn_leaky_train, &relu, 5, in, REL_FP32);
    compare("batch_norm2d + leaky_relu 0.3 eval", f_bn_leaky_eval, &slope, 5, in, REL_FP32);
    free_all(5, in);
}
END_TEST

/* ---- element-wise, pools ------------------------------------------------------------------ */

static vn_tensor *f_leaky(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_leaky_relu(ctx, in[0], *(const float *)user);
}
static vn_tensor *f_relu(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_relu(ctx, in[0]);
}
static vn_tensor *f_add(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_add(ctx, in[0], in[1]);
}
static vn_tensor *f_scale_reshape(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_flatten(ctx, vn_scale(ctx, in[0], -0.75f));
}
static vn_tensor *f_maxpool(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_max_pool2d(ctx, in[0], *(const int *)user);
}
/* Two pools of one input: the second backward adds to the first's gradient. */
static vn_tensor *f_maxpool_twice(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    int k = *(const int *)user;
    return vn_add(ctx, vn_max_pool2d(ctx, in[0], k), vn_max_pool2d(ctx, in[0], k));
}
static vn_tensor *f_amax(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_adaptive_max_pool2d(ctx, in[0], 3, 2);
}
static vn_tensor *f_aavg(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_adaptive_avg_pool2d(ctx, in[0], 2, 3);
}
static vn_tensor *f_gap(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_global_avg_pool(ctx, in[0]);
}

START_TEST(elementwise)
{
    vn_tensor *in[2] = {rnd(2, 5, 6, 33, 4, true), rnd(2, 5, 6, 33, 4, true)};
    float slope = 0.3f, neg = -0.2f;
    compare("leaky_relu 0.3", f_leaky, &slope, 1, in, REL_FP32);
    compare("leaky_relu -0.2", f_leaky, &neg, 1, in, REL_FP32);
    compare("relu", f_relu, NULL, 1, in, REL_FP32);
    compare("add", f_add, NULL, 2, in, REL_FP32);
    compare("scale + reshape", f_scale_reshape, NULL, 1, in, REL_FP32);
    free_all(2, in);
}
END_TEST

START_TEST(pools)
{
    vn_tensor *in[1] = {rnd(2, 8, 7, 19, 4, true)};
    int k = 2;
    compare("max_pool2d 2", f_maxpool, &k, 1, in, REL_FP32);
    compare("max_pool2d 2, twice", f_maxpool_twice, &k, 1, in, REL_FP32);
    int k3 = 3;
    compare("max_pool2d 3", f_maxpool, &k3, 1, in, REL_FP32);
    compare("adaptive_max_pool2d 3x2", f_amax, NULL, 1, in, REL_FP32);
    compare("adaptive_avg_pool2d 2x3", f_aavg, NULL, 1, in, REL_FP32);
    compare("global_avg_pool", f_gap, NULL, 1, in, REL_FP32);
    free_all(1, in);
}
END_TEST

/* Dropout: the masks come from different generators, so the check is structural: each
 * output is 0 or x / (1 - p), the kept fraction is near 1 - p, and the gradient is the
 * seed times the same mask. */
START_TEST(dropout)
{
    const int64_t n = 1 << 16;
    const float p = 0.25f;
    vn_tensor *x = rnd(n, 1, 1, 1, 1, true);
    vn_tensor *g = to_cuda(x);
    vn_ctx *ctx = vn_ctx_create_on(VN_DEVICE_CUDA);
    vn_tensor *y = vn_dropout(ctx, g, p, true);
    ck_assert_msg(y, "%s", vn_ctx_error(ctx));
    float *yh = malloc(n * sizeof(float)), *gh = malloc(n * sizeof(float));
    float *ones = malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    ck_assert_int_eq(vn_tensor_read(y, yh), VN_OK);
    ck_assert_int_eq(vn_backward_with(ctx, y, ones), VN_OK);
    ck_assert_int_eq(vn_tensor_read_grad(g, gh), VN_OK);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        bool k = yh[i] != 0.0f;
        kept += k;
        if (k) ck_assert_float_eq_tol(yh[i], x->data[i] / (1.0f - p), 1e-6f);
        ck_assert_float_eq_tol(gh[i], k ? 1.0f / (1.0f - p) : 0.0f, 1e-6f);
    }
    double frac = (double)kept / (double)n;
    printf("  dropout p %.2f: kept fraction %.4f\n", (double)p, frac);
    ck_assert_msg(fabs(frac - (1.0 - p)) < 0.01, "kept fraction %g, expected %g", frac, 1.0 - p);
    free(yh);
    free(gh);
    free(ones);
    vn_ctx_destroy(ctx);
    vn_tensor_free(g);
    vn_tensor_free(x);
}
END_TEST

/* ---- dense and losses --------------------------------------------------------------------- */

static vn_tensor *f_matmul(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_matmul(ctx, in[0], in[1]);
}
static vn_tensor *f_linear(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    (void)user;
    return vn_linear(ctx, in[0], in[1], in[2]);
}

typedef struct loss_case {
    const int32_t *labels;
    const float *targets;
    float smoothing;
} loss_case;

static vn_tensor *f_ce(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    const loss_case *c = user;
    return vn_cross_entropy(ctx, in[0], c->labels, c->targets, c->smoothing);
}
static vn_tensor *f_bce(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    return vn_bce_with_logits(ctx, in[0], ((const loss_case *)user)->targets);
}

START_TEST(dense)
{
    vn_tensor *mm[2] = {rnd(37, 53, 1, 1, 2, true), rnd(53, 29, 1, 1, 2, true)};
    compare("matmul", f_matmul, NULL, 2, mm, rel_mm());
    vn_tensor *lin[3] = {rnd(6, 5, 48, 1, 3, true), rnd(17, 48, 1, 1, 2, true),
                         rnd(17, 1, 1, 1, 1, true)};
    compare("linear", f_linear, NULL, 3, lin, rel_mm());
    free_all(2, mm);
    free_all(3, lin);
}
END_TEST

/* bf16 autocast (vn_device_set_bf16): the GEMMs of 1x1 convolutions and linear layers take
 * bf16 operands (8-bit mantissa: 2^-9 relative rounding of each) and accumulate in FP32; the
 * outputs and gradients are bounded at 1e-2 of their largest value. The "twice" case adds the
 * second input gradient to the first (beta 1) and reuses the bf16 copy kept by forward. */
#define REL_BF16 1e-2

static vn_tensor *f_conv_twice(vn_ctx *ctx, vn_tensor *const *in, const void *user)
{
    vn_conv_params p = *(const vn_conv_params *)user;
    return vn_add(ctx, vn_conv2d(ctx, in[0], in[1], in[2], p), vn_conv2d(ctx, in[0], in[1], in[2], p));
}

START_TEST(bf16_gemms)
{
    ck_assert_int_eq(vn_device_set_bf16(VN_DEVICE_CUDA, true), VN_OK);
    conv_case_rel("conv 1x1 bf16", 2, 7, 5, 64, 40, 1, VN_CONV(1, 0, 1), true, REL_BF16);
    vn_conv_params p = VN_CONV(1, 0, 1);
    vn_tensor *in[3] = {rnd(3, 5, 6, 96, 4, true), rnd(24, 1, 1, 96, 4, true),
                        rnd(24, 1, 1, 1, 1, true)};
    compare("conv 1x1 bf16, twice", f_conv_twice, &p, 3, in, REL_BF16);
    free_all(3, in);
    vn_tensor *lin[3] = {rnd(6, 5, 48, 1, 3, true), rnd(17, 48, 1, 1, 2, true),
                         rnd(17, 1, 1, 1, 1, true)};
    compare("linear bf16", f_linear, NULL, 3, lin, REL_BF16);
    free_all(3, lin);
    ck_assert_int_eq(vn_device_set_bf16(VN_DEVICE_CUDA, false), VN_OK);
    conv_case("conv 1x1 back in fp32", 2, 7, 5, 24, 40, 1, VN_CONV(1, 0, 1), true);
}
END_TEST

START_TEST(losses)
{
    enum { R = 12, C = 1000 };
    vn_tensor *in[1] = {rnd(R, C, 1, 1, 2, true)};
    for (int64_t i = 0; i < in[0]->numel; i++) in[0]->data[i] *= 4.0f;
    int32_t labels[R];
    float *soft = malloc(sizeof(float) * R * C), *bin = malloc(sizeof(float) * R * C);
    vn_test_fill_uniform(bin, R * C, 5, 0.0f, 1.0f);
    for (int r = 0; r < R; r++) {
        labels[r] = (r * 389) % C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += bin[r * C + c];
        for (int c = 0; c < C; c++) soft[r * C + c] = (float)(bin[r * C + c] / s);
    }
    loss_case hard = {labels, NULL, 0.0f}, smooth = {labels, NULL, 0.1f}, st = {NULL, soft, 0.0f};
    loss_case b = {NULL, bin, 0.0f};
    compare("cross_entropy labels", f_ce, &hard, 1, in, REL_FP32);
    compare("cross_entropy smoothing 0.1", f_ce, &smooth, 1, in, REL_FP32);
    compare("cross_entropy soft targets", f_ce, &st, 1, in, REL_FP32);
    compare("bce_with_logits", f_bce, &b, 1, in, REL_FP32);
    free(soft);
    free(bin);
    free_all(1, in);
}
END_TEST

/* ---- the backend itself ------------------------------------------------------------------- */

START_TEST(device_errors)
{
    /* Tensors of two devices in one op fail with an error naming both. */
    vn_tensor *a = rnd(4, 1, 1, 1, 1, false), *b = to_cuda(a);
    vn_ctx *ctx = vn_ctx_create_on(VN_DEVICE_CUDA);
    ck_assert_ptr_null(vn_add(ctx, b, a));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "cpu") && strstr(vn_ctx_error(ctx), "cuda"), "%s",
                  vn_ctx_error(ctx));
    vn_ctx_destroy(ctx);
    /* Round trip: to the device and back gives the same bytes. */
    float before[4];
    memcpy(before, a->data, sizeof before);
    ck_assert_int_eq(vn_tensor_to_device(b, VN_DEVICE_CPU), VN_OK);
    ck_assert_mem_eq(b->data, before, sizeof before);
    vn_tensor_free(a);
    vn_tensor_free(b);
}
END_TEST

static Suite *cuda_suite(void)
{
    Suite *s = suite_create("cuda");
    TCase *tc = tcase_create("ops");
    tcase_add_test(tc, device_errors);
    tcase_add_test(tc, conv_1x1);
    tcase_add_test(tc, conv_patch);
    tcase_add_test(tc, conv_dw);
    tcase_add_test(tc, conv_dw_relu);
    tcase_add_test(tc, conv_general);
    tcase_add_test(tc, batch_norm);
    tcase_add_test(tc, elementwise);
    tcase_add_test(tc, pools);
    tcase_add_test(tc, dropout);
    tcase_add_test(tc, dense);
    tcase_add_test(tc, bf16_gemms);
    tcase_add_test(tc, losses);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char why[256];
    if (vn_device_check(VN_DEVICE_CUDA, why, sizeof why) != VN_OK) {
        printf("SKIP: the CUDA suite needs a CUDA device: %s\n", why);
        return 77;
    }
    /* No fork: CUDA contexts do not survive fork(). */
    return vn_test_run(cuda_suite(), false);
}
