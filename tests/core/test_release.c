/* Tests of step-memory release: vn_release, dropping and recomputing saved tensors in
 * backward, and the pool's reuse of freed space. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"
#include "models/vn_vanillanet.h"

enum { N = 2, H = 16, CIN = 16, CMID = 32, NCLS = 5 };

typedef struct net {
    vn_tensor *x, *w1, *g1, *b1, *w2, *g2, *b2, *wd, *g3, *b3, *wl, *bl;
    vn_tensor *rm[3], *rv[3];
    int32_t labels[N];
} net;

static vn_tensor *param(int64_t o, int64_t kh, int64_t kw, int64_t i, uint64_t seed, float lo,
                        float hi)
{
    vn_tensor *t = vn_tensor_new4(o, kh, kw, i, true);
    vn_test_fill_uniform(t->data, t->numel, seed, lo, hi);
    return t;
}

static vn_tensor *vec(int64_t c, uint64_t seed, float lo, float hi, bool grad)
{
    int64_t s[1] = {c};
    vn_tensor *t = vn_tensor_new(1, s, grad);
    vn_test_fill_uniform(t->data, c, seed, lo, hi);
    return t;
}

static void net_init(net *m)
{
    m->x = vn_tensor_new4(N, H, H, CIN, false);
    vn_test_fill_uniform(m->x->data, m->x->numel, 1, -1, 1);
    m->w1 = param(CIN, 1, 1, CIN, 2, -0.3f, 0.3f);
    m->w1->flags |= VN_TENSOR_OHWI;
    m->w2 = param(CMID, 1, 1, CIN, 3, -0.3f, 0.3f);
    m->w2->flags |= VN_TENSOR_OHWI;
    m->wd = param(CMID, 3, 3, 1, 4, -0.5f, 0.5f);
    m->wd->flags |= VN_TENSOR_OHWI;
    m->g1 = vec(CIN, 5, 0.5f, 1.5f, true);
    m->b1 = vec(CIN, 6, -0.2f, 0.2f, true);
    m->g2 = vec(CMID, 7, 0.5f, 1.5f, true);
    m->b2 = vec(CMID, 8, -0.2f, 0.2f, true);
    m->g3 = vec(CMID, 9, 0.5f, 1.5f, true);
    m->b3 = vec(CMID, 10, -0.2f, 0.2f, true);
    int64_t ws[2] = {NCLS, CMID};
    m->wl = vn_tensor_new(2, ws, true);
    vn_test_fill_uniform(m->wl->data, m->wl->numel, 11, -0.5f, 0.5f);
    m->bl = vec(NCLS, 12, -0.1f, 0.1f, true);
    for (int i = 0; i < 3; i++) {
        int c = i == 0 ? CIN : CMID;
        m->rm[i] = vec(c, 20 + (uint64_t)i, 0, 0, false);
        m->rv[i] = vec(c, 30 + (uint64_t)i, 1, 1, false);
    }
    for (int i = 0; i < N; i++) m->labels[i] = (i * 3) % NCLS;
}

static vn_tensor **net_params(net *m, int *n)
{
    static vn_tensor *p[11];
    vn_tensor *all[11] = {m->w1, m->g1, m->b1, m->w2, m->g2, m->b2, m->wd, m->g3, m->b3, m->wl, m->bl};
    memcpy(p, all, sizeof all);
    *n = 11;
    return p;
}

static void net_free(net *m)
{
    int n;
    vn_tensor **p = net_params(m, &n);
    for (int i = 0; i < n; i++) vn_tensor_free(p[i]);
    for (int i = 0; i < 3; i++) {
        vn_tensor_free(m->rm[i]);
        vn_tensor_free(m->rv[i]);
    }
    vn_tensor_free(m->x);
}

static vn_tensor *rel(vn_ctx *ctx, bool release, vn_tensor *consumed, vn_tensor *out)
{
    if (release) vn_release(ctx, consumed);
    return out;
}

/* conv 1x1 -> BN -> leaky -> conv 1x1 -> BN -> max-pool -> relu -> depthwise 3x3 -> BN ->
 * global pool -> dropout -> linear -> cross-entropy: every kind of saved state, and chains
 * of recomputable ops (BN -> max-pool -> relu) that backward must rebuild recursively. */
static vn_tensor *net_forward(vn_ctx *ctx, net *m, bool release, size_t *kept_bytes)
{
    vn_tensor *c1 = vn_conv2d(ctx, m->x, m->w1, NULL, VN_CONV(1, 0, 1));
    vn_tensor *y = vn_batch_norm2d(ctx, c1, m->g1, m->b1, m->rm[0], m->rv[0], NULL, true, 0.1f, 1e-5f);
    vn_release(ctx, release ? c1 : NULL);
    y = rel(ctx, release, y, vn_leaky_relu(ctx, y, 0.3f));
    vn_tensor *c2 = vn_conv2d(ctx, y, m->w2, NULL, VN_CONV(1, 0, 1));
    y = rel(ctx, release, y, c2);
    y = vn_batch_norm2d(ctx, c2, m->g2, m->b2, m->rm[1], m->rv[1], NULL, true, 0.1f, 1e-5f);
    vn_release(ctx, release ? c2 : NULL);
    y = rel(ctx, release, y, vn_max_pool2d(ctx, y, 2));
    y = rel(ctx, release, y, vn_relu(ctx, y));
    vn_tensor *h = vn_conv2d(ctx, y, m->wd, NULL, VN_CONV(1, 1, CMID));
    y = rel(ctx, release, y, h);
    y = vn_batch_norm2d(ctx, h, m->g3, m->b3, m->rm[2], m->rv[2], NULL, true, 0.1f, 1e-5f);
    vn_release(ctx, release ? h : NULL);
    y = rel(ctx, release, y, vn_global_avg_pool(ctx, y));
    y = rel(ctx, release, y, vn_dropout(ctx, y, 0.25f, true));
    y = vn_flatten(ctx, y);
    y = vn_linear(ctx, y, m->wl, m->bl);
    /* What backward cannot do without: the three inputs of BatchNorm (conv outputs). */
    if (kept_bytes && c1 && c2 && h)
        *kept_bytes = (size_t)(c1->numel + c2->numel + h->numel) * sizeof(float);
    return vn_cross_entropy(ctx, y, m->labels, NULL, 0.1f);
}

typedef struct run_result {
    float loss;
    float *grads[11];
    size_t in_use_after_forward, peak;
} run_result;

static size_t keep_budget; /* vn_ctx_set_keep of the next run */

static void run(net *m, bool release, run_result *r, size_t *kept)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_keep(ctx, keep_budget);
    vn_rng_seed(vn_ctx_rng(ctx), 7, 0, 0);
    int n;
    vn_tensor **p = net_params(m, &n);
    for (int i = 0; i < n; i++) vn_tensor_zero_grad(p[i]);
    vn_tensor *loss = net_forward(ctx, m, release, kept);
    ck_assert_msg(loss, "forward failed: %s", vn_ctx_error(ctx));
    vn_mem_stats st;
    vn_ctx_mem_stats(ctx, &st);
    r->in_use_after_forward = st.pool_in_use;
    r->loss = loss->data[0];
    ck_assert_msg(vn_backward(ctx, loss) == VN_OK, "backward failed: %s", vn_ctx_error(ctx));
    vn_ctx_mem_stats(ctx, &st);
    r->peak = st.pool_peak;
    for (int i = 0; i < n; i++) {
        r->grads[i] = malloc((size_t)p[i]->numel * sizeof(float));
        memcpy(r->grads[i], p[i]->grad, (size_t)p[i]->numel * sizeof(float));
    }
    vn_ctx_reset(ctx);
    vn_ctx_mem_stats(ctx, &st);
    ck_assert_uint_eq(st.pool_in_use, 0);
    vn_ctx_destroy(ctx);
}

START_TEST(test_release_same_bytes_less_memory)
{
    net m;
    net_init(&m);
    run_result a, b;
    size_t kept = 0;
    run(&m, false, &a, NULL);
    /* Same running statistics for the second pass. */
    for (int i = 0; i < 3; i++) {
        vn_tensor_fill(m.rm[i], 0.0f);
        vn_tensor_fill(m.rv[i], 1.0f);
    }
    run(&m, true, &b, &kept);
    ck_assert_msg(memcmp(&a.loss, &b.loss, sizeof a.loss) == 0, "loss %g vs %g", (double)a.loss,
                  (double)b.loss);
    int n;
    vn_tensor **p = net_params(&m, &n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(memcmp(a.grads[i], b.grads[i], (size_t)p[i]->numel * sizeof(float)) == 0,
                      "gradient of parameter %d differs when intermediates are released", i);
        free(a.grads[i]);
        free(b.grads[i]);
    }
    printf("release: in use after forward %zu -> %zu bytes (conv outputs %zu), peak %zu -> %zu\n",
           a.in_use_after_forward, b.in_use_after_forward, kept, a.peak, b.peak);
    /* Only the conv outputs (and per-channel state: 16 KB is generous) stay for backward. */
    ck_assert_uint_le(b.in_use_after_forward, kept + 16384);
    ck_assert_uint_lt(b.in_use_after_forward * 2, a.in_use_after_forward);
    ck_assert_uint_lt(b.peak, a.peak);
    net_free(&m);
}
END_TEST

static void reset_stats(net *m)
{
    for (int i = 0; i < 3; i++) {
        vn_tensor_fill(m->rm[i], 0.0f);
        vn_tensor_fill(m->rv[i], 1.0f);
    }
}

/* train.keep_mb: recomputable outputs kept up to a budget give the same bytes as recomputing
 * them, with more memory in use after the forward (all of them: as much as not releasing). */
START_TEST(test_keep_budget_same_bytes)
{
    net m;
    net_init(&m);
    run_result r[4];
    size_t budgets[4] = {0, 4096, 65536, (size_t)1 << 30};
    for (int k = 0; k < 4; k++) {
        reset_stats(&m);
        keep_budget = budgets[k];
        run(&m, true, &r[k], NULL);
    }
    keep_budget = 0;
    int n;
    vn_tensor **p = net_params(&m, &n);
    for (int k = 1; k < 4; k++) {
        ck_assert_msg(memcmp(&r[0].loss, &r[k].loss, sizeof r[0].loss) == 0, "loss differs, budget %zu",
                      budgets[k]);
        for (int i = 0; i < n; i++)
            ck_assert_msg(memcmp(r[0].grads[i], r[k].grads[i], (size_t)p[i]->numel * sizeof(float)) == 0,
                          "gradient of parameter %d differs with a keep budget of %zu", i, budgets[k]);
        /* what is kept is bounded by the budget */
        ck_assert_uint_le(r[k].in_use_after_forward, r[0].in_use_after_forward + budgets[k]);
        ck_assert_uint_ge(r[k].in_use_after_forward, r[k - 1].in_use_after_forward);
    }
    printf("keep budget 0 / 4 KB / 64 KB / 1 GB: in use after forward %zu / %zu / %zu / %zu bytes\n",
           r[0].in_use_after_forward, r[1].in_use_after_forward, r[2].in_use_after_forward,
           r[3].in_use_after_forward);
    ck_assert_uint_gt(r[3].in_use_after_forward, r[0].in_use_after_forward);
    /* a budget smaller than every recomputable output keeps none */
    ck_assert_uint_eq(r[1].in_use_after_forward, r[0].in_use_after_forward);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < n; i++) free(r[k].grads[i]);
    net_free(&m);
}
END_TEST

START_TEST(test_release_errors_and_no_ops)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *w = vn_tensor_new4(1, 4, 4, 8, true);
    vn_test_fill_uniform(w->data, w->numel, 3, -1, 1);
    /* Model tensors and NULL are ignored. */
    vn_release(ctx, w);
    vn_release(ctx, NULL);
    vn_tensor *y = vn_relu(ctx, w);
    ck_assert_ptr_nonnull(y);
    /* A view keeps its base: releasing either is a no-op. */
    vn_tensor *v = vn_flatten(ctx, y);
    vn_release(ctx, y);
    vn_release(ctx, v);
    ck_assert_ptr_nonnull(y->data);
    ck_assert_ptr_nonnull(vn_scale(ctx, v, 2.0f));
    /* A released tensor cannot be used again, and the error says so. */
    vn_tensor *z = vn_leaky_relu(ctx, w, 0.1f);
    vn_release(ctx, z);
    vn_release(ctx, z); /* twice is harmless */
    ck_assert_ptr_null(vn_scale(ctx, z, 2.0f));
    ck_assert_int_eq(vn_ctx_status(ctx), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "vn_release"));
    vn_ctx_reset(ctx);
    vn_ctx_destroy(ctx);
    vn_tensor_free(w);
}
END_TEST

START_TEST(test_release_inference_frees_at_once)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *x = vn_tensor_new4(2, 32, 32, 16, false);
    vn_test_fill_uniform(x->data, x->numel, 4, -1, 1);
    size_t one = (size_t)x->numel * sizeof(float);
    vn_tensor *y = vn_relu(ctx, x);
    for (int i = 0; i < 20; i++) {
        vn_tensor *z = vn_leaky_relu(ctx, y, 0.5f);
        vn_release(ctx, y);
        y = z;
    }
    vn_mem_stats st;
    vn_ctx_mem_stats(ctx, &st);
    ck_assert_uint_le(st.pool_in_use, one + 64);
    ck_assert_uint_le(st.pool_peak, 2 * one + 128);
    /* Freed space is reused: what the pool touched stays at two tensors. */
    ck_assert_uint_le(st.pool_in_use + st.pool_cached, 2 * one + 256);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
}
END_TEST

/* Freed neighbours merge: two released halves hold one tensor of twice the size. */
START_TEST(test_pool_coalesces)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *a = vn_ctx_tensor4(ctx, 1, 64, 64, 16);
    vn_tensor *b = vn_ctx_tensor4(ctx, 1, 64, 64, 16);
    vn_mem_stats s0, s1;
    vn_ctx_mem_stats(ctx, &s0);
    vn_release(ctx, a);
    vn_release(ctx, b);
    vn_tensor *c = vn_ctx_tensor4(ctx, 2, 64, 64, 16);
    ck_assert_ptr_nonnull(c);
    vn_ctx_mem_stats(ctx, &s1);
    ck_assert_uint_le(s1.pool_in_use + s1.pool_cached, s0.pool_in_use + s0.pool_cached + 64);
    vn_ctx_reset(ctx);
    vn_ctx_trim(ctx);
    vn_ctx_mem_stats(ctx, &s1);
    ck_assert_uint_eq(s1.pool_in_use + s1.pool_cached, 0);
    /* The pool still works after giving its memory back. */
    ck_assert_ptr_nonnull(vn_ctx_tensor4(ctx, 1, 8, 8, 8));
    vn_ctx_destroy(ctx);
}
END_TEST

/* An op whose input is only needed to recompute its output does not keep a large input
 * alive for that: max-pool after a plain conv keeps its (4x smaller) output instead. */
START_TEST(test_recompute_never_pins_a_larger_input)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(2, 16, 16, 8, false);
    vn_test_fill_uniform(x->data, x->numel, 8, -1, 1);
    vn_tensor *w1 = param(8, 1, 1, 8, 9, -0.5f, 0.5f), *w2 = param(4, 1, 1, 8, 10, -0.5f, 0.5f);
    w1->flags |= VN_TENSOR_OHWI;
    w2->flags |= VN_TENSOR_OHWI;
    vn_tensor *c = vn_conv2d(ctx, x, w1, NULL, VN_CONV(1, 0, 1));
    vn_tensor *p = vn_max_pool2d(ctx, c, 2);
    vn_release(ctx, c);
    vn_tensor *y = vn_conv2d(ctx, p, w2, NULL, VN_CONV(1, 0, 1));
    vn_release(ctx, p);
    ck_assert_msg(y, "%s", vn_ctx_error(ctx));
    vn_mem_stats st;
    vn_ctx_mem_stats(ctx, &st);
    size_t pb = (size_t)p->numel * sizeof(float), yb = (size_t)y->numel * sizeof(float);
    /* p (kept for conv2's backward), y, and the one-byte argmax; not the conv output c. */
    ck_assert_uint_le(st.pool_in_use, pb + yb + (size_t)p->numel + 256);
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    vn_test_fill_uniform(seed, y->numel, 11, -1, 1);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    double gn = 0;
    for (int64_t i = 0; i < w1->numel; i++) gn += w1->grad[i] * w1->grad[i];
    ck_assert_double_gt(gn, 0);
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w1);
    vn_tensor_free(w2);
}
END_TEST

/* A VanillaNet block keeps only its two conv outputs, the depthwise output and its result
 * for backward; the gradients equal those of a forward that keeps everything. */
START_TEST(test_block_keeps_only_what_backward_needs)
{
    const int dim = 16, dim_out = 32, hw = 16, n = 2;
    vn_vanilla_block blk;
    ck_assert_int_eq(vn_vanilla_block_init(&blk, dim, dim_out, 2, 0, 3, VN_SHORTCUT_NONE, false),
                     VN_OK);
    vn_state_list sl, *l = &sl;
    vn_state_list_init(l);
    ck_assert_int_eq(vn_vanilla_block_register(&blk, l, "b.", false), VN_OK);
    for (int i = 0; i < l->n; i++)
        if (l->items[i].kind == VN_STATE_PARAM)
            vn_test_fill_uniform(l->items[i].tensor->data, l->items[i].tensor->numel,
                                 100 + (uint64_t)i, -0.6f, 0.6f);
    vn_tensor *x = vn_tensor_new4(n, hw, hw, dim, true);
    vn_test_fill_uniform(x->data, x->numel, 5, -1, 1);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_vanilla_block_forward(ctx, &blk, x, 0.5f, true);
    ck_assert_msg(y, "%s", vn_ctx_error(ctx));
    vn_mem_stats st;
    vn_ctx_mem_stats(ctx, &st);
    size_t full = (size_t)n * hw * hw * sizeof(float);
    size_t pooled = full / 4 * (size_t)dim_out;
    /* conv1 out (dim), conv2 out (dim_out), depthwise out and the result (pooled). */
    size_t need = full * (size_t)(dim + dim_out) + 2 * pooled;
    printf("block: in use after forward %zu bytes, needed %zu\n", st.pool_in_use, need);
    ck_assert_uint_le(st.pool_in_use, need + 16384);
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    vn_test_fill_uniform(seed, y->numel, 6, -1, 1);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    vn_ctx_mem_stats(ctx, &st);
    ck_assert_uint_le(st.pool_in_use, (size_t)y->numel * sizeof(float) + 64);
    float *dx = malloc((size_t)x->numel * sizeof *dx);
    memcpy(dx, x->grad, (size_t)x->numel * sizeof *dx);
    vn_ctx_reset(ctx);
    /* The same block built from the raw ops without any release. */
    vn_tensor_zero_grad(x);
    vn_tensor *t = vn_conv2d(ctx, x, blk.conv1.weight, blk.conv1.bias, VN_CONV(1, 0, 1));
    vn_bn_layer *b1 = &blk.bn1, *b2 = &blk.bn2, *b3 = &blk.act.bn;
    t = vn_batch_norm2d(ctx, t, b1->weight, b1->bias, NULL, NULL, NULL, true, 0.0f, b1->eps);
    t = vn_leaky_relu(ctx, t, 0.5f);
    t = vn_conv2d(ctx, t, blk.conv2.weight, blk.conv2.bias, VN_CONV(1, 0, 1));
    t = vn_batch_norm2d(ctx, t, b2->weight, b2->bias, NULL, NULL, NULL, true, 0.0f, b2->eps);
    t = vn_relu(ctx, vn_max_pool2d(ctx, t, 2));
    t = vn_conv2d(ctx, t, blk.act.weight, NULL, VN_CONV(1, 3, dim_out));
    t = vn_batch_norm2d(ctx, t, b3->weight, b3->bias, NULL, NULL, NULL, true, 0.0f, b3->eps);
    ck_assert_msg(t, "%s", vn_ctx_error(ctx));
    ck_assert_int_eq(vn_backward_with(ctx, t, seed), VN_OK);
    ck_assert_msg(memcmp(dx, x->grad, (size_t)x->numel * sizeof *dx) == 0,
                  "block input gradient differs from the op-by-op graph");
    vn_ctx_destroy(ctx);
    free(dx);
    free(seed);
    vn_tensor_free(x);
    vn_state_list_free(l);
    vn_vanilla_block_free(&blk);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("release");
    TCase *tc = tcase_create("release");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_release_same_bytes_less_memory);
    tcase_add_test(tc, test_release_errors_and_no_ops);
    tcase_add_test(tc, test_keep_budget_same_bytes);
    tcase_add_test(tc, test_release_inference_frees_at_once);
    tcase_add_test(tc, test_pool_coalesces);
    tcase_add_test(tc, test_block_keeps_only_what_backward_needs);
    tcase_add_test(tc, test_recompute_never_pins_a_larger_input);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
