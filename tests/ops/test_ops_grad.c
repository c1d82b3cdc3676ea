/* Finite-difference gradient checks of batch_norm2d, the pools, matmul/linear and the
 * losses (vn_test_gradcheck: L = sum(out * r) in double, central differences with the
 * perturbation applied in float32; error = |analytic - numeric| / max(1, |numeric|)).
 *
 * Step sizes and tolerances: smooth ops (batch norm, dense, losses) use eps 1e-2 and
 * tolerance 2e-3; the pools, piecewise linear, use eps 1e-3 and tolerance 1e-4 on inputs
 * whose values are distinct multiples of 0.01, so no perturbation can change an argmax. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"
#include "base/vn_rng.h"

#define SMOOTH_EPS 1e-2
#define SMOOTH_TOL 2e-3
#define POOL_EPS 1e-3
#define POOL_TOL 1e-4

static vn_tensor *rand_tensor(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi,
                              bool rg)
{
    vn_tensor *t = vn_tensor_new(ndim, shape, rg);
    ck_assert_ptr_nonnull(t);
    vn_test_fill_uniform(t->data, t->numel, seed, lo, hi);
    return t;
}

/* Distinct values k * 0.01 - offset in a seeded random order (no ties for the pools). */
static vn_tensor *distinct_tensor(int64_t n, int64_t h, int64_t w, int64_t c, uint64_t seed)
{
    vn_tensor *t = vn_tensor_new4(n, h, w, c, true);
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x9001, 0);
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

/* ---- batch norm ----------------------------------------------------------------------- */

typedef struct bn_args {
    bool training;
    vn_tensor *rm, *rv;
    float eps;
} bn_args;

static vn_tensor *bn_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const bn_args *a = user;
    return vn_batch_norm2d(ctx, in[0], in[1], in[2], a->rm, a->rv, NULL, a->training, 0.1f, a->eps);
}

static const int64_t bn_shapes[][4] = {{2, 3, 3, 4}, {2, 7, 5, 3}, {1, 5, 3, 1}, {3, 1, 1, 5},
                                       {1, 2, 3, 2}};
#define N_BN_SHAPES ((int)(sizeof bn_shapes / sizeof bn_shapes[0]))

/* _i: shape index, x {training, training without affine, eval, eval without affine}. */
START_TEST(test_grad_bn)
{
    const int64_t *s = bn_shapes[_i % N_BN_SHAPES];
    int mode = _i / N_BN_SHAPES;
    bool training = mode < 2, affine = mode % 2 == 0;
    int64_t C = s[3];
    vn_tensor *x = rand_tensor(4, s, 100 + (uint64_t)_i, -2.0f, 3.0f, true);
    vn_tensor *w = affine ? rand_tensor(1, &C, 200 + (uint64_t)_i, 0.5f, 1.5f, true) : NULL;
    vn_tensor *b = affine ? rand_tensor(1, &C, 300 + (uint64_t)_i, -1.0f, 1.0f, true) : NULL;
    bn_args a = {training, NULL, NULL, 1e-5f};
    if (!training) {
        a.rm = rand_tensor(1, &C, 400 + (uint64_t)_i, -0.5f, 0.5f, false);
        a.rv = rand_tensor(1, &C, 500 + (uint64_t)_i, 0.5f, 2.0f, false);
    }
    vn_tensor *in[3] = {x, w, b};
    char what[96];
    snprintf(what, sizeof what, "bn %s%s [%lld,%lld,%lld,%lld]", training ? "train" : "eval",
             affine ? "" : " no-affine", (long long)s[0], (long long)s[1], (long long)s[2],
             (long long)s[3]);
    VN_CHECK_GRAD(what, bn_fwd, 3, in, &a, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(a.rm);
    vn_tensor_free(a.rv);
}
END_TEST

/* BN behind an identity linear layer, then a max pool: the fresh-gradient paths. */
static vn_tensor *bn_chain_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    vn_tensor *h = vn_linear(ctx, in[0], in[3], NULL);
    h = vn_batch_norm2d(ctx, h, in[1], in[2], NULL, NULL, NULL, true, 0.1f, 1e-5f);
    return vn_max_pool2d(ctx, h, 2);
}

START_TEST(test_grad_bn_chain)
{
    int64_t s[4] = {2, 4, 5, 3}, C = 3;
    vn_tensor *x = rand_tensor(4, s, 601, -2.0f, 3.0f, true);
    vn_tensor *w = rand_tensor(1, &C, 602, 0.5f, 1.5f, true);
    vn_tensor *b = rand_tensor(1, &C, 603, -1.0f, 1.0f, true);
    vn_tensor *eye = vn_tensor_new(2, (int64_t[]){C, C}, false);
    for (int i = 0; i < C; i++) eye->data[i * C + i] = 1.0f;
    vn_tensor *in[4] = {x, w, b, eye};
    VN_CHECK_GRAD("linear -> bn -> max_pool2d", bn_chain_fwd, 4, in, NULL, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(eye);
}
END_TEST

/* ---- pools ---------------------------------------------------------------------------- */

typedef struct pool_args {
    int kind; /* 0 max, 1 adaptive max, 2 adaptive avg, 3 global avg */
    int k, oh, ow;
} pool_args;

static vn_tensor *pool_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const pool_args *a = user;
    switch (a->kind) {
    case 0: return vn_max_pool2d(ctx, in[0], a->k);
    case 1: return vn_adaptive_max_pool2d(ctx, in[0], a->oh, a->ow);
    case 2: return vn_adaptive_avg_pool2d(ctx, in[0], a->oh, a->ow);
    default: return vn_global_avg_pool(ctx, in[0]);
    }
}

typedef struct pool_case {
    int64_t shape[4];
    pool_args a;
    const char *what;
} pool_case;

static const pool_case pool_cases[] = {
    {{2, 5, 7, 3}, {0, 2, 0, 0}, "max_pool2d k2 [2,5,7,3]"},
    {{1, 7, 8, 2}, {0, 3, 0, 0}, "max_pool2d k3 [1,7,8,2]"},
    {{1, 5, 5, 1}, {0, 2, 0, 0}, "max_pool2d k2 [1,5,5,1]"},
    {{2, 9, 6, 2}, {0, 3, 0, 0}, "max_pool2d k3 [2,9,6,2]"},
    {{2, 7, 7, 3}, {1, 0, 3, 3}, "adaptive_max 7x7->3x3"},
    {{1, 5, 5, 2}, {1, 0, 5, 5}, "adaptive_max 5x5->5x5"},
    {{1, 3, 4, 2}, {1, 0, 5, 6}, "adaptive_max 3x4->5x6"},
    {{2, 10, 9, 1}, {1, 0, 4, 2}, "adaptive_max 10x9->4x2"},
    {{2, 7, 7, 3}, {2, 0, 3, 3}, "adaptive_avg 7x7->3x3"},
    {{1, 5, 5, 2}, {2, 0, 5, 5}, "adaptive_avg 5x5->5x5"},
    {{1, 3, 4, 2}, {2, 0, 5, 6}, "adaptive_avg 3x4->5x6"},
    {{2, 10, 9, 1}, {2, 0, 4, 2}, "adaptive_avg 10x9->4x2"},
    {{3, 4, 5, 6}, {3, 0, 1, 1}, "global_avg [3,4,5,6]"},
    {{1, 3, 2, 1}, {3, 0, 1, 1}, "global_avg [1,3,2,1]"},
};

START_TEST(test_grad_pool)
{
    const pool_case *pc = &pool_cases[_i];
    vn_tensor *x = distinct_tensor(pc->shape[0], pc->shape[1], pc->shape[2], pc->shape[3],
                                   700 + (uint64_t)_i);
    VN_CHECK_GRAD(pc->what, pool_fwd, 1, &x, (void *)&pc->a, POOL_EPS, POOL_TOL);
    vn_tensor_free(x);
}
END_TEST

/* ---- dense ---------------------------------------------------------------------------- */

static vn_tensor *matmul_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    return vn_matmul(ctx, in[0], in[1]);
}

static vn_tensor *linear_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    return vn_linear(ctx, in[0], in[1], in[2]);
}

START_TEST(test_grad_matmul)
{
    static const int64_t dims[][3] = {{5, 7, 3}, {1, 4, 1}, {3, 1, 6}};
    const int64_t *d = dims[_i];
    vn_tensor *a = rand_tensor(2, (int64_t[]){d[0], d[1]}, 800 + (uint64_t)_i, -1, 1, true);
    vn_tensor *b = rand_tensor(2, (int64_t[]){d[1], d[2]}, 810 + (uint64_t)_i, -1, 1, true);
    vn_tensor *in[2] = {a, b};
    char what[64];
    snprintf(what, sizeof what, "matmul %lldx%lldx%lld", (long long)d[0], (long long)d[1],
             (long long)d[2]);
    VN_CHECK_GRAD(what, matmul_fwd, 2, in, NULL, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(a);
    vn_tensor_free(b);
}
END_TEST

START_TEST(test_grad_linear)
{
    static const struct {
        int ndim;
        int64_t shape[4];
        int64_t out;
        bool bias;
    } cases[] = {{3, {2, 3, 5}, 4, true},
                 {2, {6, 5}, 3, false},
                 {4, {2, 2, 3, 7}, 5, true},
                 {1, {4}, 2, true},
                 {2, {1, 1}, 1, true}};
    int nd = cases[_i].ndim;
    int64_t in_f = cases[_i].shape[nd - 1], out_f = cases[_i].out;
    vn_tensor *x = rand_tensor(nd, cases[_i].shape, 900 + (uint64_t)_i, -1, 1, true);
    vn_tensor *w = rand_tensor(2, (int64_t[]){out_f, in_f}, 910 + (uint64_t)_i, -1, 1, true);
    vn_tensor *b = cases[_i].bias ? rand_tensor(1, &out_f, 920 + (uint64_t)_i, -1, 1, true) : NULL;
    vn_tensor *in[3] = {x, w, b};
    char what[64];
    snprintf(what, sizeof what, "linear case %d", _i);
    VN_CHECK_GRAD(what, linear_fwd, 3, in, NULL, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
}
END_TEST

/* ---- losses --------------------------------------------------------------------------- */

typedef struct loss_args {
    const int32_t *labels;
    const float *targets;
    float smoothing;
    bool bce;
} loss_args;

static vn_tensor *loss_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const loss_args *a = user;
    if (a->bce) return vn_bce_with_logits(ctx, in[0], a->targets);
    return vn_cross_entropy(ctx, in[0], a->labels, a->targets, a->smoothing);
}

START_TEST(test_grad_loss)
{
    /* _i: 0 labels, 1 smoothing 0.1, 2 3-D logits with smoothing 0.2, 3 soft targets,
     * 4 BCE, 5 a single row of a single class, 6 BCE on 3-D logits. */
    static const int64_t shapes[][3] = {{7, 10, 0}, {7, 10, 0}, {2, 3, 5}, {5, 8, 0},
                                        {6, 9, 0}, {1, 1, 0}, {2, 3, 4}};
    const int64_t *s = shapes[_i];
    int nd = s[2] ? 3 : 2;
    vn_tensor *x = rand_tensor(nd, s, 1000 + (uint64_t)_i, -3, 3, true);
    int64_t C = s[nd - 1], R = x->numel / C;
    int32_t labels[16];
    float targets[128];
    vn_rng rng;
    vn_rng_seed(&rng, 1100 + (uint64_t)_i, 0, 0);
    for (int64_t r = 0; r < R; r++) labels[r] = (int32_t)vn_rng_below(&rng, (uint64_t)C);
    vn_test_fill_uniform(targets, x->numel, 1200 + (uint64_t)_i, 0.0f, 1.0f);
    if (_i == 3) /* soft targets: rows summing to 1, as after mixup */
        for (int64_t r = 0; r < R; r++) {
            float sum = 0;
            for (int64_t c = 0; c < C; c++) sum += targets[r * C + c];
            for (int64_t c = 0; c < C; c++) targets[r * C + c] /= sum;
        }
    loss_args a = {labels, NULL, 0.0f, false};
    if (_i == 1) a.smoothing = 0.1f;
    if (_i == 2) a.smoothing = 0.2f;
    if (_i == 3) a = (loss_args){NULL, targets, 0.0f, false};
    if (_i == 4 || _i == 6) a = (loss_args){NULL, targets, 0.0f, true};
    char what[64];
    snprintf(what, sizeof what, "loss case %d", _i);
    VN_CHECK_GRAD(what, loss_fwd, 1, &x, &a, SMOOTH_EPS, SMOOTH_TOL);
    vn_tensor_free(x);
}
END_TEST

static Suite *grad_suite(void)
{
    Suite *s = suite_create("ops-grad");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_loop_test(tc, test_grad_bn, 0, 4 * N_BN_SHAPES);
    tcase_add_test(tc, test_grad_bn_chain);
    tcase_add_loop_test(tc, test_grad_pool, 0, (int)(sizeof pool_cases / sizeof pool_cases[0]));
    tcase_add_loop_test(tc, test_grad_matmul, 0, 3);
    tcase_add_loop_test(tc, test_grad_linear, 0, 5);
    tcase_add_loop_test(tc, test_grad_loss, 0, 7);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(grad_suite(), true);
}
