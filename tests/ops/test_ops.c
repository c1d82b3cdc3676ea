/* Tests of batch_norm2d, the pools, matmul/linear and the losses against PyTorch fixtures
 * (tests/reference/gen_ops.py), plus error cases, thread-count determinism and steady-state
 * memory. Gradient checks are in test_ops_grad.c.
 *
 * Fixtures hold the float64 PyTorch result of float32 inputs (the pools: float32 PyTorch).
 * Every case runs twice: on the model-lifetime inputs (gradients accumulate into existing
 * buffers) and behind an exact identity linear layer, so the op's input is a step tensor
 * whose gradient buffer is fresh (the write-instead-of-accumulate paths). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vn_test.h"

/* Tolerances (|got - want| <= atol + rtol * |want|), measured errors in the report. */
#define BN_ATOL 2e-5
#define BN_RTOL 2e-5
#define POOL_ATOL 1e-6
#define POOL_RTOL 1e-6
#define DENSE_ATOL 2e-5
#define DENSE_RTOL 2e-5
#define LOSS_ATOL 1e-6
#define LOSS_RTOL 2e-6

static const char *key(const char *cs, const char *field)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s.%s", cs, field);
    return buf;
}

static bool has(const vn_st_file *f, const char *cs, const char *field)
{
    return vn_st_find(f, key(cs, field)) != NULL;
}

static vn_tensor *fx_tensor(const vn_st_file *f, const char *cs, const char *field, bool rg)
{
    return vn_test_tensor(f, key(cs, field), rg);
}

static const float *fx_data(const vn_st_file *f, const char *cs, const char *field, int64_t n)
{
    return vn_test_f32(f, key(cs, field), n);
}

/* An identity weight [C, C]: vn_linear(x, eye) copies x exactly into a step tensor. */
static vn_tensor *eye_new(int64_t C)
{
    vn_tensor *e = vn_tensor_new(2, (int64_t[]){C, C}, false);
    for (int64_t i = 0; i < C; i++) e->data[i * C + i] = 1.0f;
    return e;
}

/* x itself, or (with *eye set to a new identity the caller frees) an exact step copy. */
static vn_tensor *maybe_copy(vn_ctx *ctx, vn_tensor *x, bool via_step, vn_tensor **eye)
{
    *eye = NULL;
    if (!via_step) return x;
    *eye = eye_new(x->shape[x->ndim - 1]);
    return vn_linear(ctx, x, *eye, NULL);
}

#define CHECK_CLOSE(what, got, want, n, atol, rtol) \
    ck_assert_msg(vn_test_close((what), (got), (want), (n), (atol), (rtol)), "%s differs", (what))

/* ---- batch norm ----------------------------------------------------------------------- */

static void bn_case(const char *cs, bool via_step)
{
    vn_st_file *f = vn_test_fixture("ops/bn.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    bool training = strncmp(cs, "train", 5) == 0;
    vn_tensor *x = fx_tensor(f, cs, "x", true);
    vn_tensor *w = has(f, cs, "weight") ? fx_tensor(f, cs, "weight", true) : NULL;
    vn_tensor *b = has(f, cs, "bias") ? fx_tensor(f, cs, "bias", true) : NULL;
    vn_tensor *rm = has(f, cs, "running_mean0") ? fx_tensor(f, cs, "running_mean0", false) : NULL;
    vn_tensor *rv = has(f, cs, "running_var0") ? fx_tensor(f, cs, "running_var0", false) : NULL;
    int64_t nbt = 3;
    /* The fixtures' eps and momentum, by case name (see gen_ops.py). */
    float eps = (!strcmp(cs, "train_vn") || !strcmp(cs, "eval_noaffine")) ? 1e-6f : 1e-5f;
    float mom = !strcmp(cs, "train_offset") ? 0.3f : 0.1f;
    vn_tensor *eye;
    vn_tensor *xin = maybe_copy(ctx, x, via_step, &eye);
    vn_tensor *y = vn_batch_norm2d(ctx, xin, w, b, rm, rv, &nbt, training, mom, eps);
    ck_assert_msg(y != NULL, "%s: %s", cs, vn_ctx_error(ctx));
    const float *gy = fx_data(f, cs, "gy", y->numel);
    ck_assert_int_eq(vn_backward_with(ctx, y, gy), VN_OK);
    char what[128];
    snprintf(what, sizeof what, "bn %s%s y", cs, via_step ? " (step)" : "");
    CHECK_CLOSE(what, y->data, fx_data(f, cs, "y", y->numel), y->numel, BN_ATOL, BN_RTOL);
    snprintf(what, sizeof what, "bn %s%s dx", cs, via_step ? " (step)" : "");
    CHECK_CLOSE(what, x->grad, fx_data(f, cs, "dx", x->numel), x->numel, BN_ATOL, BN_RTOL);
    if (w) {
        CHECK_CLOSE("bn dweight", w->grad, fx_data(f, cs, "dweight", w->numel), w->numel,
                    BN_ATOL, BN_RTOL);
        CHECK_CLOSE("bn dbias", b->grad, fx_data(f, cs, "dbias", b->numel), b->numel, BN_ATOL,
                    BN_RTOL);
    }
    if (rm) {
        /* Eval leaves the running statistics alone; training updates them. */
        CHECK_CLOSE("bn running_mean", rm->data, fx_data(f, cs, "running_mean", rm->numel),
                    rm->numel, 1e-6, 1e-6);
        CHECK_CLOSE("bn running_var", rv->data, fx_data(f, cs, "running_var", rv->numel),
                    rv->numel, 1e-6, 1e-6);
        const vn_st_entry *e = vn_st_find(f, key(cs, "num_batches_tracked"));
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->dtype, VN_DTYPE_I64);
        ck_assert_int_eq(nbt, ((const int64_t *)e->data)[0]);
    } else {
        /* Without running statistics the counter still counts training batches. */
        ck_assert_int_eq(nbt, training ? 4 : 3);
    }
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(rm);
    vn_tensor_free(rv);
    vn_tensor_free(eye);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}

static const char *const bn_names[] = {"train", "train_vn", "train_noaffine", "train_offset",
                                       "train_c1", "eval", "eval_noaffine"};
#define N_BN ((int)(sizeof bn_names / sizeof bn_names[0]))

START_TEST(test_bn_fixture)
{
    bn_case(bn_names[_i % N_BN], _i >= N_BN);
}
END_TEST

/* ---- pools ---------------------------------------------------------------------------- */

static const char *const pool_names[] = {
    "max2", "max3", "max2_ties", "max3_nan", "amax_7to3", "amax_5to5", "amax_3to5",
    "amax_10to4x2", "amax_ties", "aavg_7to3", "aavg_5to5", "aavg_3to5", "aavg_10to4x2", "gavg"};
#define N_POOL ((int)(sizeof pool_names / sizeof pool_names[0]))

/* NaN-aware comparison: NaN exactly where PyTorch has NaN, close elsewhere. */
static bool close_nan(const char *what, const float *got, const float *want, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (isnan(got[i]) != isnan(want[i]) && bad++ < 8)
            fprintf(stderr, "  %s[%lld]: got %g, want %g\n", what, (long long)i, got[i], want[i]);
    if (bad) return false;
    float *g2 = malloc((size_t)n * sizeof *g2), *w2 = malloc((size_t)n * sizeof *w2);
    for (int64_t i = 0; i < n; i++) {
        g2[i] = isnan(got[i]) ? 0.0f : got[i];
        w2[i] = isnan(want[i]) ? 0.0f : want[i];
    }
    bool ok = vn_test_close(what, g2, w2, n, POOL_ATOL, POOL_RTOL);
    free(g2);
    free(w2);
    return ok;
}

START_TEST(test_pool_fixture)
{
    const char *cs = pool_names[_i % N_POOL];
    /* NaN * 0 in the identity layer would spread NaN over the row: direct inputs only. */
    bool via_step = _i >= N_POOL && !strstr(cs, "nan");
    vn_st_file *f = vn_test_fixture("ops/pool.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = fx_tensor(f, cs, "x", true);
    const vn_st_entry *ye = vn_st_find(f, key(cs, "y"));
    ck_assert_ptr_nonnull(ye);
    int oh = (int)ye->shape[1], ow = (int)ye->shape[2];
    vn_tensor *eye;
    vn_tensor *xin = maybe_copy(ctx, x, via_step, &eye);
    vn_tensor *y;
    if (!strncmp(cs, "max", 3)) y = vn_max_pool2d(ctx, xin, cs[3] - '0');
    else if (!strncmp(cs, "amax", 4)) y = vn_adaptive_max_pool2d(ctx, xin, oh, ow);
    else if (!strcmp(cs, "gavg")) y = vn_global_avg_pool(ctx, xin);
    else y = vn_adaptive_avg_pool2d(ctx, xin, oh, ow);
    ck_assert_msg(y != NULL, "%s: %s", cs, vn_ctx_error(ctx));
    ck_assert_int_eq(y->ndim, 4);
    for (int d = 0; d < 4; d++) ck_assert_int_eq(y->shape[d], ye->shape[d]);
    ck_assert_int_eq(vn_backward_with(ctx, y, fx_data(f, cs, "gy", y->numel)), VN_OK);
    char what[128];
    snprintf(what, sizeof what, "%s%s y", cs, via_step ? " (step)" : "");
    ck_assert_msg(close_nan(what, y->data, fx_data(f, cs, "y", y->numel), y->numel), "%s", what);
    snprintf(what, sizeof what, "%s%s dx", cs, via_step ? " (step)" : "");
    CHECK_CLOSE(what, x->grad, fx_data(f, cs, "dx", x->numel), x->numel, POOL_ATOL, POOL_RTOL);
    vn_tensor_free(x);
    vn_tensor_free(eye);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}
END_TEST

/* ---- dense ---------------------------------------------------------------------------- */

START_TEST(test_matmul_fixture)
{
    vn_st_file *f = vn_test_fixture("ops/dense.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *a = fx_tensor(f, "matmul", "a", true), *b = fx_tensor(f, "matmul", "b", true);
    vn_tensor *y = vn_matmul(ctx, a, b);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    ck_assert_int_eq(y->shape[0], 5);
    ck_assert_int_eq(y->shape[1], 3);
    ck_assert_int_eq(vn_backward_with(ctx, y, fx_data(f, "matmul", "gy", 15)), VN_OK);
    CHECK_CLOSE("matmul y", y->data, fx_data(f, "matmul", "y", 15), 15, DENSE_ATOL, DENSE_RTOL);
    CHECK_CLOSE("matmul da", a->grad, fx_data(f, "matmul", "da", 35), 35, DENSE_ATOL, DENSE_RTOL);
    CHECK_CLOSE("matmul db", b->grad, fx_data(f, "matmul", "db", 21), 21, DENSE_ATOL, DENSE_RTOL);
    vn_tensor_free(a);
    vn_tensor_free(b);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}
END_TEST

static const char *const linear_names[] = {"linear3d", "linear_nobias", "linear4d"};

START_TEST(test_linear_fixture)
{
    const char *cs = linear_names[_i % 3];
    bool via_step = _i >= 3;
    vn_st_file *f = vn_test_fixture("ops/dense.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = fx_tensor(f, cs, "x", true), *w = fx_tensor(f, cs, "w", true);
    vn_tensor *b = has(f, cs, "b") ? fx_tensor(f, cs, "b", true) : NULL;
    vn_tensor *eye;
    vn_tensor *xin = maybe_copy(ctx, x, via_step, &eye);
    vn_tensor *y = vn_linear(ctx, xin, w, b);
    ck_assert_msg(y != NULL, "%s: %s", cs, vn_ctx_error(ctx));
    ck_assert_int_eq(y->ndim, x->ndim);
    ck_assert_int_eq(y->shape[y->ndim - 1], w->shape[0]);
    ck_assert_int_eq(vn_backward_with(ctx, y, fx_data(f, cs, "gy", y->numel)), VN_OK);
    CHECK_CLOSE("linear y", y->data, fx_data(f, cs, "y", y->numel), y->numel, DENSE_ATOL,
                DENSE_RTOL);
    CHECK_CLOSE("linear dx", x->grad, fx_data(f, cs, "dx", x->numel), x->numel, DENSE_ATOL,
                DENSE_RTOL);
    CHECK_CLOSE("linear dw", w->grad, fx_data(f, cs, "dw", w->numel), w->numel, DENSE_ATOL,
                DENSE_RTOL);
    if (b)
        CHECK_CLOSE("linear db", b->grad, fx_data(f, cs, "db", b->numel), b->numel, DENSE_ATOL,
                    DENSE_RTOL);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(eye);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}
END_TEST

/* ---- losses --------------------------------------------------------------------------- */

static const char *const loss_names[] = {"ce", "ce_smooth", "ce_3d", "ce_c1rows", "ce_soft",
                                         "bce"};
#define N_LOSS ((int)(sizeof loss_names / sizeof loss_names[0]))

START_TEST(test_loss_fixture)
{
    const char *cs = loss_names[_i % N_LOSS];
    bool via_step = _i >= N_LOSS;
    vn_st_file *f = vn_test_fixture("ops/loss.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = fx_tensor(f, cs, "x", true);
    vn_tensor *eye;
    vn_tensor *xin = maybe_copy(ctx, x, via_step, &eye);
    vn_tensor *loss;
    if (!strcmp(cs, "bce")) {
        loss = vn_bce_with_logits(ctx, xin, fx_data(f, cs, "targets", x->numel));
    } else if (!strcmp(cs, "ce_soft")) {
        loss = vn_cross_entropy(ctx, xin, NULL, fx_data(f, cs, "targets", x->numel), 0.0f);
    } else {
        const vn_st_entry *le = vn_st_find(f, key(cs, "labels"));
        ck_assert_ptr_nonnull(le);
        ck_assert_int_eq(le->dtype, VN_DTYPE_I32);
        ck_assert_int_eq(le->numel, x->numel / x->shape[x->ndim - 1]);
        float s = fx_data(f, cs, "smoothing", 1)[0];
        loss = vn_cross_entropy(ctx, xin, le->data, NULL, s);
    }
    ck_assert_msg(loss != NULL, "%s: %s", cs, vn_ctx_error(ctx));
    ck_assert_int_eq(loss->ndim, 1);
    ck_assert_int_eq(loss->shape[0], 1);
    ck_assert_int_eq(vn_backward_with(ctx, loss, fx_data(f, cs, "gy", 1)), VN_OK);
    char what[128];
    snprintf(what, sizeof what, "%s%s loss", cs, via_step ? " (step)" : "");
    CHECK_CLOSE(what, loss->data, fx_data(f, cs, "loss", 1), 1, LOSS_ATOL, LOSS_RTOL);
    snprintf(what, sizeof what, "%s%s dx", cs, via_step ? " (step)" : "");
    CHECK_CLOSE(what, x->grad, fx_data(f, cs, "dx", x->numel), x->numel, LOSS_ATOL, LOSS_RTOL);
    vn_tensor_free(x);
    vn_tensor_free(eye);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}
END_TEST

/* ---- determinism ---------------------------------------------------------------------- */

typedef struct bn_run {
    float *y, *dx, *dw, *db, *rm, *rv;
} bn_run;

/* R = 3*15*17 = 765 rows (not a multiple of the chunk), C = 72: large enough to go parallel. */
static bn_run bn_run_threads(int threads, bool training)
{
    vn_set_threads(threads);
    ck_assert_int_eq(vn_get_threads(), threads);
    const int64_t N = 3, H = 15, W = 17, C = 72;
    vn_tensor *x = vn_tensor_new4(N, H, W, C, true);
    vn_tensor *w = vn_tensor_new(1, (int64_t[]){C}, true);
    vn_tensor *b = vn_tensor_new(1, (int64_t[]){C}, true);
    vn_tensor *rm = vn_tensor_new(1, (int64_t[]){C}, false);
    vn_tensor *rv = vn_tensor_new(1, (int64_t[]){C}, false);
    vn_test_fill_uniform(x->data, x->numel, 11, -3.0f, 5.0f);
    vn_test_fill_uniform(w->data, C, 12, 0.5f, 1.5f);
    vn_test_fill_uniform(b->data, C, 13, -1.0f, 1.0f);
    vn_test_fill_uniform(rm->data, C, 14, -1.0f, 1.0f);
    vn_test_fill_uniform(rv->data, C, 15, 0.5f, 2.0f);
    float *gy = malloc((size_t)x->numel * sizeof *gy);
    vn_test_fill_uniform(gy, x->numel, 16, -1.0f, 1.0f);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_batch_norm2d(ctx, x, w, b, rm, rv, NULL, training, 0.1f, 1e-6f);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    ck_assert_int_eq(vn_backward_with(ctx, y, gy), VN_OK);
    bn_run r;
    size_t xb = (size_t)x->numel * sizeof(float), cb = (size_t)C * sizeof(float);
    r.y = malloc(xb);
    memcpy(r.y, y->data, xb);
    r.dx = malloc(xb);
    memcpy(r.dx, x->grad, xb);
    r.dw = malloc(cb);
    memcpy(r.dw, w->grad, cb);
    r.db = malloc(cb);
    memcpy(r.db, b->grad, cb);
    r.rm = malloc(cb);
    memcpy(r.rm, rm->data, cb);
    r.rv = malloc(cb);
    memcpy(r.rv, rv->data, cb);
    vn_ctx_destroy(ctx);
    free(gy);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(rm);
    vn_tensor_free(rv);
    return r;
}

static void bn_run_free(bn_run *r)
{
    free(r->y);
    free(r->dx);
    free(r->dw);
    free(r->db);
    free(r->rm);
    free(r->rv);
}

START_TEST(test_bn_deterministic_threads)
{
    bool training = _i == 0;
    bn_run a = bn_run_threads(1, training), b = bn_run_threads(2, training);
    size_t xb = 3 * 15 * 17 * 72 * sizeof(float), cb = 72 * sizeof(float);
    ck_assert_msg(memcmp(a.y, b.y, xb) == 0, "bn y differs between 1 and 2 threads");
    ck_assert_msg(memcmp(a.dx, b.dx, xb) == 0, "bn dx differs between 1 and 2 threads");
    ck_assert_msg(memcmp(a.dw, b.dw, cb) == 0, "bn dweight differs between 1 and 2 threads");
    ck_assert_msg(memcmp(a.db, b.db, cb) == 0, "bn dbias differs between 1 and 2 threads");
    ck_assert_msg(memcmp(a.rm, b.rm, cb) == 0, "bn running_mean differs between 1 and 2 threads");
    ck_assert_msg(memcmp(a.rv, b.rv, cb) == 0, "bn running_var differs between 1 and 2 threads");
    /* And the runs did something. */
    bool any = false;
    for (int c = 0; c < 72; c++) any |= a.dw[c] != 0.0f;
    ck_assert(any);
    bn_run_free(&a);
    bn_run_free(&b);
}
END_TEST

/* The other fixed-order reductions: linear's bias gradient, the BCE and CE sums, and the
 * pools' gradients (large enough to run in parallel). sgemm results are not compared:
 * OpenBLAS's single- and multi-threaded sgemm round differently (seen here). */
typedef struct misc_run {
    float db[120], bce, ce;
    float *dpool;
} misc_run;

static misc_run misc_run_threads(int threads)
{
    vn_set_threads(threads);
    vn_tensor *x = vn_tensor_new(2, (int64_t[]){600, 64}, false);
    vn_tensor *w = vn_tensor_new(2, (int64_t[]){120, 64}, false);
    vn_tensor *b = vn_tensor_new(1, (int64_t[]){120}, true);
    vn_tensor *img = vn_tensor_new4(2, 30, 31, 40, true);
    vn_test_fill_uniform(x->data, x->numel, 61, -1, 1);
    vn_test_fill_uniform(w->data, w->numel, 62, -1, 1);
    vn_test_fill_uniform(img->data, img->numel, 63, -1, 1);
    float *t = malloc(600 * 120 * sizeof *t);
    vn_test_fill_uniform(t, 600 * 120, 64, 0, 1);
    int32_t labels[600];
    for (int i = 0; i < 600; i++) labels[i] = (i * 37) % 120;
    vn_ctx *ctx = vn_ctx_create();
    misc_run r;
    /* Linear with a fixed upstream gradient (its forward goes through sgemm). */
    float *gy = malloc(600 * 120 * sizeof *gy);
    vn_test_fill_uniform(gy, 600 * 120, 66, -1, 1);
    vn_tensor *y = vn_linear(ctx, x, w, b);
    ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
    ck_assert_int_eq(vn_backward_with(ctx, y, gy), VN_OK);
    memcpy(r.db, b->grad, sizeof r.db);
    vn_ctx_reset(ctx);
    /* The losses on fixed logits (the gradient seeds as they are). */
    vn_tensor *logits = vn_tensor_new(2, (int64_t[]){600, 120}, true);
    memcpy(logits->data, gy, 600 * 120 * sizeof *gy);
    vn_tensor *l = vn_bce_with_logits(ctx, logits, t);
    ck_assert_msg(l != NULL, "%s", vn_ctx_error(ctx));
    r.bce = l->data[0];
    vn_ctx_reset(ctx);
    l = vn_cross_entropy(ctx, logits, labels, NULL, 0.1f);
    ck_assert_msg(l != NULL, "%s", vn_ctx_error(ctx));
    r.ce = l->data[0];
    vn_ctx_reset(ctx);
    vn_tensor_free(logits);
    free(gy);
    vn_tensor *p = vn_global_avg_pool(ctx, vn_adaptive_avg_pool2d(ctx, vn_adaptive_max_pool2d(
                                                                      ctx, img, 7, 9), 4, 5));
    ck_assert_msg(p != NULL, "%s", vn_ctx_error(ctx));
    float *seed = malloc((size_t)p->numel * sizeof *seed);
    vn_test_fill_uniform(seed, p->numel, 65, -1, 1);
    ck_assert_int_eq(vn_backward_with(ctx, p, seed), VN_OK);
    r.dpool = malloc((size_t)img->numel * sizeof(float));
    memcpy(r.dpool, img->grad, (size_t)img->numel * sizeof(float));
    free(seed);
    free(t);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(b);
    vn_tensor_free(img);
    return r;
}

START_TEST(test_misc_deterministic_threads)
{
    misc_run a = misc_run_threads(1), b = misc_run_threads(2);
    ck_assert_msg(memcmp(a.db, b.db, sizeof a.db) == 0, "linear db differs between 1 and 2 threads");
    ck_assert_msg(memcmp(&a.bce, &b.bce, sizeof a.bce) == 0, "bce differs: %.9g vs %.9g", a.bce,
                  b.bce);
    ck_assert_msg(memcmp(&a.ce, &b.ce, sizeof a.ce) == 0, "ce differs: %.9g vs %.9g", a.ce, b.ce);
    ck_assert_msg(memcmp(a.dpool, b.dpool, 2 * 30 * 31 * 40 * sizeof(float)) == 0,
                  "pool gradients differ between 1 and 2 threads");
    bool any = false;
    for (int i = 0; i < 120; i++) any |= a.db[i] != 0.0f;
    ck_assert(any && a.bce > 0 && a.ce > 0);
    free(a.dpool);
    free(b.dpool);
}
END_TEST

/* ---- steady-state memory ------------------------------------------------------------- */

START_TEST(test_steady_state_no_malloc)
{
    const int64_t N = 2, H = 9, W = 7, C = 6, K = 5;
    vn_tensor *x = vn_tensor_new4(N, H, W, C, false);
    vn_tensor *g = vn_tensor_new(1, (int64_t[]){C}, true);
    vn_tensor *be = vn_tensor_new(1, (int64_t[]){C}, true);
    vn_tensor *rm = vn_tensor_new(1, (int64_t[]){C}, false);
    vn_tensor *rv = vn_tensor_new(1, (int64_t[]){C}, false);
    vn_tensor *w = vn_tensor_new(2, (int64_t[]){K, C}, true);
    vn_tensor *bias = vn_tensor_new(1, (int64_t[]){K}, true);
    vn_tensor *w2 = vn_tensor_new(2, (int64_t[]){K, K}, true);
    vn_test_fill_uniform(x->data, x->numel, 21, -1, 1);
    vn_tensor_fill(g, 1.0f);
    vn_tensor_fill(rv, 1.0f);
    vn_test_fill_uniform(w->data, w->numel, 22, -1, 1);
    vn_test_fill_uniform(w2->data, w2->numel, 23, -1, 1);
    int32_t labels[2] = {1, 4};
    float targets[2 * 5];
    vn_test_fill_uniform(targets, 10, 24, 0, 1);
    vn_ctx *ctx = vn_ctx_create();
    vn_mem_stats st[3];
    for (int step = 0; step < 3; step++) {
        vn_tensor *h = vn_batch_norm2d(ctx, x, g, be, rm, rv, NULL, true, 0.1f, 1e-5f);
        vn_tensor *p = vn_max_pool2d(ctx, h, 2);                 /* [2, 4, 3, 6] */
        vn_tensor *q = vn_adaptive_max_pool2d(ctx, p, 3, 2);
        vn_tensor *r = vn_adaptive_avg_pool2d(ctx, q, 2, 2);
        vn_tensor *v = vn_global_avg_pool(ctx, r);               /* [2, 1, 1, 6] */
        vn_tensor *z = vn_batch_norm2d(ctx, v, NULL, NULL, rm, rv, NULL, false, 0.1f, 1e-5f);
        vn_tensor *l = vn_linear(ctx, z, w, bias);               /* [2, 1, 1, 5] */
        vn_tensor *m = vn_matmul(ctx, vn_flatten(ctx, l), w2);   /* [2, 5] */
        vn_tensor *ce = vn_cross_entropy(ctx, m, labels, NULL, 0.1f);
        vn_tensor *bce = vn_bce_with_logits(ctx, m, targets);
        ck_assert_msg(ce && bce, "%s", vn_ctx_error(ctx));
        ck_assert_int_eq(vn_backward(ctx, ce), VN_OK);
        vn_ctx_reset(ctx);
        vn_ctx_mem_stats(ctx, &st[step]);
    }
    ck_assert_msg(st[2].system_allocs == st[1].system_allocs,
                  "a steady-state step made %llu system allocations",
                  (unsigned long long)(st[2].system_allocs - st[1].system_allocs));
    ck_assert_uint_eq(st[2].pool_in_use, 0);
    ck_assert_uint_eq(st[2].pool_peak, st[1].pool_peak);
    vn_ctx_destroy(ctx);
    vn_tensor *all[] = {x, g, be, rm, rv, w, bias, w2};
    for (int i = 0; i < 8; i++) vn_tensor_free(all[i]);
}
END_TEST

/* Grad mode off records nothing and allocates no saved state. */
START_TEST(test_no_grad_records_nothing)
{
    vn_tensor *x = vn_tensor_new4(2, 4, 4, 3, true);
    vn_tensor *w = vn_tensor_new(1, (int64_t[]){3}, true);
    vn_test_fill_uniform(x->data, x->numel, 31, -1, 1);
    vn_tensor_fill(w, 1.0f);
    vn_ctx *ctx = vn_ctx_create();
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_batch_norm2d(ctx, x, w, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->node);
    vn_mem_stats s;
    vn_ctx_mem_stats(ctx, &s);
    ck_assert_uint_eq(s.pool_in_use, (size_t)((y->numel * 4 + 63) / 64 * 64));
    vn_tensor *p = vn_max_pool2d(ctx, y, 2);
    ck_assert_ptr_null(p->node);
    ck_assert(!vn_tensor_requires_grad(p));
    vn_ctx_set_grad(ctx, true);
    p = vn_max_pool2d(ctx, y, 2); /* y does not require grad: still nothing recorded */
    ck_assert_ptr_null(p->node);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_tensor_free(w);
}
END_TEST

/* ---- errors --------------------------------------------------------------------------- */

#define EXPECT_FAIL(ctx, expr, text)                                                       \
    do {                                                                                   \
        vn_ctx_reset(ctx);                                                                 \
        vn_tensor *r_ = (expr);                                                            \
        ck_assert_msg(r_ == NULL, "%s: expected failure", #expr);                          \
        ck_assert_int_ne(vn_ctx_status(ctx), VN_OK);                                       \
        ck_assert_msg(strstr(vn_ctx_error(ctx), (text)) != NULL, "%s: message '%s' lacks '%s'", \
                      #expr, vn_ctx_error(ctx), (text));                                   \
    } while (0)

START_TEST(test_errors)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(2, 3, 3, 8, true);
    vn_tensor *x3 = vn_tensor_new(3, (int64_t[]){2, 3, 8}, true);
    vn_tensor *one = vn_tensor_new4(1, 1, 1, 8, false);
    vn_tensor *w7 = vn_tensor_new(1, (int64_t[]){7}, true);
    vn_tensor *w8 = vn_tensor_new(1, (int64_t[]){8}, true);
    vn_tensor *m = vn_tensor_new(2, (int64_t[]){4, 5}, true);
    vn_tensor *m2 = vn_tensor_new(2, (int64_t[]){6, 3}, true);
    vn_tensor *lw = vn_tensor_new(2, (int64_t[]){3, 5}, true);
    vn_tensor *lb = vn_tensor_new(1, (int64_t[]){4}, true);
    vn_tensor *logits = vn_tensor_new(2, (int64_t[]){3, 10}, true);
    vn_test_fill_uniform(x->data, x->numel, 41, -1, 1);
    vn_tensor_fill(w8, 1.0f);
    int64_t nbt = 0;

    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, w7, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                "batch_norm2d: weight has 7 elements but input has 8 channels");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, w8, w7, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                "bias has 7 elements");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, w8, w8, w7, w7, NULL, true, 0.1f, 1e-5f),
                "running_mean has 7 elements");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, w8, w8, w8, NULL, NULL, true, 0.1f, 1e-5f),
                "both be given or both be NULL");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, w8, w8, NULL, NULL, NULL, false, 0.1f, 1e-5f),
                "eval mode needs running_mean");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x3, NULL, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                "must be 4-D");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, one, NULL, NULL, NULL, NULL, &nbt, true, 0.1f, 1e-5f),
                "more than one value per channel");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, NULL, NULL, NULL, NULL, NULL, true, 0.1f, -1.0f),
                "eps must be");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, x, NULL, NULL, w8, w8, NULL, true, 1.5f, 1e-5f),
                "momentum must be in [0, 1]");
    EXPECT_FAIL(ctx, vn_batch_norm2d(ctx, NULL, NULL, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                "NULL input");
    ck_assert_int_eq(nbt, 0); /* failed calls track nothing */

    EXPECT_FAIL(ctx, vn_max_pool2d(ctx, x, 0), "max_pool2d: kernel size must be > 0, got 0");
    EXPECT_FAIL(ctx, vn_max_pool2d(ctx, x, -2), "kernel size must be > 0");
    EXPECT_FAIL(ctx, vn_max_pool2d(ctx, x, 4), "kernel 4 is larger than the input's spatial "
                "size 3x3");
    EXPECT_FAIL(ctx, vn_max_pool2d(ctx, x3, 2), "max_pool2d: input must be 4-D");
    EXPECT_FAIL(ctx, vn_adaptive_max_pool2d(ctx, x, 0, 3), "adaptive_max_pool2d: output size "
                "must be positive, got 0x3");
    EXPECT_FAIL(ctx, vn_adaptive_avg_pool2d(ctx, x, 2, -1), "adaptive_avg_pool2d: output size");
    EXPECT_FAIL(ctx, vn_global_avg_pool(ctx, x3), "global_avg_pool: input must be 4-D");

    EXPECT_FAIL(ctx, vn_matmul(ctx, m, m2), "matmul: needs [M, K] x [K, N], got [4, 5] x [6, 3]");
    EXPECT_FAIL(ctx, vn_matmul(ctx, x, m2), "matmul: needs");
    EXPECT_FAIL(ctx, vn_linear(ctx, m2, lw, NULL), "linear: input [6, 3] does not match weight "
                "[3, 5]");
    EXPECT_FAIL(ctx, vn_linear(ctx, m, lw, lb), "linear: bias has 4 elements but weight has 3 "
                "outputs");
    EXPECT_FAIL(ctx, vn_linear(ctx, m, NULL, NULL), "NULL input");

    int32_t bad[3] = {1, 9, 10};
    int32_t neg[3] = {1, -1, 2};
    float soft[30] = {0};
    EXPECT_FAIL(ctx, vn_cross_entropy(ctx, logits, bad, NULL, 0.0f),
                "cross_entropy: label 10 at row 2 is out of range [0, 10)");
    EXPECT_FAIL(ctx, vn_cross_entropy(ctx, logits, neg, NULL, 0.0f), "label -1 at row 1");
    EXPECT_FAIL(ctx, vn_cross_entropy(ctx, logits, NULL, NULL, 0.0f), "exactly one of labels "
                "and soft targets (got neither)");
    EXPECT_FAIL(ctx, vn_cross_entropy(ctx, logits, bad, soft, 0.0f), "(got both)");
    EXPECT_FAIL(ctx, vn_cross_entropy(ctx, logits, neg, NULL, 1.5f), "label smoothing must be in "
                "[0, 1], got 1.5");
    EXPECT_FAIL(ctx, vn_bce_with_logits(ctx, logits, NULL), "bce_with_logits: targets are NULL");

    /* Errors are sticky: a valid op after a failure returns NULL and keeps the first message. */
    vn_ctx_reset(ctx);
    ck_assert_ptr_null(vn_max_pool2d(ctx, x, 0));
    ck_assert_ptr_null(vn_global_avg_pool(ctx, x));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "kernel size"));
    vn_ctx_reset(ctx);
    ck_assert_ptr_nonnull(vn_global_avg_pool(ctx, x));

    vn_tensor *all[] = {x, x3, one, w7, w8, m, m2, lw, lb, logits};
    for (int i = 0; i < 10; i++) vn_tensor_free(all[i]);
    vn_ctx_destroy(ctx);
}
END_TEST

/* Backward scales by the upstream gradient and accumulates into existing gradients. */
START_TEST(test_loss_scale_and_accumulate)
{
    vn_tensor *x = vn_tensor_new(2, (int64_t[]){4, 6}, true);
    vn_test_fill_uniform(x->data, x->numel, 51, -3, 3);
    int32_t labels[4] = {0, 5, 2, 2};
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *l = vn_cross_entropy(ctx, x, labels, NULL, 0.0f);
    ck_assert_int_eq(vn_backward(ctx, l), VN_OK);
    float g1[24];
    memcpy(g1, x->grad, sizeof g1);
    /* Each row of the gradient of a mean CE sums to zero and has -(1 - p_y)/N at y. */
    for (int r = 0; r < 4; r++) {
        double s = 0;
        for (int c = 0; c < 6; c++) s += g1[r * 6 + c];
        ck_assert_double_le(fabs(s), 1e-7);
        ck_assert_float_lt(g1[r * 6 + labels[r]], 0.0f);
    }
    vn_ctx_reset(ctx);
    l = vn_cross_entropy(ctx, x, labels, NULL, 0.0f);
    const float seed = -2.0f;
    ck_assert_int_eq(vn_backward_with(ctx, l, &seed), VN_OK);
    for (int i = 0; i < 24; i++) ck_assert_float_eq_tol(x->grad[i], -g1[i], 1e-7);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
}
END_TEST

/* NaN in a max-pool window: the output is NaN and the last NaN takes the gradient. */
START_TEST(test_max_pool_nan)
{
    vn_tensor *x = vn_tensor_new4(1, 2, 2, 2, true);
    float v[8] = {1, 2, NAN, 5, 3, NAN, 0, NAN}; /* positions (h, w, c) row-major */
    memcpy(x->data, v, sizeof v);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y = vn_max_pool2d(ctx, x, 2);
    ck_assert(isnan(y->data[0]) && isnan(y->data[1]));
    float seed[2] = {1.0f, 10.0f};
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    float want[8] = {0, 0, 1, 0, 0, 0, 0, 10};
    for (int i = 0; i < 8; i++) ck_assert_float_eq(x->grad[i], want[i]);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("fixtures");
    tcase_add_loop_test(tc, test_bn_fixture, 0, 2 * N_BN);
    tcase_add_loop_test(tc, test_pool_fixture, 0, 2 * N_POOL);
    tcase_add_test(tc, test_matmul_fixture);
    tcase_add_loop_test(tc, test_linear_fixture, 0, 6);
    tcase_add_loop_test(tc, test_loss_fixture, 0, 2 * N_LOSS);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("misc");
    tcase_add_loop_test(tm, test_bn_deterministic_threads, 0, 2);
    tcase_add_test(tm, test_misc_deterministic_threads);
    tcase_add_test(tm, test_steady_state_no_malloc);
    tcase_add_test(tm, test_no_grad_records_nothing);
    tcase_add_test(tm, test_errors);
    tcase_add_test(tm, test_loss_scale_and_accumulate);
    tcase_add_test(tm, test_max_pool_nan);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    return vn_test_run(ops_suite(), true);
}
