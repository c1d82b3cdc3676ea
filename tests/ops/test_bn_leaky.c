/* vn_batch_norm2d_leaky, BatchNorm and leaky_relu as one op (VanillaNet's BN + activation):
 *  - the same bytes as vn_batch_norm2d followed by vn_leaky_relu: output, the input's gradient
 *    (fresh, and accumulated onto another reader's), the weight and bias gradients and the
 *    running statistics, in training and eval, for slopes 0 (ReLU), 0.01, 0.37 and 1, with
 *    every output kept for backward and with none (recomputed), on 1 and 2 threads, and for
 *    more channels than one channel block (300);
 *  - finite differences of the fused op (training and eval), on inputs whose normalised
 *    values keep away from the kink;
 *  - a negative slope gives the two ops (the same bytes as calling them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"

typedef struct run_out {
    float *y, *dx, *dw, *db, *rm, *rv;
    int64_t nbt;
} run_out;

static void run_free(run_out *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
    free(r->rm);
    free(r->rv);
}

/* out = act(bn(x)) (+ x when shared: x's gradient then accumulates over two readers), with
 * a fixed gradient seed; fused or as the two ops. */
static run_out run_once(bool fused, const int64_t *shape, bool training, float slope,
                        bool keep_all, bool shared, int threads)
{
    vn_set_threads(threads);
    int64_t C = shape[3];
    vn_tensor *x = vn_tensor_new4(shape[0], shape[1], shape[2], C, true);
    vn_tensor *w = vn_tensor_new(1, &C, true), *b = vn_tensor_new(1, &C, true);
    vn_tensor *rm = vn_tensor_new(1, &C, false), *rv = vn_tensor_new(1, &C, false);
    vn_test_fill_uniform(x->data, x->numel, 11, -2.0f, 3.0f);
    vn_test_fill_uniform(w->data, C, 12, 0.5f, 1.5f);
    vn_test_fill_uniform(b->data, C, 13, -0.5f, 0.5f);
    vn_test_fill_uniform(rm->data, C, 14, -0.3f, 0.3f);
    vn_test_fill_uniform(rv->data, C, 15, 0.5f, 2.0f);
    int64_t nbt = 0;
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn_ctx_set_keep(ctx, keep_all ? SIZE_MAX : 0);
    /* The op reads an activation (a step tensor, whose gradient buffer starts fresh), as in
     * the model: x scaled by 1. */
    vn_tensor *xs = vn_scale(ctx, x, 1.0f), *y;
    ck_assert_msg(xs != NULL, "%s", vn_ctx_error(ctx));
    if (fused) {
        y = vn_batch_norm2d_leaky(ctx, xs, w, b, rm, rv, &nbt, training, 0.1f, 1e-5f, slope);
    } else {
        vn_tensor *h = vn_batch_norm2d(ctx, xs, w, b, rm, rv, &nbt, training, 0.1f, 1e-5f);
        y = h ? vn_leaky_relu(ctx, h, slope) : NULL;
        if (h) vn_release(ctx, h);
    }
    if (y && shared) y = vn_add(ctx, y, xs);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    run_out r = {.y = vn_test_dup(y->data, y->numel)};
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    vn_test_fill_uniform(seed, y->numel, 16, -1.0f, 1.0f);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    r.dx = vn_test_dup(x->grad, x->numel);
    r.dw = vn_test_dup(w->grad, C);
    r.db = vn_test_dup(b->grad, C);
    r.rm = vn_test_dup(rm->data, C);
    r.rv = vn_test_dup(rv->data, C);
    r.nbt = nbt;
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(rm);
    vn_tensor_free(rv);
    return r;
}

static const int64_t shapes[][4] = {{3, 15, 17, 72}, {2, 5, 7, 300}, {1, 3, 3, 5}};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))
static const float slopes[] = {0.0f, 0.01f, 0.37f, 1.0f};
#define N_SLOPES ((int)(sizeof slopes / sizeof slopes[0]))

/* _i over shapes x slopes x {train, eval} x {keep, recompute} x {fresh, shared} x threads. */
START_TEST(same_bytes_as_two_ops)
{
    int i = _i;
    const int64_t *s = shapes[i % N_SHAPES];
    i /= N_SHAPES;
    float slope = slopes[i % N_SLOPES];
    i /= N_SLOPES;
    bool training = i % 2 == 0, keep = (i / 2) % 2 == 0, shared = (i / 4) % 2 == 1;
    int threads = 1 + (i / 8) % 2;
    run_out a = run_once(false, s, training, slope, keep, shared, threads);
    run_out f = run_once(true, s, training, slope, keep, shared, threads);
    int64_t n = s[0] * s[1] * s[2] * s[3], C = s[3];
    char what[160];
    snprintf(what, sizeof what, "[%lld,%lld,%lld,%lld] slope %g %s %s %s %d thread(s)",
             (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3], (double)slope,
             training ? "train" : "eval", keep ? "kept" : "recomputed",
             shared ? "x read twice" : "x read once", threads);
    ck_assert_msg(memcmp(a.y, f.y, (size_t)n * sizeof(float)) == 0, "%s: output differs", what);
    ck_assert_msg(memcmp(a.dx, f.dx, (size_t)n * sizeof(float)) == 0, "%s: dx differs", what);
    ck_assert_msg(memcmp(a.dw, f.dw, (size_t)C * sizeof(float)) == 0, "%s: dweight differs", what);
    ck_assert_msg(memcmp(a.db, f.db, (size_t)C * sizeof(float)) == 0, "%s: dbias differs", what);
    ck_assert_msg(memcmp(a.rm, f.rm, (size_t)C * sizeof(float)) == 0, "%s: running_mean", what);
    ck_assert_msg(memcmp(a.rv, f.rv, (size_t)C * sizeof(float)) == 0, "%s: running_var", what);
    ck_assert_int_eq(a.nbt, f.nbt);
    /* The runs did something: negative outputs met the slope and gradients are not zero. */
    int neg = 0;
    bool grad = false;
    for (int64_t k = 0; k < n; k++) neg += f.y[k] < 0.0f || (slope == 0.0f && f.y[k] == 0.0f);
    for (int64_t c = 0; c < C; c++) grad |= f.dw[c] != 0.0f;
    ck_assert_msg(shared || slope == 1.0f || (neg > 0 && neg < n), "%s: %d of %lld outputs below 0",
                  what, neg, (long long)n);
    ck_assert(grad);
    run_free(&a);
    run_free(&f);
}
END_TEST

/* A negative slope is the two ops (backward must read the input's sign then). */
START_TEST(negative_slope_is_two_ops)
{
    const int64_t s[4] = {2, 4, 5, 6};
    run_out a = run_once(false, s, true, -0.2f, true, false, 2);
    run_out f = run_once(true, s, true, -0.2f, true, false, 2);
    int64_t n = 2 * 4 * 5 * 6;
    ck_assert(memcmp(a.y, f.y, (size_t)n * sizeof(float)) == 0);
    ck_assert(memcmp(a.dx, f.dx, (size_t)n * sizeof(float)) == 0);
    ck_assert(memcmp(a.dw, f.dw, 6 * sizeof(float)) == 0);
    run_free(&a);
    run_free(&f);
}
END_TEST

typedef struct fd_args {
    bool training;
    float slope;
    vn_tensor *rm, *rv;
} fd_args;

static vn_tensor *fd_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const fd_args *a = user;
    return vn_batch_norm2d_leaky(ctx, in[0], in[1], in[2], a->rm, a->rv, NULL, a->training, 0.1f,
                                 1e-5f, a->slope);
}

/* Inputs from two clusters per channel (x = +-1 plus a little noise): the normalised values
 * sit near +-1, far from the activation's kink at 0, so central differences see no kink. */
START_TEST(finite_differences)
{
    bool training = _i % 2 == 0;
    float slope = _i / 2 == 0 ? 0.2f : 0.0f;
    int64_t s[4] = {2, 3, 4, 5}, C = 5;
    vn_tensor *x = vn_tensor_new4(2, 3, 4, 5, true);
    vn_test_fill_uniform(x->data, x->numel, 21, -0.1f, 0.1f);
    for (int64_t k = 0; k < x->numel; k++) x->data[k] += (k / C) % 2 ? 1.0f : -1.0f;
    vn_tensor *w = vn_tensor_new(1, &C, true), *b = vn_tensor_new(1, &C, true);
    vn_test_fill_uniform(w->data, C, 22, 0.5f, 1.5f);
    vn_test_fill_uniform(b->data, C, 23, -0.1f, 0.1f);
    fd_args a = {training, slope, NULL, NULL};
    if (!training) {
        a.rm = vn_tensor_new(1, &C, false);
        a.rv = vn_tensor_new(1, &C, false);
        vn_test_fill_uniform(a.rm->data, C, 24, -0.1f, 0.1f);
        vn_test_fill_uniform(a.rv->data, C, 25, 0.8f, 1.2f);
    }
    vn_tensor *in[3] = {x, w, b};
    char what[96];
    snprintf(what, sizeof what, "bn + leaky_relu(%g) %s [%lld,%lld,%lld,%lld]", (double)slope,
             training ? "train" : "eval", (long long)s[0], (long long)s[1], (long long)s[2],
             (long long)s[3]);
    VN_CHECK_GRAD(what, fd_fwd, 3, in, &a, 1e-2, 2e-3);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(a.rm);
    vn_tensor_free(a.rv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bn-leaky");
    TCase *tc = tcase_create("fused");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, same_bytes_as_two_ops, 0, N_SHAPES * N_SLOPES * 16);
    tcase_add_test(tc, negative_slope_is_two_ops);
    tcase_add_loop_test(tc, finite_differences, 0, 4);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
