/* vn_conv2d_relu, a depthwise conv of relu(x) as one op (VanillaNet's series activation):
 *  - the same bytes as vn_relu followed by vn_conv2d: output, the input's gradient (fresh,
 *    and accumulated onto another reader's), the weight and bias gradients, for kernels 3, 5,
 *    7 and stride 1 (the vector kernels and the fused backward) and stride 2 (the gather),
 *    channel counts that use the vector blocks, their tails and both (5, 20, 72, 300), with
 *    every output kept and with none (recomputed), on 1 and 2 threads; inputs hold exact
 *    zeros and negative zeros;
 *  - finite differences on inputs away from the kink;
 *  - a conv that is not depthwise gives the two ops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"

typedef struct run_out {
    float *y, *dx, *dw, *db;
    int64_t ny, nx, nw, c;
} run_out;

typedef struct conv_case {
    int64_t n, h, w, c;
    int k, stride, pad;
    bool bias, depthwise;
} conv_case;

static run_out run_once(bool fused, const conv_case *cc, bool keep_all, bool shared, int threads)
{
    vn_set_threads(threads);
    int64_t co = cc->c, ci = cc->depthwise ? 1 : cc->c;
    vn_tensor *x = vn_tensor_new4(cc->n, cc->h, cc->w, cc->c, true);
    vn_tensor *w = vn_tensor_new4(co, cc->k, cc->k, ci, true);
    vn_tensor *b = cc->bias ? vn_tensor_new(1, &co, true) : NULL;
    vn_test_fill_uniform(x->data, x->numel, 31, -1.0f, 1.0f);
    for (int64_t i = 0; i < x->numel; i += 7) x->data[i] = 0.0f;
    for (int64_t i = 3; i < x->numel; i += 11) x->data[i] = -0.0f;
    vn_test_fill_uniform(w->data, w->numel, 32, -0.5f, 0.5f);
    if (b) vn_test_fill_uniform(b->data, co, 33, -0.2f, 0.2f);
    vn_conv_params p = {cc->stride, cc->stride, cc->pad, cc->pad,
                        cc->depthwise ? (int)cc->c : 1};
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(ctx);
    vn_ctx_set_keep(ctx, keep_all ? SIZE_MAX : 0);
    /* The op reads an activation (a step tensor, whose gradient buffer starts fresh), as in
     * the model: x scaled by 1. */
    vn_tensor *xs = vn_scale(ctx, x, 1.0f), *y;
    ck_assert_msg(xs != NULL, "%s", vn_ctx_error(ctx));
    if (fused) {
        y = vn_conv2d_relu(ctx, xs, w, b, p);
    } else {
        vn_tensor *r = vn_relu(ctx, xs);
        y = r ? vn_conv2d(ctx, r, w, b, p) : NULL;
        if (r) vn_release(ctx, r);
    }
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    if (shared) { /* the activation read by a second op: its gradient accumulates over two */
        vn_tensor *s = vn_global_avg_pool(ctx, xs);
        vn_tensor *ys = vn_global_avg_pool(ctx, y);
        ck_assert_msg(s && ys, "%s", vn_ctx_error(ctx));
        y = vn_add(ctx, ys, s);
        ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    }
    run_out r = {.y = vn_test_dup(y->data, y->numel), .ny = y->numel, .nx = x->numel,
                 .nw = w->numel, .c = co};
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    vn_test_fill_uniform(seed, y->numel, 34, -1.0f, 1.0f);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    r.dx = vn_test_dup(x->grad, x->numel);
    r.dw = vn_test_dup(w->grad, w->numel);
    r.db = b ? vn_test_dup(b->grad, co) : NULL;
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    return r;
}

static const conv_case cases[] = {
    {2, 9, 11, 72, 7, 1, 3, false, true},   /* vector blocks, VanillaNet's 7x7 */
    {2, 7, 7, 20, 3, 1, 1, true, true},     /* blocks and a tail, deploy bias */
    {3, 6, 5, 5, 5, 1, 2, false, true},     /* tail only */
    {1, 6, 6, 300, 7, 1, 3, false, true},   /* many blocks */
    {2, 8, 9, 24, 3, 2, 1, false, true},    /* stride 2: the gather */
    {1, 4, 4, 8, 7, 1, 2, false, true},     /* rows shorter than the kernel */
    {2, 5, 5, 6, 3, 1, 1, true, false},     /* not depthwise: the two ops */
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void same(const char *what, const char *part, const float *a, const float *b, int64_t n)
{
    ck_assert_msg(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s: %s differs", what, part);
}

/* _i over cases x {keep, recompute} x {fresh, shared} x threads. */
START_TEST(same_bytes_as_two_ops)
{
    const conv_case *cc = &cases[_i % N_CASES];
    int i = _i / N_CASES;
    bool keep = i % 2 == 0, shared = (i / 2) % 2 == 1;
    int threads = 1 + (i / 4) % 2;
    run_out a = run_once(false, cc, keep, shared, threads);
    run_out f = run_once(true, cc, keep, shared, threads);
    char what[160];
    snprintf(what, sizeof what, "[%lld,%lld,%lld,%lld] k%d s%d p%d%s%s, %s, x read %s, %d thread(s)",
             (long long)cc->n, (long long)cc->h, (long long)cc->w, (long long)cc->c, cc->k,
             cc->stride, cc->pad, cc->bias ? " bias" : "", cc->depthwise ? "" : " dense",
             keep ? "kept" : "recomputed", shared ? "twice" : "once", threads);
    same(what, "output", a.y, f.y, a.ny);
    same(what, "dx", a.dx, f.dx, a.nx);
    same(what, "dweight", a.dw, f.dw, a.nw);
    if (cc->bias) same(what, "dbias", a.db, f.db, a.c);
    /* The inputs met the ReLU: some gradients at x are zero (x <= 0), others not. */
    int64_t zero = 0;
    for (int64_t k = 0; k < f.nx; k++) zero += f.dx[k] == 0.0f;
    ck_assert_msg(shared || (zero > 0 && zero < f.nx), "%s: %lld of %lld dx zero", what,
                  (long long)zero, (long long)f.nx);
    free(a.y), free(a.dx), free(a.dw), free(a.db);
    free(f.y), free(f.dx), free(f.dw), free(f.db);
}
END_TEST

static vn_tensor *fd_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    const vn_conv_params *p = user;
    return vn_conv2d_relu(ctx, in[0], in[1], NULL, *p);
}

/* x = +-0.5 plus a little noise: no value within the step of the kink. */
START_TEST(finite_differences)
{
    vn_tensor *x = vn_tensor_new4(2, 5, 6, 16, true);
    vn_tensor *w = vn_tensor_new4(16, 3, 3, 1, true);
    vn_test_fill_uniform(x->data, x->numel, 41, -0.05f, 0.05f);
    for (int64_t k = 0; k < x->numel; k++) x->data[k] += (k * 7 / 3) % 2 ? 0.5f : -0.5f;
    vn_test_fill_uniform(w->data, w->numel, 42, -0.5f, 0.5f);
    vn_conv_params p = VN_CONV(1, 1, 16);
    vn_tensor *in[2] = {x, w};
    VN_CHECK_GRAD("depthwise conv of relu(x), 3x3", fd_fwd, 2, in, &p, 1e-2, 2e-3);
    vn_tensor_free(x);
    vn_tensor_free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv-relu");
    TCase *tc = tcase_create("fused");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, same_bytes_as_two_ops, 0, N_CASES * 8);
    tcase_add_test(tc, finite_differences);
    suite_add_tcase(s, tc);
    return vn_test_run(s, false);
}
