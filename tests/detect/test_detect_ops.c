/* The detector's ops (SiLU, sigmoid, concat, slice/split, nearest upsampling, permute, bmm,
 * softmax, padded max-pool) against PyTorch fixtures (tests/reference/gen_detect_ops.py),
 * finite-difference gradients, save/recompute under vn_release, and errors.
 *
 * Fixture cases run on model-lifetime leaves (gradients accumulate into zeroed buffers) and
 * on step-lifetime leaves (fresh, uninitialised gradient buffers: the overwrite paths).
 * Tolerances: |got - want| <= FIX_ATOL + FIX_RTOL * |want| against float64 PyTorch results of
 * the same float32 inputs; max-pool, concat, slice, upsample and permute move or add floats
 * and are held to 1e-6. */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/vn_rng.h"

#define FIX_ATOL 2e-6
#define FIX_RTOL 2e-6
#define BMM_ATOL 2e-5
#define BMM_RTOL 2e-5
#define SMOOTH_EPS 1e-2
#define SMOOTH_TOL 2e-3
#define PIECE_EPS 1e-3
#define PIECE_TOL 1e-4

#define MAX_IO 8

typedef struct op_case op_case;
/* Builds the outputs from the inputs; returns their number (0 on failure). */
typedef int (*build_fn)(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out);

struct op_case {
    const char *name;
    build_fn build;
    int n_in;
    const char *in[MAX_IO];   /* fixture names of the inputs, gradients are "d" + name */
    int n_out;                /* outputs y (one) or y0, y1, ... with gy or gy0, gy1, ... */
    int arg[4];
    double atol, rtol;
};

static int b_silu(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    (void)c;
    return (out[0] = vn_silu(ctx, in[0])) != NULL;
}

static int b_sigmoid(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    (void)c;
    return (out[0] = vn_sigmoid(ctx, in[0])) != NULL;
}

static int b_softmax(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    (void)c;
    return (out[0] = vn_softmax(ctx, in[0])) != NULL;
}

static int b_concat(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    return (out[0] = vn_concat(ctx, c->n_in, in)) != NULL;
}

static int b_split(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    int64_t sizes[4];
    for (int i = 0; i < c->n_out; i++) sizes[i] = c->arg[i];
    return vn_split(ctx, in[0], c->n_out, sizes, out) == VN_OK ? c->n_out : 0;
}

static int b_upsample(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    return (out[0] = vn_upsample_nearest(ctx, in[0], c->arg[0])) != NULL;
}

static int b_permute(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    return (out[0] = vn_permute(ctx, in[0], c->arg)) != NULL;
}

static int b_bmm(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    float alpha = c->arg[2] ? 0.37f : 1.0f;
    return (out[0] = vn_bmm(ctx, in[0], in[1], c->arg[0], c->arg[1], alpha)) != NULL;
}

static int b_maxpool(vn_ctx *ctx, vn_tensor *const *in, const op_case *c, vn_tensor **out)
{
    return (out[0] = vn_max_pool2d_ex(ctx, in[0], c->arg[0], c->arg[1], c->arg[2])) != NULL;
}

#define X1 1, {"x"}
#define T FIX_ATOL, FIX_RTOL
static const op_case cases[] = {
    {"silu", b_silu, X1, 1, {0}, T},
    {"silu_wide", b_silu, X1, 1, {0}, T},
    {"sigmoid", b_sigmoid, X1, 1, {0}, T},
    {"sigmoid_wide", b_sigmoid, X1, 1, {0}, T},
    {"softmax", b_softmax, X1, 1, {0}, T},
    {"softmax_big", b_softmax, X1, 1, {0}, T},
    {"cat2", b_concat, 2, {"x0", "x1"}, 1, {0}, T},
    {"cat4", b_concat, 4, {"x0", "x1", "x2", "x3"}, 1, {0}, T},
    {"cat8", b_concat, 8, {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"}, 1, {0}, T},
    {"split2", b_split, X1, 2, {4, 4}, T},
    {"split3", b_split, X1, 3, {3, 3, 4}, T},
    {"up2", b_upsample, X1, 1, {2}, T},
    {"up3", b_upsample, X1, 1, {3}, T},
    {"perm0213", b_permute, X1, 1, {0, 2, 1, 3}, T},
    {"perm3d", b_permute, X1, 1, {2, 0, 1}, T},
    {"perm2d", b_permute, X1, 1, {1, 0}, T},
    {"bmm0", b_bmm, 2, {"a", "b"}, 1, {0, 0, 0}, BMM_ATOL, BMM_RTOL},
    {"bmm1", b_bmm, 2, {"a", "b"}, 1, {1, 0, 1}, BMM_ATOL, BMM_RTOL},
    {"bmm2", b_bmm, 2, {"a", "b"}, 1, {0, 1, 0}, BMM_ATOL, BMM_RTOL},
    {"bmm3", b_bmm, 2, {"a", "b"}, 1, {1, 1, 1}, BMM_ATOL, BMM_RTOL},
    {"mp5", b_maxpool, X1, 1, {5, 1, 2}, T},
    {"mp5_small", b_maxpool, X1, 1, {5, 1, 2}, T},
    {"mp3s2", b_maxpool, X1, 1, {3, 2, 1}, T},
    {"mp2", b_maxpool, X1, 1, {2, 2, 0}, T},
};
#undef X1
#undef T
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const char *fkey(const char *cs, const char *field)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%s.%s", cs, field);
    return buf;
}

static const char *indexed(const char *base, int n, int i)
{
    static char buf[16];
    if (n == 1) return base;
    snprintf(buf, sizeof buf, "%s%d", base, i);
    return buf;
}

static vn_tensor *step_leaf(vn_ctx *ctx, const vn_tensor *t)
{
    vn_tensor *s = vn_ctx_tensor(ctx, t->ndim, t->shape);
    ck_assert_ptr_nonnull(s);
    memcpy(s->data, t->data, (size_t)t->numel * sizeof(float));
    s->flags |= VN_TENSOR_REQUIRES_GRAD;
    return s;
}

static void expect(const op_case *c, const char *what, const float *got, const float *want,
                   int64_t n)
{
    char label[96];
    snprintf(label, sizeof label, "%s %s", c->name, what);
    ck_assert_msg(vn_test_close(label, got, want, n, c->atol, c->rtol),
                  "%s differs from PyTorch (atol %g, rtol %g)", label, c->atol, c->rtol);
}

/* Several outputs are seeded at once through their concatenation: the seed is the
 * concatenation of their upstream gradients along the last dim. */
static void backward_outputs(vn_ctx *ctx, const vn_st_file *f, const op_case *c, int n_out,
                             vn_tensor **out)
{
    if (n_out == 1) {
        const float *gy = vn_test_f32(f, fkey(c->name, "gy"), out[0]->numel);
        ck_assert_int_eq(vn_backward_with(ctx, out[0], gy), VN_OK);
        return;
    }
    vn_tensor *all = vn_concat(ctx, n_out, out);
    ck_assert_msg(all != NULL, "%s: %s", c->name, vn_ctx_error(ctx));
    int64_t call = all->shape[all->ndim - 1], rows = all->numel / call, off = 0;
    float *seed = malloc((size_t)all->numel * sizeof *seed);
    for (int i = 0; i < n_out; i++) {
        int64_t ci = out[i]->shape[out[i]->ndim - 1];
        char name[16];
        snprintf(name, sizeof name, "gy%d", i);
        const float *g = vn_test_f32(f, fkey(c->name, name), out[i]->numel);
        for (int64_t r = 0; r < rows; r++)
            memcpy(seed + r * call + off, g + r * ci, (size_t)ci * sizeof(float));
        off += ci;
    }
    ck_assert_int_eq(vn_backward_with(ctx, all, seed), VN_OK);
    free(seed);
}

static void run_case(const op_case *c, bool step_leaves)
{
    vn_st_file *f = vn_test_fixture("detect/ops.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *model[MAX_IO], *in[MAX_IO], *out[MAX_IO];
    for (int i = 0; i < c->n_in; i++) {
        model[i] = vn_test_tensor(f, fkey(c->name, c->in[i]), !step_leaves);
        in[i] = step_leaves ? step_leaf(ctx, model[i]) : model[i];
    }
    int n_out = c->build(ctx, in, c, out);
    ck_assert_msg(n_out == c->n_out, "%s: %s", c->name, vn_ctx_error(ctx));
    for (int i = 0; i < n_out; i++) {
        const char *yn = indexed("y", n_out, i);
        expect(c, yn, out[i]->data, vn_test_f32(f, fkey(c->name, yn), out[i]->numel),
               out[i]->numel);
    }
    backward_outputs(ctx, f, c, n_out, out);
    for (int i = 0; i < c->n_in; i++) {
        char dn[16];
        snprintf(dn, sizeof dn, "d%s", c->in[i]);
        ck_assert_msg(in[i]->grad != NULL, "%s: no gradient for %s", c->name, c->in[i]);
        expect(c, dn, in[i]->grad, vn_test_f32(f, fkey(c->name, dn), in[i]->numel),
               in[i]->numel);
    }
    vn_ctx_destroy(ctx);
    for (int i = 0; i < c->n_in; i++) vn_tensor_free(model[i]);
    vn_st_close(f);
}

START_TEST(test_fixture_model_leaves) { run_case(&cases[_i], false); }
END_TEST

START_TEST(test_fixture_step_leaves) { run_case(&cases[_i], true); }
END_TEST

/* ---- finite differences ------------------------------------------------------------------ */

static vn_tensor *rand_tensor(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi)
{
    vn_tensor *t = vn_tensor_new(ndim, shape, true);
    ck_assert_ptr_nonnull(t);
    vn_test_fill_uniform(t->data, t->numel, seed, lo, hi);
    return t;
}

/* Distinct multiples of 0.01 in a seeded order, so no perturbation changes an argmax. */
static vn_tensor *distinct_tensor(int ndim, const int64_t *shape, uint64_t seed)
{
    vn_tensor *t = vn_tensor_new(ndim, shape, true);
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x17, 0);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)i;
    for (int64_t i = t->numel - 1; i > 0; i--) {
        int64_t j = (int64_t)vn_rng_below(&rng, (uint64_t)(i + 1));
        float tmp = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = tmp;
    }
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = t->data[i] * 0.01f - 0.005f * (float)t->numel;
    return t;
}

static vn_tensor *g_unary(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    int which = *(const int *)user;
    switch (which) {
    case 0: return vn_silu(ctx, in[0]);
    case 1: return vn_sigmoid(ctx, in[0]);
    default: return vn_softmax(ctx, in[0]);
    }
}

START_TEST(test_grad_unary)
{
    int64_t shape[4] = {2, 3, 2, 5};
    vn_tensor *x = rand_tensor(4, shape, 50 + (uint64_t)_i, -4.0f, 4.0f);
    const char *names[] = {"silu", "sigmoid", "softmax"};
    int which = _i;
    VN_CHECK_GRAD(names[_i], g_unary, 1, &x, &which, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(x);
}
END_TEST

/* split into three, concatenated back in another order, then upsampled and permuted. */
static vn_tensor *g_shape_chain(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    vn_tensor *p[3];
    if (vn_split(ctx, in[0], 3, (int64_t[]){2, 1, 3}, p) != VN_OK) return NULL;
    vn_tensor *cat = vn_concat(ctx, 4, (vn_tensor *[]){p[2], in[1], p[0], p[1]});
    vn_tensor *up = vn_upsample_nearest(ctx, cat, 2);
    return vn_permute(ctx, up, (int[]){0, 2, 3, 1});
}

START_TEST(test_grad_shape_chain)
{
    vn_tensor *x = rand_tensor(4, (int64_t[]){2, 3, 2, 6}, 60, -1, 1);
    vn_tensor *y = rand_tensor(4, (int64_t[]){2, 3, 2, 2}, 61, -1, 1);
    vn_tensor *in[2] = {x, y};
    VN_CHECK_GRAD("split/concat/upsample/permute", g_shape_chain, 2, in, NULL, PIECE_EPS,
                  PIECE_TOL);
    vn_tensor_free(x);
    vn_tensor_free(y);
}
END_TEST

static vn_tensor *g_bmm(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    int t = *(const int *)user;
    return vn_bmm(ctx, in[0], in[1], t & 1, t & 2, 0.5f);
}

START_TEST(test_grad_bmm)
{
    int t = _i; /* bit 0: trans_a, bit 1: trans_b */
    int64_t B = 2, M = 3, N = 4, K = 5;
    int64_t sa[3] = {B, t & 1 ? K : M, t & 1 ? M : K}, sb[3] = {B, t & 2 ? N : K, t & 2 ? K : N};
    vn_tensor *a = rand_tensor(3, sa, 70 + (uint64_t)t, -1, 1);
    vn_tensor *b = rand_tensor(3, sb, 80 + (uint64_t)t, -1, 1);
    vn_tensor *in[2] = {a, b};
    char what[32];
    snprintf(what, sizeof what, "bmm ta=%d tb=%d", t & 1, (t >> 1) & 1);
    VN_CHECK_GRAD(what, g_bmm, 2, in, &t, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(a);
    vn_tensor_free(b);
}
END_TEST

static vn_tensor *g_maxpool(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const int *a = user;
    return vn_max_pool2d_ex(ctx, in[0], a[0], a[1], a[2]);
}

/* SPPF's chain of three pools, as well as single pools with other strides. */
static vn_tensor *g_sppf(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    vn_tensor *y1 = vn_max_pool2d_ex(ctx, in[0], 5, 1, 2);
    vn_tensor *y2 = vn_max_pool2d_ex(ctx, y1, 5, 1, 2);
    vn_tensor *y3 = vn_max_pool2d_ex(ctx, y2, 5, 1, 2);
    return vn_concat(ctx, 4, (vn_tensor *[]){in[0], y1, y2, y3});
}

START_TEST(test_grad_maxpool)
{
    static const int args[][3] = {{5, 1, 2}, {3, 2, 1}, {3, 1, 0}, {4, 3, 2}};
    vn_tensor *x = distinct_tensor(4, (int64_t[]){2, 6, 5, 3}, 90 + (uint64_t)_i);
    char what[48];
    if (_i < 4) {
        snprintf(what, sizeof what, "max_pool2d k%d s%d p%d", args[_i][0], args[_i][1],
                 args[_i][2]);
        VN_CHECK_GRAD(what, g_maxpool, 1, &x, (void *)args[_i], PIECE_EPS, PIECE_TOL);
    } else {
        VN_CHECK_GRAD("sppf chain", g_sppf, 1, &x, NULL, PIECE_EPS, PIECE_TOL);
    }
    vn_tensor_free(x);
}
END_TEST

/* ---- save and recompute under vn_release ------------------------------------------------ */

/* A chain through every new op; with release, each intermediate is released after its last
 * use, as model forwards do. Returns the output (its gradient is seeded by the caller). */
static vn_tensor *release_chain(vn_ctx *ctx, vn_tensor *x, vn_tensor *w, bool release)
{
#define REL(t) do { if (release) vn_release(ctx, (t)); } while (0)
    vn_tensor *h = vn_linear(ctx, x, w, NULL);
    vn_tensor *a = vn_silu(ctx, h);
    REL(h);
    vn_tensor *p = vn_max_pool2d_ex(ctx, a, 5, 1, 2);
    vn_tensor *u = vn_upsample_nearest(ctx, p, 2);
    REL(p);
    vn_tensor *halves[2];
    vn_split(ctx, a, 2, (int64_t[]){1, 3}, halves);
    REL(a);
    vn_tensor *d0 = vn_upsample_nearest(ctx, halves[0], 2);
    vn_tensor *d1 = vn_upsample_nearest(ctx, halves[1], 2);
    REL(halves[0]);
    REL(halves[1]);
    vn_tensor *c = vn_concat(ctx, 3, (vn_tensor *[]){u, d0, d1}); /* 8 channels */
    REL(u);
    REL(d0);
    REL(d1);
    vn_tensor *r = vn_reshape(ctx, c, 3, (int64_t[]){2, 12 * 10, 8});
    vn_tensor *q = vn_sigmoid(ctx, r);
    vn_tensor *s = vn_softmax(ctx, vn_bmm(ctx, q, r, false, true, 0.3f));
    vn_tensor *o = vn_bmm(ctx, s, q, false, false, 1.0f);
    REL(s);
    REL(q);
    vn_tensor *t = vn_permute(ctx, vn_reshape(ctx, o, 4, (int64_t[]){2, 12, 10, 8}),
                              (int[]){0, 3, 1, 2});
    return t;
#undef REL
}

START_TEST(test_release_same_gradients)
{
    int64_t xs[4] = {2, 6, 5, 4}, ws[2] = {4, 4};
    float *grads[2][2];
    size_t peak[2];
    for (int rel = 0; rel < 2; rel++) {
        vn_tensor *x = rand_tensor(4, xs, 100, -2, 2), *w = rand_tensor(2, ws, 101, -1, 1);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *y = release_chain(ctx, x, w, rel);
        ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
        float *seed = malloc((size_t)y->numel * sizeof *seed);
        vn_test_fill_uniform(seed, y->numel, 102, -1, 1);
        ck_assert_msg(vn_backward_with(ctx, y, seed) == VN_OK, "%s", vn_ctx_error(ctx));
        vn_mem_stats ms;
        vn_ctx_mem_stats(ctx, &ms);
        peak[rel] = ms.pool_peak;
        grads[rel][0] = malloc((size_t)x->numel * sizeof(float));
        grads[rel][1] = malloc((size_t)w->numel * sizeof(float));
        memcpy(grads[rel][0], x->grad, (size_t)x->numel * sizeof(float));
        memcpy(grads[rel][1], w->grad, (size_t)w->numel * sizeof(float));
        free(seed);
        vn_ctx_destroy(ctx);
        vn_tensor_free(x);
        vn_tensor_free(w);
    }
    ck_assert_msg(!memcmp(grads[0][0], grads[1][0], 2 * 6 * 5 * 4 * sizeof(float)),
                  "input gradient changes under vn_release");
    ck_assert_msg(!memcmp(grads[0][1], grads[1][1], 4 * 4 * sizeof(float)),
                  "weight gradient changes under vn_release");
    ck_assert_msg(peak[1] <= peak[0], "release raised the peak (%zu > %zu bytes)", peak[1],
                  peak[0]);
    fprintf(stderr, "release chain: pool peak %zu bytes kept, %zu released\n", peak[0], peak[1]);
    for (int i = 0; i < 2; i++) {
        free(grads[i][0]);
        free(grads[i][1]);
    }
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

static void expect_error(vn_ctx *ctx, vn_tensor *y, const char *needle)
{
    ck_assert_ptr_null(y);
    ck_assert_int_ne(vn_ctx_status(ctx), VN_OK);
    ck_assert_msg(strstr(vn_ctx_error(ctx), needle) != NULL, "error '%s' lacks '%s'",
                  vn_ctx_error(ctx), needle);
    vn_ctx_reset(ctx);
}

START_TEST(test_errors)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *a = vn_tensor_new4(2, 3, 4, 5, false), *b = vn_tensor_new4(2, 3, 5, 5, false);
    vn_tensor *m3 = vn_tensor_new(3, (int64_t[]){2, 3, 4}, false);
    expect_error(ctx, vn_concat(ctx, 2, (vn_tensor *[]){a, b}), "differs from input 0");
    expect_error(ctx, vn_concat(ctx, 0, NULL), "at least one");
    expect_error(ctx, vn_slice_last(ctx, a, 3, 3), "not inside the last dim");
    vn_tensor *parts[2];
    ck_assert_int_ne(vn_split(ctx, a, 2, (int64_t[]){2, 2}, parts), VN_OK);
    expect_error(ctx, NULL, "add up to 4");
    expect_error(ctx, vn_upsample_nearest(ctx, m3, 2), "NHWC");
    expect_error(ctx, vn_upsample_nearest(ctx, a, 0), "at least 1");
    expect_error(ctx, vn_permute(ctx, a, (int[]){0, 1, 1, 3}), "not a permutation");
    expect_error(ctx, vn_bmm(ctx, m3, m3, false, false, 1.0f), "bmm: needs");
    expect_error(ctx, vn_bmm(ctx, a, m3, false, true, 1.0f), "bmm: needs");
    expect_error(ctx, vn_max_pool2d_ex(ctx, a, 5, 1, 3), "padding 3");
    expect_error(ctx, vn_max_pool2d_ex(ctx, a, 7, 1, 0), "larger than the padded");
    expect_error(ctx, vn_max_pool2d_ex(ctx, m3, 3, 1, 1), "NHWC");
    /* Errors stick: a chain fed by a failed op returns NULL without a new message. */
    vn_tensor *y = vn_silu(ctx, vn_sigmoid(ctx, vn_softmax(ctx, vn_permute(ctx, a,
                                                                   (int[]){0, 0, 1, 2}))));
    expect_error(ctx, y, "permute");
    vn_ctx_destroy(ctx);
    vn_tensor_free(a);
    vn_tensor_free(b);
    vn_tensor_free(m3);
}
END_TEST

/* Without grad mode nothing is recorded and the outputs are the same. */
START_TEST(test_no_grad_records_nothing)
{
    vn_tensor *x = rand_tensor(4, (int64_t[]){1, 4, 4, 6}, 120, -2, 2);
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_concat(ctx, 2, (vn_tensor *[]){vn_silu(ctx, x), vn_max_pool2d_ex(ctx, x, 5, 1, 2)});
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->node);
    ck_assert(!vn_tensor_requires_grad(y));
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
}
END_TEST

/* SiLU and sigmoid's own exp against double precision over [-90, 90] (relative 1e-6, or 1e-30
 * absolute where the result underflows), their saturation, and NaN / infinity passing
 * through as libm's would. */
START_TEST(test_silu_sigmoid_range)
{
    enum { N = 1801 + 4 };
    int64_t shape[1] = {N};
    vn_tensor *x = vn_tensor_new(1, shape, false);
    for (int i = 0; i < 1801; i++) x->data[i] = -90.0f + 0.1f * (float)i;
    x->data[1801] = NAN;
    x->data[1802] = INFINITY;
    x->data[1803] = -INFINITY;
    x->data[1804] = 0.0f;
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *sg = vn_sigmoid(ctx, x), *si = vn_silu(ctx, x);
    ck_assert(sg && si);
    for (int i = 0; i < 1801; i++) {
        double v = x->data[i], es = 1.0 / (1.0 + exp(-v)), ei = v * es;
        double ds = fabs(sg->data[i] - es), di = fabs(si->data[i] - ei);
        ck_assert_msg(ds <= 1e-6 * es + 1e-30, "sigmoid(%g) = %.9g, want %.9g", v, (double)sg->data[i], es);
        ck_assert_msg(di <= 1e-6 * fabs(ei) + 1e-30 * fabs(v), "silu(%g) = %.9g, want %.9g", v,
                      (double)si->data[i], ei);
    }
    ck_assert(isnan(sg->data[1801]) && isnan(si->data[1801]));
    ck_assert(sg->data[1802] == 1.0f && si->data[1802] == INFINITY);
    ck_assert(sg->data[1803] >= 0.0f && sg->data[1803] < 1e-30f);
    ck_assert(sg->data[1804] == 0.5f && si->data[1804] == 0.0f);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("detect_ops");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, test_fixture_model_leaves, 0, N_CASES);
    tcase_add_loop_test(tc, test_fixture_step_leaves, 0, N_CASES);
    tcase_add_loop_test(tc, test_grad_unary, 0, 3);
    tcase_add_test(tc, test_grad_shape_chain);
    tcase_add_loop_test(tc, test_grad_bmm, 0, 4);
    tcase_add_loop_test(tc, test_grad_maxpool, 0, 5);
    tcase_add_test(tc, test_release_same_gradients);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_no_grad_records_nothing);
    tcase_add_test(tc, test_silu_sigmoid_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }
