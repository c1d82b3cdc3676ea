/* The autograd hooks of data-parallel training (autograd/vn_ctx.h): the grad-ready hook
 * reports every parameter once per backward, after its gradient is final (also for a
 * parameter read twice); BatchNorm's record hook leaves the running statistics alone and
 * hands over exactly the values the op would have used; sync BN with a fake group of two
 * identical ranks normalises and backpropagates as one rank does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"

enum { N = 2, H = 4, W = 4, CI = 3, C = 4, CO = 5, NP = 5 };

typedef struct net {
    vn_tensor *x, *w1, *b1, *g, *beta, *rm, *rv, *w2;
    int64_t nbt;
} net;

static void net_init(net *n)
{
    n->x = vn_tensor_new4(N, H, W, CI, true);
    n->w1 = vn_tensor_new4(C, 1, 1, CI, true);
    int64_t c = C;
    n->b1 = vn_tensor_new(1, &c, true);
    n->g = vn_tensor_new(1, &c, true);
    n->beta = vn_tensor_new(1, &c, true);
    n->rm = vn_tensor_new(1, &c, false);
    n->rv = vn_tensor_new(1, &c, false);
    n->w2 = vn_tensor_new4(CO, 1, 1, C, true);
    vn_test_fill_uniform(n->x->data, n->x->numel, 1, -1, 2);
    vn_test_fill_uniform(n->w1->data, n->w1->numel, 2, -1, 1);
    vn_test_fill_uniform(n->b1->data, C, 3, -1, 1);
    vn_test_fill_uniform(n->g->data, C, 4, 0.5f, 1.5f);
    vn_test_fill_uniform(n->beta->data, C, 5, -1, 1);
    vn_test_fill_uniform(n->w2->data, n->w2->numel, 6, -1, 1);
    vn_tensor_fill(n->rv, 1.0f);
    vn_tensor *p[NP] = {n->w1, n->b1, n->g, n->beta, n->w2};
    for (int i = 0; i < NP; i++) p[i]->flags |= VN_TENSOR_PARAM;
    n->nbt = 0;
}

static void net_free(net *n)
{
    vn_tensor *t[] = {n->x, n->w1, n->b1, n->g, n->beta, n->rm, n->rv, n->w2};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) vn_tensor_free(t[i]);
}

/* conv -> BN -> two branches through the same w2 (w2 is read twice) -> mean -> loss. */
static vn_tensor *net_loss(vn_ctx *ctx, net *n)
{
    vn_tensor *h = vn_conv2d(ctx, n->x, n->w1, n->b1, VN_CONV(1, 0, 1));
    h = vn_batch_norm2d(ctx, h, n->g, n->beta, n->rm, n->rv, &n->nbt, true, 0.1f, 1e-5f);
    vn_tensor *a = vn_conv2d(ctx, h, n->w2, NULL, VN_CONV(1, 0, 1));
    vn_tensor *b = vn_conv2d(ctx, vn_relu(ctx, h), n->w2, NULL, VN_CONV(1, 0, 1));
    vn_tensor *y = vn_flatten(ctx, vn_global_avg_pool(ctx, vn_add(ctx, a, b)));
    const int32_t labels[N] = {1, 3};
    return vn_cross_entropy(ctx, y, labels, NULL, 0.0f);
}

typedef struct seen {
    net *n;
    int calls[NP];
    float *snap[NP];
} seen;

static int param_index(net *n, vn_tensor *p)
{
    vn_tensor *ps[NP] = {n->w1, n->b1, n->g, n->beta, n->w2};
    for (int i = 0; i < NP; i++)
        if (ps[i] == p) return i;
    return -1;
}

static void on_ready(void *user, vn_tensor *p)
{
    seen *s = user;
    int i = param_index(s->n, p);
    ck_assert_int_ge(i, 0);
    s->calls[i]++;
    free(s->snap[i]);
    s->snap[i] = malloc((size_t)p->numel * sizeof(float));
    memcpy(s->snap[i], p->grad, (size_t)p->numel * sizeof(float));
}

START_TEST(grad_ready_once_and_final)
{
    net n;
    net_init(&n);
    vn_ctx *ctx = vn_ctx_create();
    seen s = {.n = &n};
    vn_ctx_set_grad_ready(ctx, on_ready, &s);
    for (int pass = 0; pass < 2; pass++) { /* gradients accumulate over two backwards */
        vn_tensor *loss = net_loss(ctx, &n);
        ck_assert_ptr_nonnull(loss);
        ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
        vn_tensor *ps[NP] = {n.w1, n.b1, n.g, n.beta, n.w2};
        for (int i = 0; i < NP; i++) {
            ck_assert_int_eq(s.calls[i], pass + 1);
            ck_assert_msg(!memcmp(s.snap[i], ps[i]->grad, (size_t)ps[i]->numel * sizeof(float)),
                          "parameter %d was reported before its gradient was final", i);
        }
        vn_ctx_reset(ctx);
    }
    for (int i = 0; i < NP; i++) free(s.snap[i]);
    vn_ctx_destroy(ctx);
    net_free(&n);
}
END_TEST

typedef struct recorded {
    int calls;
    double mean[C], var[C], momentum;
} recorded;

static void on_record(void *user, vn_tensor *rm, vn_tensor *rv, int64_t *nbt, double momentum,
                      const double *mean, const double *var, int64_t channels)
{
    (void)rm, (void)rv, (void)nbt;
    recorded *r = user;
    ck_assert_int_eq(channels, C);
    r->calls++;
    r->momentum = momentum;
    memcpy(r->mean, mean, sizeof r->mean);
    memcpy(r->var, var, sizeof r->var);
}

START_TEST(bn_record_replays_to_the_same_bytes)
{
    net a, b;
    net_init(&a);
    net_init(&b);
    vn_ctx *ctx = vn_ctx_create();
    ck_assert_ptr_nonnull(net_loss(ctx, &a)); /* the op's own update */
    vn_ctx_reset(ctx);
    recorded r = {0};
    vn_bn_hooks h = {1, NULL, NULL, on_record, &r};
    vn_ctx_set_bn_hooks(ctx, &h);
    ck_assert_ptr_nonnull(net_loss(ctx, &b));
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(b.nbt, 0);
    for (int c = 0; c < C; c++) {
        ck_assert(b.rm->data[c] == 0.0f && b.rv->data[c] == 1.0f); /* untouched */
        b.rm->data[c] = (float)((1.0 - r.momentum) * b.rm->data[c] + r.momentum * r.mean[c]);
        b.rv->data[c] = (float)((1.0 - r.momentum) * b.rv->data[c] + r.momentum * r.var[c]);
    }
    ck_assert(!memcmp(a.rm->data, b.rm->data, C * sizeof(float)));
    ck_assert(!memcmp(a.rv->data, b.rv->data, C * sizeof(float)));
    ck_assert_int_eq(a.nbt, 1);
    vn_ctx_destroy(ctx);
    net_free(&a);
    net_free(&b);
}
END_TEST

/* A fake group of two ranks that hold the same batch. */
static int fake_allgather(void *user, const double *send, int64_t n, double *recv)
{
    (void)user;
    memcpy(recv, send, (size_t)n * sizeof(double));
    memcpy(recv + n, send, (size_t)n * sizeof(double));
    return VN_OK;
}

static int fake_allreduce(void *user, double *buf, int64_t n)
{
    (void)user;
    for (int64_t i = 0; i < n; i++) buf[i] *= 2;
    return VN_OK;
}

START_TEST(sync_bn_of_two_equal_ranks_is_one)
{
    net a, b;
    net_init(&a);
    net_init(&b);
    vn_ctx *ca = vn_ctx_create(), *cb = vn_ctx_create();
    vn_bn_hooks h = {2, fake_allgather, fake_allreduce, NULL, NULL};
    vn_ctx_set_bn_hooks(cb, &h);
    vn_tensor *la = net_loss(ca, &a), *lb = net_loss(cb, &b);
    ck_assert_ptr_nonnull(la);
    ck_assert_ptr_nonnull(lb);
    ck_assert(fabsf(la->data[0] - lb->data[0]) <= 1e-6f * fabsf(la->data[0]));
    ck_assert_int_eq(vn_backward(ca, la), VN_OK);
    ck_assert_int_eq(vn_backward(cb, lb), VN_OK);
    ck_assert(vn_test_close("sync dx", b.x->grad, a.x->grad, a.x->numel, 1e-6, 1e-5));
    ck_assert(vn_test_close("sync dw1", b.w1->grad, a.w1->grad, a.w1->numel, 1e-6, 1e-5));
    ck_assert(vn_test_close("sync dgamma", b.g->grad, a.g->grad, C, 1e-6, 1e-5));
    /* Running mean the same; the variance's Bessel factor uses 2R rows. */
    ck_assert(vn_test_close("sync running_mean", b.rm->data, a.rm->data, C, 1e-7, 1e-6));
    vn_ctx_destroy(ca);
    vn_ctx_destroy(cb);
    net_free(&a);
    net_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dist_hooks");
    TCase *tc = tcase_create("hooks");
    tcase_add_test(tc, grad_ready_once_and_final);
    tcase_add_test(tc, bn_record_replays_to_the_same_bytes);
    tcase_add_test(tc, sync_bn_of_two_equal_ranks_is_one);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
