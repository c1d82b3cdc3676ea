/* vn_conv2d: PyTorch fixtures, finite-difference gradients, an independent double-precision
 * reference on larger shapes, determinism, errors and steady-state memory. */
#include "vn_test.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fixture comparisons: |got - want| <= FIX_ATOL + FIX_RTOL * |want|. */
#define FIX_ATOL 1e-4
#define FIX_RTOL 1e-4
/* Finite differences: step and tolerance on |analytic - numeric| / max(1, |numeric|). */
#define GC_EPS 1e-2
#define GC_TOL 1e-2

typedef struct conv_case {
    const char *name;
    int n, h, w, cin, cout, kh, kw, sh, sw, ph, pw, groups;
    bool bias;
} conv_case;

/* The same list as tests/reference/gen_conv.py. */
static const conv_case cases[] = {
    {"pw1x1", 2, 5, 3, 6, 7, 1, 1, 1, 1, 0, 0, 1, true},
    {"pw1x1_one_channel", 1, 4, 4, 1, 5, 1, 1, 1, 1, 0, 0, 1, true},
    {"pw1x1_nobias", 3, 2, 3, 9, 4, 1, 1, 1, 1, 0, 0, 1, false},
    {"pw1x1_stride2", 2, 6, 5, 4, 3, 1, 1, 2, 2, 0, 0, 1, true},
    {"stem4", 2, 10, 9, 3, 8, 4, 4, 4, 4, 0, 0, 1, true},
    {"stem4_exact", 1, 8, 8, 3, 5, 4, 4, 4, 4, 0, 0, 1, false},
    {"stem3_pad1", 2, 11, 10, 3, 8, 3, 3, 3, 3, 1, 1, 1, true},
    {"dw7_7x7", 2, 7, 7, 12, 12, 7, 7, 1, 1, 3, 3, 12, false},
    {"dw7_1x1", 3, 1, 1, 16, 16, 7, 7, 1, 1, 3, 3, 16, false},
    {"dw7_2x2", 2, 2, 2, 9, 9, 7, 7, 1, 1, 3, 3, 9, true},
    {"dw7_bias", 1, 9, 6, 20, 20, 7, 7, 1, 1, 3, 3, 20, true},
    {"dw7_wide", 1, 8, 10, 37, 37, 7, 7, 1, 1, 3, 3, 37, true},
    {"dw3", 2, 6, 5, 10, 10, 3, 3, 1, 1, 1, 1, 10, false},
    {"dw5", 2, 6, 6, 8, 8, 5, 5, 1, 1, 2, 2, 8, false},
    {"dw9", 1, 9, 8, 5, 5, 9, 9, 1, 1, 4, 4, 5, false},
    {"dw4_even", 2, 6, 7, 8, 8, 4, 4, 1, 1, 1, 1, 8, true},
    {"dw3_stride2", 2, 8, 7, 6, 6, 3, 3, 2, 2, 1, 1, 6, true},
    {"dw_one_channel", 2, 5, 5, 1, 1, 3, 3, 1, 1, 1, 1, 1, true},
    {"gen3_stride2", 2, 7, 8, 5, 6, 3, 3, 2, 2, 1, 1, 1, true},
    {"gen3_nobias", 2, 6, 6, 4, 5, 3, 3, 1, 1, 0, 0, 1, false},
    {"grouped2", 2, 6, 6, 4, 6, 3, 3, 1, 1, 1, 1, 2, true},
    {"nonsquare3x1", 2, 5, 6, 3, 4, 3, 1, 1, 1, 1, 0, 1, true},
    {"batch1_odd", 1, 7, 5, 3, 2, 5, 3, 2, 1, 2, 1, 1, true},
    {"yolo3_s1", 2, 8, 8, 6, 10, 3, 3, 1, 1, 1, 1, 1, false},
    {"yolo3_s2", 2, 8, 8, 6, 12, 3, 3, 2, 2, 1, 1, 1, false},
    {"yolo3_s2_odd", 1, 9, 7, 5, 4, 3, 3, 2, 2, 1, 1, 1, true},
    {"yolo_dw3", 2, 6, 6, 24, 24, 3, 3, 1, 1, 1, 1, 24, true},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static vn_conv_params case_params(const conv_case *c)
{
    return (vn_conv_params){c->sh, c->sw, c->ph, c->pw, c->groups};
}

static int64_t out_dim(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

/* Max |got - want| over n elements, for the log (the tolerances are checked separately). */
static double max_abs_diff(const float *got, const float *want, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static void check_meta(const vn_st_file *f, const char *key, int want)
{
    const char *v = vn_st_meta(f, key);
    ck_assert_msg(v != NULL, "%s: no metadata '%s'", vn_st_path(f), key);
    ck_assert_msg(atoi(v) == want, "%s: metadata %s = %s but the test expects %d (stale "
                  "fixture? rerun tests/reference/gen_conv.py)", vn_st_path(f), key, v, want);
}

/* A step-lifetime copy of t that requires grad: its gradient buffer is fresh from the pool,
 * which exercises the kernels' overwrite (beta = 0) paths. */
static vn_tensor *step_leaf(vn_ctx *ctx, const vn_tensor *t)
{
    vn_tensor *s = vn_ctx_tensor(ctx, t->ndim, t->shape);
    ck_assert_ptr_nonnull(s);
    memcpy(s->data, t->data, (size_t)t->numel * sizeof(float));
    s->flags |= VN_TENSOR_REQUIRES_GRAD;
    return s;
}

static void expect_close(const char *what, const conv_case *c, const float *got,
                         const float *want, int64_t n, double scale)
{
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = (float)(scale * want[i]);
    char label[160];
    snprintf(label, sizeof label, "%s %s", c->name, what);
    bool ok = vn_test_close(label, got, w, n, FIX_ATOL * scale, FIX_RTOL);
    fprintf(stderr, "%-24s %-3s max abs diff %.3g\n", c->name, what, max_abs_diff(got, w, n));
    free(w);
    ck_assert_msg(ok, "%s: %s differs from PyTorch (atol %g, rtol %g)", c->name, what,
                  FIX_ATOL * scale, FIX_RTOL);
}

/* Forward and all gradients against PyTorch. Model-lifetime leaves run two steps to show
 * that backward accumulates (the second step's gradients are twice the reference). */
START_TEST(test_fixture_model_leaves)
{
    const conv_case *c = &cases[_i];
    char rel[128];
    snprintf(rel, sizeof rel, "conv/%s.safetensors", c->name);
    vn_st_file *f = vn_test_fixture(rel);
    check_meta(f, "stride_h", c->sh);
    check_meta(f, "stride_w", c->sw);
    check_meta(f, "pad_h", c->ph);
    check_meta(f, "pad_w", c->pw);
    check_meta(f, "groups", c->groups);
    check_meta(f, "bias", c->bias);

    vn_tensor *x = vn_test_tensor(f, "x", true);
    vn_tensor *w = vn_test_tensor(f, "w", true);
    vn_tensor *b = c->bias ? vn_test_tensor(f, "b", true) : NULL;
    int64_t ho = out_dim(c->h, c->kh, c->sh, c->ph), wo = out_dim(c->w, c->kw, c->sw, c->pw);
    int64_t ny = (int64_t)c->n * ho * wo * c->cout;
    const float *g = vn_test_f32(f, "g", ny);
    const float *y_ref = vn_test_f32(f, "y", ny);
    const float *dx_ref = vn_test_f32(f, "dx", x->numel);
    const float *dw_ref = vn_test_f32(f, "dw", w->numel);
    const float *db_ref = c->bias ? vn_test_f32(f, "db", c->cout) : NULL;

    vn_ctx *ctx = vn_ctx_create();
    for (int step = 1; step <= 2; step++) {
        vn_ctx_reset(ctx);
        vn_tensor *y = vn_conv2d(ctx, x, w, b, case_params(c));
        ck_assert_msg(y != NULL, "%s: %s", c->name, vn_ctx_error(ctx));
        ck_assert_int_eq(y->ndim, 4);
        ck_assert(y->shape[0] == c->n && y->shape[1] == ho && y->shape[2] == wo &&
                  y->shape[3] == c->cout);
        if (step == 1) expect_close("y", c, y->data, y_ref, ny, 1.0);
        ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
        expect_close(step == 1 ? "dx" : "2dx", c, x->grad, dx_ref, x->numel, step);
        expect_close(step == 1 ? "dw" : "2dw", c, w->grad, dw_ref, w->numel, step);
        if (b) expect_close(step == 1 ? "db" : "2db", c, b->grad, db_ref, c->cout, step);
    }
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_st_close(f);
}
END_TEST

/* The same with step-lifetime leaves, whose gradient buffers start uninitialised. */
START_TEST(test_fixture_step_leaves)
{
    const conv_case *c = &cases[_i];
    char rel[128];
    snprintf(rel, sizeof rel, "conv/%s.safetensors", c->name);
    vn_st_file *f = vn_test_fixture(rel);
    vn_tensor *x0 = vn_test_tensor(f, "x", false);
    vn_tensor *w0 = vn_test_tensor(f, "w", false);
    vn_tensor *b0 = c->bias ? vn_test_tensor(f, "b", false) : NULL;
    int64_t ny = (int64_t)c->n * out_dim(c->h, c->kh, c->sh, c->ph) *
                 out_dim(c->w, c->kw, c->sw, c->pw) * c->cout;
    const float *g = vn_test_f32(f, "g", ny);

    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = step_leaf(ctx, x0), *w = step_leaf(ctx, w0);
    vn_tensor *b = b0 ? step_leaf(ctx, b0) : NULL;
    vn_tensor *y = vn_conv2d(ctx, x, w, b, case_params(c));
    ck_assert_msg(y != NULL, "%s: %s", c->name, vn_ctx_error(ctx));
    expect_close("y", c, y->data, vn_test_f32(f, "y", ny), ny, 1.0);
    ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
    expect_close("dx", c, x->grad, vn_test_f32(f, "dx", x->numel), x->numel, 1.0);
    expect_close("dw", c, w->grad, vn_test_f32(f, "dw", w->numel), w->numel, 1.0);
    if (b) expect_close("db", c, b->grad, vn_test_f32(f, "db", c->cout), c->cout, 1.0);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x0);
    vn_tensor_free(w0);
    vn_tensor_free(b0);
    vn_st_close(f);
}
END_TEST

/* Only some inputs require grad: the others get no gradient, the rest are still right. */
START_TEST(test_partial_requires_grad)
{
    const char *names[] = {"pw1x1", "stem4", "dw7_bias", "grouped2"};
    for (int k = 0; k < 4; k++) {
        const conv_case *c = NULL;
        for (int i = 0; i < N_CASES; i++)
            if (!strcmp(cases[i].name, names[k])) c = &cases[i];
        ck_assert_ptr_nonnull(c);
        char rel[128];
        snprintf(rel, sizeof rel, "conv/%s.safetensors", c->name);
        vn_st_file *f = vn_test_fixture(rel);
        for (int which = 0; which < 3; which++) {
            vn_tensor *x = vn_test_tensor(f, "x", which == 0);
            vn_tensor *w = vn_test_tensor(f, "w", which == 1);
            vn_tensor *b = vn_test_tensor(f, "b", which == 2);
            vn_ctx *ctx = vn_ctx_create();
            vn_tensor *y = vn_conv2d(ctx, x, w, b, case_params(c));
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(vn_backward_with(ctx, y, vn_test_f32(f, "g", y->numel)), VN_OK);
            ck_assert((x->grad != NULL) == (which == 0));
            ck_assert((w->grad != NULL) == (which == 1));
            ck_assert((b->grad != NULL) == (which == 2));
            vn_tensor *t = which == 0 ? x : which == 1 ? w : b;
            const char *name = which == 0 ? "dx" : which == 1 ? "dw" : "db";
            expect_close(name, c, t->grad, vn_test_f32(f, name, t->numel), t->numel, 1);
            vn_ctx_destroy(ctx);
            vn_tensor_free(x);
            vn_tensor_free(w);
            vn_tensor_free(b);
        }
        vn_st_close(f);
    }
}
END_TEST

/* ---- finite differences -------------------------------------------------------------- */

static vn_tensor *conv_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const conv_case *c = user;
    return vn_conv2d(ctx, in[0], in[1], c->bias ? in[2] : NULL, case_params(c));
}

START_TEST(test_gradcheck)
{
    const conv_case *c = &cases[_i];
    vn_tensor *x = vn_tensor_new4(c->n, c->h, c->w, c->cin, true);
    vn_tensor *w = vn_tensor_new4(c->cout, c->kh, c->kw, c->cin / c->groups, true);
    int64_t bs[1] = {c->cout};
    vn_tensor *b = vn_tensor_new(1, bs, true);
    vn_test_fill_uniform(x->data, x->numel, 11 + (uint64_t)_i, -1, 1);
    vn_test_fill_uniform(w->data, w->numel, 101 + (uint64_t)_i, -0.5f, 0.5f);
    vn_test_fill_uniform(b->data, b->numel, 1001 + (uint64_t)_i, -1, 1);
    if (!c->bias) b->flags &= ~(uint32_t)VN_TENSOR_REQUIRES_GRAD;
    vn_tensor *in[3] = {x, w, b};
    double err = vn_test_gradcheck(c->name, conv_fwd, 3, in, (void *)c, GC_EPS, GC_TOL, 4096);
    fprintf(stderr, "%-24s gradcheck max error %.3g (eps %g, tol %g)\n", c->name, err, GC_EPS,
            GC_TOL);
    ck_assert_msg(err >= 0 && err <= GC_TOL, "%s: gradient check failed (max error %g)",
                  c->name, err);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}
END_TEST

/* ---- an independent reference in double on larger shapes ------------------------------ */

typedef struct ref_out {
    double *y, *dx, *dw, *db;
} ref_out;

/* Direct 7-loop convolution and its gradients for L = sum(y * g), in double. */
static ref_out ref_conv(const conv_case *c, const float *x, const float *w, const float *b,
                        const float *g)
{
    int64_t ho = out_dim(c->h, c->kh, c->sh, c->ph), wo = out_dim(c->w, c->kw, c->sw, c->pw);
    int64_t cg = c->cin / c->groups, og = c->cout / c->groups;
    ref_out r;
    r.y = calloc((size_t)(c->n * ho * wo * c->cout), sizeof(double));
    r.dx = calloc((size_t)c->n * c->h * c->w * c->cin, sizeof(double));
    r.dw = calloc((size_t)c->cout * c->kh * c->kw * cg, sizeof(double));
    r.db = calloc((size_t)c->cout, sizeof(double));
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++)
                for (int64_t o = 0; o < c->cout; o++) {
                    int64_t yi = ((n * ho + oh) * wo + ow) * c->cout + o;
                    int64_t grp = o / og;
                    double acc = b ? b[o] : 0.0, gy = g[yi];
                    r.db[o] += gy;
                    for (int64_t i = 0; i < c->kh; i++) {
                        int64_t hi = oh * c->sh - c->ph + i;
                        if (hi < 0 || hi >= c->h) continue;
                        for (int64_t j = 0; j < c->kw; j++) {
                            int64_t wi = ow * c->sw - c->pw + j;
                            if (wi < 0 || wi >= c->w) continue;
                            for (int64_t ci = 0; ci < cg; ci++) {
                                int64_t xi = ((n * c->h + hi) * c->w + wi) * c->cin + grp * cg + ci;
                                int64_t wk = ((o * c->kh + i) * c->kw + j) * cg + ci;
                                acc += (double)x[xi] * w[wk];
                                r.dx[xi] += gy * w[wk];
                                r.dw[wk] += gy * x[xi];
                            }
                        }
                    }
                    r.y[yi] = acc;
                }
    return r;
}

static void ref_free(ref_out *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
}

/* |got - want| <= atol + rtol * |want| against a double reference; prints the worst. */
static void expect_close_d(const char *name, const char *what, const float *got,
                           const double *want, int64_t n, double atol, double rtol)
{
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = (float)want[i];
    char label[160];
    snprintf(label, sizeof label, "%s %s", name, what);
    bool ok = vn_test_close(label, got, w, n, atol, rtol);
    fprintf(stderr, "%-24s %-3s max abs diff %.3g (vs double reference)\n", name, what,
            max_abs_diff(got, w, n));
    free(w);
    ck_assert_msg(ok, "%s: %s differs from the double reference", name, what);
}

static const conv_case big_cases[] = {
    /* Channel counts past the vector widths, and long sgemm dimensions. */
    {"big_pw1x1", 2, 9, 9, 70, 33, 1, 1, 1, 1, 0, 0, 1, true},
    {"big_stem4", 2, 18, 17, 3, 24, 4, 4, 4, 4, 0, 0, 1, true},
    {"big_dw7", 2, 13, 11, 67, 67, 7, 7, 1, 1, 3, 3, 67, true},
    {"big_dw7_spatial1", 4, 1, 1, 96, 96, 7, 7, 1, 1, 3, 3, 96, false},
    {"big_dw5_stride2", 2, 11, 13, 40, 40, 5, 5, 2, 2, 2, 2, 40, true},
    /* Rows of 8+ pixels take the register-sliding kernels for widths 3, 5 and 7. */
    {"big_dw3_wide", 2, 9, 19, 24, 24, 3, 3, 1, 1, 1, 1, 24, true},
    {"big_dw5_wide", 1, 10, 17, 40, 40, 5, 5, 1, 1, 2, 2, 40, false},
    {"big_dw7_wide", 1, 9, 24, 32, 32, 7, 7, 1, 1, 3, 3, 32, false},
    /* Padding past kernel - 1: the input gradient takes the gather form. */
    {"big_dw3_pad3", 1, 5, 6, 8, 8, 3, 3, 1, 1, 3, 3, 8, true},
    {"big_grouped4", 2, 9, 8, 16, 12, 3, 3, 2, 1, 1, 1, 4, true},
    /* Weight gradients over more than 2048 output positions with small channel counts: the
     * product split into row chunks with partial sums (ops_conv.c, gemm_dw). */
    {"big_pw1x1_split", 2, 48, 48, 8, 16, 1, 1, 1, 1, 0, 0, 1, true},
    {"big_patch4_split", 4, 100, 100, 3, 8, 4, 4, 4, 4, 0, 0, 1, true},
    /* A column matrix above the 64 MB slab limit: forward and backward run in slabs. */
    {"big_slabs", 1, 120, 120, 48, 4, 5, 5, 1, 1, 2, 2, 1, true},
};

START_TEST(test_double_reference)
{
    const conv_case *c = &big_cases[_i];
    vn_tensor *x = vn_tensor_new4(c->n, c->h, c->w, c->cin, true);
    vn_tensor *w = vn_tensor_new4(c->cout, c->kh, c->kw, c->cin / c->groups, true);
    int64_t bs[1] = {c->cout};
    vn_tensor *b = c->bias ? vn_tensor_new(1, bs, true) : NULL;
    vn_test_fill_uniform(x->data, x->numel, 7 + (uint64_t)_i, -1, 1);
    vn_test_fill_uniform(w->data, w->numel, 77 + (uint64_t)_i, -0.2f, 0.2f);
    if (b) vn_test_fill_uniform(b->data, b->numel, 777 + (uint64_t)_i, -1, 1);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_conv2d(ctx, x, w, b, case_params(c));
    ck_assert_msg(y != NULL, "%s: %s", c->name, vn_ctx_error(ctx));
    float *g = malloc((size_t)y->numel * sizeof *g);
    vn_test_fill_uniform(g, y->numel, 7777 + (uint64_t)_i, -1, 1);
    ref_out r = ref_conv(c, x->data, w->data, b ? b->data : NULL, g);
    expect_close_d(c->name, "y", y->data, r.y, y->numel, FIX_ATOL, FIX_RTOL);
    ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
    expect_close_d(c->name, "dx", x->grad, r.dx, x->numel, FIX_ATOL, FIX_RTOL);
    /* dw sums over every output position (14400 in big_slabs): float32 accumulation. */
    expect_close_d(c->name, "dw", w->grad, r.dw, w->numel, 1e-3, FIX_RTOL);
    if (b) expect_close_d(c->name, "db", b->grad, r.db, c->cout, 1e-3, FIX_RTOL);
    ref_free(&r);
    free(g);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}
END_TEST

/* Outputs of 16 MB and more are written with streaming stores: the same bytes as image by
 * image (8 MB each, ordinary stores), for y and for a fresh dx. */
START_TEST(test_depthwise_streaming_same_bytes)
{
    const int64_t n = 2, hw = 64, c = 512;
    vn_tensor *x = vn_tensor_new4(n, hw, hw, c, false);
    vn_tensor *w = vn_tensor_new4(c, 7, 7, 1, true);
    int64_t bs[1] = {c};
    vn_tensor *b = vn_tensor_new(1, bs, false);
    vn_test_fill_uniform(x->data, x->numel, 21, -1, 1);
    vn_test_fill_uniform(w->data, w->numel, 22, -0.2f, 0.2f);
    vn_test_fill_uniform(b->data, b->numel, 23, -1, 1);
    int64_t img = hw * hw * c;
    float *g = malloc((size_t)(n * img) * sizeof *g);
    vn_test_fill_uniform(g, n * img, 24, -1, 1);

    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *xs = step_leaf(ctx, x);
    vn_tensor *y = vn_conv2d(ctx, xs, w, b, VN_CONV(1, 3, (int)c));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
    float *y_all = malloc((size_t)(n * img) * sizeof *y_all);
    float *dx_all = malloc((size_t)(n * img) * sizeof *dx_all);
    memcpy(y_all, y->data, (size_t)(n * img) * sizeof(float));
    memcpy(dx_all, xs->grad, (size_t)(n * img) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        vn_ctx_reset(ctx);
        vn_tensor *xi = vn_ctx_tensor4(ctx, 1, hw, hw, c);
        ck_assert_ptr_nonnull(xi);
        memcpy(xi->data, x->data + i * img, (size_t)img * sizeof(float));
        xi->flags |= VN_TENSOR_REQUIRES_GRAD;
        vn_tensor *yi = vn_conv2d(ctx, xi, w, b, VN_CONV(1, 3, (int)c));
        ck_assert_ptr_nonnull(yi);
        ck_assert_int_eq(vn_backward_with(ctx, yi, g + i * img), VN_OK);
        ck_assert_msg(!memcmp(yi->data, y_all + i * img, (size_t)img * sizeof(float)),
                      "image %lld: y of the batch differs from y of the image alone", (long long)i);
        ck_assert_msg(!memcmp(xi->grad, dx_all + i * img, (size_t)img * sizeof(float)),
                      "image %lld: dx of the batch differs from dx of the image alone",
                      (long long)i);
    }
    free(y_all);
    free(dx_all);
    free(g);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}
END_TEST

/* ---- determinism -------------------------------------------------------------------------- */

/* Runs forward + backward with the given thread count; returns the gradients (malloc'd). */
static void dw_grads(int threads, const conv_case *c, float **dx, float **dw, float **db)
{
    vn_set_threads(threads);
    ck_assert_int_eq(omp_get_max_threads(), threads);
    vn_tensor *x = vn_tensor_new4(c->n, c->h, c->w, c->cin, true);
    vn_tensor *w = vn_tensor_new4(c->cout, c->kh, c->kw, c->cin / c->groups, true);
    int64_t bs[1] = {c->cout};
    vn_tensor *b = vn_tensor_new(1, bs, true);
    vn_test_fill_uniform(x->data, x->numel, 5, -1, 1);
    vn_test_fill_uniform(w->data, w->numel, 6, -1, 1);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_conv2d(ctx, x, w, b, case_params(c));
    ck_assert_ptr_nonnull(y);
    float *g = malloc((size_t)y->numel * sizeof *g);
    vn_test_fill_uniform(g, y->numel, 8, -1, 1);
    ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
    *dx = malloc((size_t)x->numel * sizeof(float));
    *dw = malloc((size_t)w->numel * sizeof(float));
    *db = malloc((size_t)b->numel * sizeof(float));
    memcpy(*dx, x->grad, (size_t)x->numel * sizeof(float));
    memcpy(*dw, w->grad, (size_t)w->numel * sizeof(float));
    memcpy(*db, b->grad, (size_t)b->numel * sizeof(float));
    free(g);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}

START_TEST(test_depthwise_deterministic)
{
    /* Large enough that the loops run in parallel and the weight gradient uses many chunks. */
    const conv_case c = {"det_dw7", 3, 14, 14, 24, 24, 7, 7, 1, 1, 3, 3, 24, true};
    float *dx1, *dw1, *db1, *dx2, *dw2, *db2, *dx3, *dw3, *db3;
    dw_grads(1, &c, &dx1, &dw1, &db1);
    dw_grads(2, &c, &dx2, &dw2, &db2);
    dw_grads(3, &c, &dx3, &dw3, &db3);
    int64_t nx = 3 * 14 * 14 * 24, nw = 24 * 49;
    ck_assert_msg(!memcmp(dw1, dw2, (size_t)nw * sizeof(float)), "depthwise dw differs between 1 "
                  "and 2 threads");
    ck_assert_msg(!memcmp(dw1, dw3, (size_t)nw * sizeof(float)), "depthwise dw differs between 1 "
                  "and 3 threads");
    ck_assert_msg(!memcmp(db1, db2, 24 * sizeof(float)), "db differs between 1 and 2 threads");
    ck_assert_msg(!memcmp(db1, db3, 24 * sizeof(float)), "db differs between 1 and 3 threads");
    ck_assert_msg(!memcmp(dx1, dx2, (size_t)nx * sizeof(float)), "dx differs between 1 and 2 "
                  "threads");
    free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2), free(dx3), free(dw3),
        free(db3);
}
END_TEST

/* The split weight-gradient product of 1x1 and patch convs (gemm_dw) gives the same bytes
 * whatever the thread count: fixed row chunks added in chunk order. */
START_TEST(test_split_dw_deterministic)
{
    static const conv_case cs[] = {{"split_1x1", 3, 40, 40, 8, 12, 1, 1, 1, 1, 0, 0, 1, true},
                                   {"split_patch", 4, 100, 100, 3, 8, 4, 4, 4, 4, 0, 0, 1, true}};
    for (int k = 0; k < 2; k++) {
        const conv_case *c = &cs[k];
        float *dx[3], *dw[3], *db[3];
        for (int t = 0; t < 3; t++) dw_grads(t + 1, c, &dx[t], &dw[t], &db[t]);
        int64_t nw = (int64_t)c->cout * c->kh * c->kw * c->cin;
        for (int t = 1; t < 3; t++)
            ck_assert_msg(!memcmp(dw[0], dw[t], (size_t)nw * sizeof(float)),
                          "%s: dw differs between 1 and %d threads", c->name, t + 1);
        for (int t = 0; t < 3; t++) free(dx[t]), free(dw[t]), free(db[t]);
    }
    vn_set_threads(2);
}
END_TEST

/* The weight gradient is the same with and without the input gradient (the kernels then
 * run fused in one pass, or separately): the same sums in the same order. */
START_TEST(test_depthwise_dw_same_with_or_without_dx)
{
    const int64_t n = 2, hw = 12, c = 40;
    float *dws[2];
    for (int with_dx = 0; with_dx < 2; with_dx++) {
        vn_tensor *x = vn_tensor_new4(n, hw, hw, c, with_dx);
        vn_tensor *w = vn_tensor_new4(c, 7, 7, 1, true);
        vn_test_fill_uniform(x->data, x->numel, 31, -1, 1);
        vn_test_fill_uniform(w->data, w->numel, 32, -1, 1);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *y = vn_conv2d(ctx, x, w, NULL, VN_CONV(1, 3, (int)c));
        ck_assert_ptr_nonnull(y);
        float *g = malloc((size_t)y->numel * sizeof *g);
        vn_test_fill_uniform(g, y->numel, 33, -1, 1);
        ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
        ck_assert((x->grad != NULL) == (with_dx == 1));
        dws[with_dx] = malloc((size_t)w->numel * sizeof(float));
        memcpy(dws[with_dx], w->grad, (size_t)w->numel * sizeof(float));
        free(g);
        vn_ctx_destroy(ctx);
        vn_tensor_free(x);
        vn_tensor_free(w);
    }
    ck_assert_msg(!memcmp(dws[0], dws[1], (size_t)(c * 49) * sizeof(float)),
                  "depthwise dw differs with and without dx");
    free(dws[0]);
    free(dws[1]);
}
END_TEST

/* ---- errors -------------------------------------------------------------------------------- */

/* Runs conv2d on fresh tensors of the given shapes; expects NULL, `code` and a message
 * containing every non-NULL fragment. */
static void expect_error(const int64_t xs[4], const int64_t ws[4], int64_t bn, vn_conv_params p,
                         int code, const char *frag1, const char *frag2)
{
    vn_tensor *x = vn_tensor_new(4, xs, true);
    vn_tensor *w = vn_tensor_new(4, ws, true);
    int64_t bs[1] = {bn};
    vn_tensor *b = bn > 0 ? vn_tensor_new(1, bs, true) : NULL;
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_conv2d(ctx, x, w, b, p);
    const char *msg = vn_ctx_error(ctx);
    fprintf(stderr, "expected error: %s\n", msg);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(vn_ctx_status(ctx), code);
    ck_assert_msg(strstr(msg, "conv2d") != NULL, "message does not name the op: %s", msg);
    ck_assert_msg(!frag1 || strstr(msg, frag1), "message lacks '%s': %s", frag1, msg);
    ck_assert_msg(!frag2 || strstr(msg, frag2), "message lacks '%s': %s", frag2, msg);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}

START_TEST(test_errors)
{
    expect_error((int64_t[4]){1, 5, 5, 3}, (int64_t[4]){8, 3, 3, 4}, 8, VN_CONV(1, 1, 1),
                 VN_ERR_SHAPE, "3 channels", "[8, 3, 3, 4]");
    expect_error((int64_t[4]){1, 2, 2, 4}, (int64_t[4]){4, 7, 7, 1}, 0, VN_CONV(1, 1, 4),
                 VN_ERR_SHAPE, "larger than the padded input", "7x7");
    expect_error((int64_t[4]){1, 3, 9, 2}, (int64_t[4]){2, 5, 3, 2}, 0, VN_CONV(1, 0, 1),
                 VN_ERR_SHAPE, "larger than the padded input", "5x3");
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){8, 3, 3, 2}, 0, VN_CONV(1, 1, 4),
                 VN_ERR_SHAPE, "groups 4 does not divide", "6 input channels");
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){7, 3, 3, 3}, 0, VN_CONV(1, 1, 2),
                 VN_ERR_SHAPE, "groups 2 does not divide", "7 output channels");
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){8, 1, 1, 6}, 7, VN_CONV(1, 0, 1),
                 VN_ERR_SHAPE, "bias has shape [7]", "expected [8]");
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){8, 1, 1, 6}, 0, VN_CONV(0, 0, 1),
                 VN_ERR_INVALID, "stride", NULL);
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){8, 1, 1, 6}, 0, VN_CONV(1, -1, 1),
                 VN_ERR_INVALID, "padding", NULL);
    expect_error((int64_t[4]){1, 5, 5, 6}, (int64_t[4]){8, 1, 1, 6}, 0, VN_CONV(1, 0, 0),
                 VN_ERR_INVALID, "groups", NULL);

    /* Not 4-D, and NULL inputs (the error is sticky: a later valid call returns NULL too). */
    vn_ctx *ctx = vn_ctx_create();
    int64_t s2[2] = {4, 4};
    vn_tensor *flat = vn_tensor_new(2, s2, false);
    vn_tensor *w = vn_tensor_new4(2, 1, 1, 4, false);
    ck_assert_ptr_null(vn_conv2d(ctx, flat, w, NULL, VN_CONV(1, 0, 1)));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "4-D"), "%s", vn_ctx_error(ctx));
    vn_ctx_reset(ctx);
    ck_assert_ptr_null(vn_conv2d(ctx, NULL, w, NULL, VN_CONV(1, 0, 1)));
    ck_assert_int_ne(vn_ctx_status(ctx), VN_OK);
    vn_tensor *x = vn_tensor_new4(1, 2, 2, 4, false);
    ck_assert_ptr_null(vn_conv2d(ctx, x, w, NULL, VN_CONV(1, 0, 1)));
    vn_ctx_reset(ctx);
    ck_assert_ptr_nonnull(vn_conv2d(ctx, x, w, NULL, VN_CONV(1, 0, 1)));
    vn_ctx_destroy(ctx);
    vn_tensor_free(flat);
    vn_tensor_free(w);
    vn_tensor_free(x);
}
END_TEST

/* ---- tape and memory ---------------------------------------------------------------------- */

START_TEST(test_no_grad_records_nothing)
{
    vn_tensor *x = vn_tensor_new4(1, 4, 4, 3, true);
    vn_tensor *w = vn_tensor_new4(2, 3, 3, 3, true);
    vn_tensor *wf = vn_tensor_new4(2, 3, 3, 3, false);
    vn_tensor *xf = vn_tensor_new4(1, 4, 4, 3, false);
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_conv2d(ctx, x, w, NULL, VN_CONV(1, 1, 1));
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->node);
    ck_assert(!vn_tensor_requires_grad(y));
    vn_ctx_set_grad(ctx, true);
    y = vn_conv2d(ctx, xf, wf, NULL, VN_CONV(1, 1, 1));
    ck_assert_ptr_null(y->node);
    y = vn_conv2d(ctx, xf, w, NULL, VN_CONV(1, 1, 1));
    ck_assert_ptr_nonnull(y->node);
    ck_assert(vn_tensor_requires_grad(y));
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(wf);
    vn_tensor_free(xf);
}
END_TEST

/* One training-like step through every path: patchify stem, 1x1, depthwise, general. */
static void chain_step(vn_ctx *ctx, vn_tensor *const *p, const float *seed)
{
    vn_tensor *h = vn_conv2d(ctx, p[0], p[1], p[2], VN_CONV(4, 0, 1));     /* [2, 4, 4, 8] */
    h = vn_conv2d(ctx, h, p[3], p[4], VN_CONV(1, 0, 1));                 /* [2, 4, 4, 16] */
    h = vn_conv2d(ctx, h, p[5], NULL, VN_CONV(1, 3, 16));                /* depthwise 7x7 */
    h = vn_conv2d(ctx, h, p[6], p[7], VN_CONV(2, 1, 1));                 /* [2, 2, 2, 8] */
    ck_assert_msg(h != NULL, "%s", vn_ctx_error(ctx));
    ck_assert_int_eq(vn_backward_with(ctx, h, seed), VN_OK);
}

START_TEST(test_steady_state_memory)
{
    vn_tensor *p[8];
    p[0] = vn_tensor_new4(2, 17, 16, 3, true);
    p[1] = vn_tensor_new4(8, 4, 4, 3, true);
    p[2] = vn_tensor_new4(1, 1, 1, 8, true);
    p[3] = vn_tensor_new4(16, 1, 1, 8, true);
    p[4] = vn_tensor_new4(1, 1, 1, 16, true);
    p[5] = vn_tensor_new4(16, 7, 7, 1, true);
    p[6] = vn_tensor_new4(8, 3, 3, 16, true);
    p[7] = vn_tensor_new4(1, 1, 1, 8, true);
    int64_t s1[1];
    for (int i = 0; i < 8; i++) {
        if (i == 2 || i == 4 || i == 7) { /* biases are 1-D */
            s1[0] = p[i]->shape[3];
            vn_tensor_free(p[i]);
            p[i] = vn_tensor_new(1, s1, true);
        }
        vn_test_fill_uniform(p[i]->data, p[i]->numel, 40 + (uint64_t)i, -0.5f, 0.5f);
    }
    float seed[2 * 2 * 2 * 8];
    vn_test_fill_uniform(seed, 32, 3, -1, 1);
    vn_ctx *ctx = vn_ctx_create();
    chain_step(ctx, p, seed);
    vn_mem_stats s_first, s_second, s_third;
    vn_ctx_mem_stats(ctx, &s_first);
    vn_ctx_reset(ctx);
    chain_step(ctx, p, seed);
    vn_ctx_mem_stats(ctx, &s_second);
    vn_ctx_reset(ctx);
    chain_step(ctx, p, seed);
    vn_ctx_mem_stats(ctx, &s_third);
    fprintf(stderr, "steady state: system allocs %llu after step 1, %llu after step 2, %llu after "
            "step 3; pool peak %zu bytes\n", (unsigned long long)s_first.system_allocs,
            (unsigned long long)s_second.system_allocs, (unsigned long long)s_third.system_allocs,
            s_third.pool_peak);
    ck_assert_uint_gt(s_first.system_allocs, 0);
    ck_assert_uint_eq(s_second.system_allocs, s_first.system_allocs);
    ck_assert_uint_eq(s_third.system_allocs, s_first.system_allocs);
    /* Everything handed back: backward released the intermediate gradients. */
    ck_assert_uint_eq(s_third.pool_peak, s_second.pool_peak);
    vn_ctx_destroy(ctx);
    for (int i = 0; i < 8; i++) vn_tensor_free(p[i]);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("fixtures");
    tcase_add_loop_test(tc, test_fixture_model_leaves, 0, N_CASES);
    tcase_add_loop_test(tc, test_fixture_step_leaves, 0, N_CASES);
    tcase_add_test(tc, test_partial_requires_grad);
    suite_add_tcase(s, tc);
    tc = tcase_create("gradcheck");
    tcase_add_loop_test(tc, test_gradcheck, 0, N_CASES);
    suite_add_tcase(s, tc);
    tc = tcase_create("reference");
    tcase_add_loop_test(tc, test_double_reference, 0,
                        (int)(sizeof big_cases / sizeof big_cases[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("behaviour");
    tcase_add_test(tc, test_depthwise_deterministic);
    tcase_add_test(tc, test_depthwise_streaming_same_bytes);
    tcase_add_test(tc, test_depthwise_dw_same_with_or_without_dx);
    tcase_add_test(tc, test_split_dw_deterministic);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_no_grad_records_nothing);
    tcase_add_test(tc, test_steady_state_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(conv_suite(), true);
}
