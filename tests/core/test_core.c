/* Tests of the core: context memory, tape, backward, grad mode, errors, element-wise ops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/vn_profile.h"
#include "base/vn_fs.h"
#include "vn_test.h"

/* ---- memory and tape ---------------------------------------------------------------- */

static vn_tensor *mlp_step(vn_ctx *ctx, vn_tensor *x, vn_tensor *w)
{
    vn_tensor *h = vn_leaky_relu(ctx, vn_add(ctx, x, w), 0.2f);
    vn_tensor *y = vn_scale(ctx, vn_relu(ctx, h), 3.0f);
    int64_t s[1] = {y->numel};
    return vn_reshape(ctx, y, 1, s);
}

/* mlp_step's input x, weight w (requires grad) and a seed gradient of ones (malloc'd). */
static float *mlp_inputs(vn_tensor **x, vn_tensor **w)
{
    *x = vn_tensor_new4(2, 3, 4, 5, false);
    *w = vn_tensor_new4(2, 3, 4, 5, true);
    vn_test_fill_uniform((*x)->data, (*x)->numel, 1, -1, 1);
    vn_test_fill_uniform((*w)->data, (*w)->numel, 2, -1, 1);
    float *seed = calloc((size_t)(*x)->numel, sizeof *seed);
    for (int64_t i = 0; i < (*x)->numel; i++) seed[i] = 1.0f;
    return seed;
}

START_TEST(test_steady_state_no_malloc)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x, *w;
    float *seed = mlp_inputs(&x, &w);
    vn_mem_stats st0, st1;
    for (int step = 0; step < 3; step++) {
        vn_tensor *y = mlp_step(ctx, x, w);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
        vn_ctx_reset(ctx);
        if (step == 0) vn_ctx_mem_stats(ctx, &st0);
    }
    vn_ctx_mem_stats(ctx, &st1);
    ck_assert_msg(st1.system_allocs == st0.system_allocs,
                  "steady-state steps made %llu system allocations",
                  (unsigned long long)(st1.system_allocs - st0.system_allocs));
    ck_assert_uint_eq(st1.pool_in_use, 0);
    ck_assert_uint_gt(st1.pool_peak, 0);
    /* Gradients accumulated over three steps: the dx of three identical passes. */
    vn_tensor *w2 = vn_tensor_new4(2, 3, 4, 5, true);
    memcpy(w2->data, w->data, (size_t)w->numel * sizeof(float));
    vn_tensor *y = mlp_step(ctx, x, w2);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    for (int64_t i = 0; i < w->numel; i++) ck_assert_float_eq_tol(w->grad[i], 3 * w2->grad[i], 1e-5);
    free(seed);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_tensor_free(w2);
    vn_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_backward_frees_intermediate_grads)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *w = vn_tensor_new4(1, 8, 8, 16, true);
    vn_test_fill_uniform(w->data, w->numel, 3, -1, 1);
    vn_tensor *y = w;
    for (int i = 0; i < 10; i++) y = vn_leaky_relu(ctx, y, 0.5f);
    ck_assert_ptr_nonnull(y);
    vn_mem_stats before, after;
    vn_ctx_mem_stats(ctx, &before);
    float *seed = malloc((size_t)y->numel * sizeof *seed);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = 1.0f;
    vn_ctx_clear_peak(ctx);
    ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
    vn_ctx_mem_stats(ctx, &after);
    /* Activations stay until reset; every intermediate gradient is gone. */
    ck_assert_uint_eq(after.pool_in_use, before.pool_in_use);
    /* At most two activation-sized gradients alive at once during backward. */
    size_t one = (size_t)y->numel * sizeof(float);
    ck_assert_uint_le(after.pool_peak - before.pool_in_use, 2 * one + 128);
    /* d/dw of ten leaky_relu(0.5): 0.5^k where w < 0, 1 elsewhere. */
    for (int64_t i = 0; i < w->numel; i++)
        ck_assert_float_eq_tol(w->grad[i], w->data[i] > 0 ? 1.0f : powf(0.5f, 10), 1e-7);
    vn_ctx_reset(ctx);
    vn_ctx_mem_stats(ctx, &after);
    ck_assert_uint_eq(after.pool_in_use, 0);
    free(seed);
    vn_ctx_destroy(ctx);
    vn_tensor_free(w);
}
END_TEST

START_TEST(test_no_grad_records_nothing)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *w = vn_tensor_new4(1, 2, 2, 3, true);
    ck_assert(vn_ctx_set_grad(ctx, false) == true);
    vn_tensor *y = vn_relu(ctx, w);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(y->node);
    ck_assert(!vn_tensor_requires_grad(y));
    float one[12] = {1};
    ck_assert_int_eq(vn_backward_with(ctx, y, one), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "not on the tape"));
    vn_ctx_reset(ctx);
    ck_assert(vn_ctx_set_grad(ctx, true) == false);
    y = vn_relu(ctx, w);
    ck_assert_ptr_nonnull(y->node);
    /* Inputs that do not require grad record nothing either. */
    vn_tensor *c = vn_tensor_new4(1, 2, 2, 3, false);
    ck_assert_ptr_null(vn_relu(ctx, c)->node);
    vn_tensor_free(c);
    vn_tensor_free(w);
    vn_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_sticky_error)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *a = vn_tensor_new4(1, 2, 2, 3, false);
    vn_tensor *b = vn_tensor_new4(1, 2, 3, 2, false);
    vn_tensor *y = vn_add(ctx, a, b);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(vn_ctx_status(ctx), VN_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "[1, 2, 2, 3]"));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "[1, 2, 3, 2]"));
    /* Later ops propagate NULL and keep the first message. */
    ck_assert_ptr_null(vn_relu(ctx, vn_scale(ctx, y, 2.0f)));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "add:"));
    ck_assert_ptr_null(vn_reshape(ctx, a, 2, (int64_t[]){5, 5}));
    vn_ctx_reset(ctx);
    ck_assert_int_eq(vn_ctx_status(ctx), VN_OK);
    ck_assert_ptr_null(vn_reshape(ctx, a, 2, (int64_t[]){5, 5}));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "cannot view [1, 2, 2, 3] as [5, 5]"));
    vn_ctx_reset(ctx);
    ck_assert_ptr_null(vn_dropout(ctx, a, 1.5f, true));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "[0, 1)"));
    vn_tensor_free(a);
    vn_tensor_free(b);
    vn_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_backward_needs_scalar)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *w = vn_tensor_new4(1, 1, 1, 3, true);
    ck_assert_int_eq(vn_backward(ctx, vn_relu(ctx, w)), VN_ERR_SHAPE);
    vn_tensor_free(w);
    vn_ctx_destroy(ctx);
}
END_TEST

/* Misuse of the API a caller can make gets an error, not a crash or a silent wrong result. */
START_TEST(test_api_misuse_refused)
{
    /* Shapes whose element count overflows: NULL, and an error on the context. */
    ck_assert_ptr_null(vn_tensor_new4((1LL << 62) + 1, 1, 1, 4, false));
    /* A negative dimension or a rank out of range: NULL, not an abort. */
    ck_assert_ptr_null(vn_tensor_new4(2, -3, 1, 1, false));
    ck_assert_ptr_null(vn_tensor_new(-1, (int64_t[]){1}, true));
    ck_assert_ptr_null(vn_tensor_new(VN_MAX_DIMS + 1, (int64_t[VN_MAX_DIMS + 1]){0}, false));
    ck_assert_ptr_null(vn_tensor_new(2, NULL, false));
    vn_ctx *c = vn_ctx_create(), *d = vn_ctx_create();
    ck_assert_ptr_null(vn_ctx_tensor4(c, 1LL << 20, 1LL << 20, 1LL << 20, 1LL << 20));
    ck_assert_int_eq(vn_ctx_status(c), VN_ERR_INVALID);
    vn_ctx_reset(c);
    /* A negative dimension in reshape, even with the right product. */
    vn_tensor *x = vn_tensor_new(2, (int64_t[]){2, 3}, false);
    ck_assert_ptr_null(vn_reshape(c, x, 4, (int64_t[]){-1, -2, 1, 3}));
    ck_assert_int_eq(vn_ctx_status(c), VN_ERR_SHAPE);
    vn_ctx_reset(c);
    /* Another context's step tensor: refused by ops, backward and release. */
    vn_tensor *w = vn_tensor_new(2, (int64_t[]){3, 4}, true);
    vn_tensor *y = vn_matmul(c, x, w);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(vn_relu(d, y));
    ck_assert_int_eq(vn_ctx_status(d), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(d), "another context"));
    vn_ctx_reset(d);
    int32_t lab[2] = {0, 1};
    vn_tensor *loss = vn_cross_entropy(c, y, lab, NULL, 0);
    ck_assert_int_eq(vn_backward(d, loss), VN_ERR_INVALID);
    vn_ctx_reset(d);
    vn_release(d, y);
    ck_assert_int_eq(vn_ctx_status(d), VN_ERR_INVALID);
    vn_ctx_reset(d);
    /* Backward twice: the tape was consumed. */
    ck_assert_int_eq(vn_backward(c, loss), VN_OK);
    ck_assert_int_eq(vn_backward(c, loss), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(c), "already consumed"));
    vn_ctx_reset(c);
    /* No context: ops give NULL, status says so. */
    ck_assert_ptr_null(vn_relu(NULL, x));
    ck_assert_int_eq(vn_ctx_status(NULL), VN_ERR_INVALID);
    ck_assert_ptr_null(vn_ctx_tensor4(NULL, 1, 1, 1, 1));
    ck_assert_int_eq(vn_backward(NULL, loss), VN_ERR_INVALID);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_ctx_destroy(c);
    vn_ctx_destroy(d);
}
END_TEST

/* ---- element-wise ops against PyTorch ------------------------------------------------ */

START_TEST(test_elementwise_fixtures)
{
    vn_st_file *f = vn_test_fixture("core/elementwise.safetensors");
    vn_ctx *ctx = vn_ctx_create();
    const char *names[3] = {"relu", "leaky03", "leaky1"};
    const float slopes[3] = {0.0f, 0.3f, 1.0f};
    for (int k = 0; k < 3; k++) {
        vn_tensor *x = vn_test_tensor(f, "x", true);
        const float *g = vn_test_f32(f, "g", x->numel);
        vn_tensor *y = k == 0 ? vn_relu(ctx, x) : vn_leaky_relu(ctx, x, slopes[k]);
        ck_assert_ptr_nonnull(y);
        char key[64];
        snprintf(key, sizeof key, "%s.y", names[k]);
        ck_assert(vn_test_close(key, y->data, vn_test_f32(f, key, y->numel), y->numel, 0, 0));
        ck_assert_int_eq(vn_backward_with(ctx, y, g), VN_OK);
        snprintf(key, sizeof key, "%s.dx", names[k]);
        /* Exact: the gradient is a select and one multiply. */
        ck_assert(vn_test_close(key, x->grad, vn_test_f32(f, key, x->numel), x->numel, 0, 0));
        vn_ctx_reset(ctx);
        vn_tensor_free(x);
    }
    vn_tensor *a = vn_test_tensor(f, "a", true), *b = vn_test_tensor(f, "b", true);
    vn_tensor *y = vn_scale(ctx, vn_add(ctx, a, b), 2.5f);
    ck_assert(vn_test_close("add.y", y->data, vn_test_f32(f, "add.y", y->numel), y->numel, 1e-6, 1e-6));
    ck_assert_int_eq(vn_backward_with(ctx, y, vn_test_f32(f, "add.g", y->numel)), VN_OK);
    ck_assert(vn_test_close("add.da", a->grad, vn_test_f32(f, "add.da", a->numel), a->numel, 1e-6, 1e-6));
    ck_assert(vn_test_close("add.db", b->grad, vn_test_f32(f, "add.db", b->numel), b->numel, 1e-6, 1e-6));
    vn_tensor_free(a);
    vn_tensor_free(b);
    vn_ctx_destroy(ctx);
    vn_st_close(f);
}
END_TEST

/* ---- gradient checks ------------------------------------------------------------------ */

static vn_tensor *fwd_leaky(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    return vn_leaky_relu(ctx, in[0], *(const float *)user);
}

static vn_tensor *fwd_add_scale(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    vn_tensor *s = vn_add(ctx, in[0], in[1]);
    return vn_flatten(ctx, vn_scale(ctx, vn_add(ctx, s, in[0]), -1.5f));
}

static vn_tensor *fwd_dropout(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    (void)user;
    return vn_dropout(ctx, in[0], 0.4f, true);
}

/* Values kept away from 0 so the kink of (leaky) ReLU is not inside [x - eps, x + eps]. */
static void away_from_zero(vn_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        if (fabsf(t->data[i]) < 0.05f) t->data[i] = t->data[i] < 0 ? -0.05f : 0.05f;
}

START_TEST(test_gradcheck_elementwise)
{
    const int64_t shapes[][4] = {{1, 1, 1, 1}, {1, 3, 5, 1}, {2, 7, 3, 5}, {3, 1, 1, 17}};
    const float slopes[] = {0.0f, 0.3f, 1.0f};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        vn_tensor *a = vn_tensor_new(4, shapes[s], true);
        vn_tensor *b = vn_tensor_new(4, shapes[s], true);
        vn_test_fill_uniform(a->data, a->numel, 10 + s, -1, 1);
        vn_test_fill_uniform(b->data, b->numel, 20 + s, -1, 1);
        away_from_zero(a);
        for (size_t k = 0; k < 3; k++)
            VN_CHECK_GRAD("leaky_relu", fwd_leaky, 1, &a, (void *)&slopes[k], 1e-2, 1e-3);
        vn_tensor *ab[2] = {a, b};
        VN_CHECK_GRAD("add+scale+flatten", fwd_add_scale, 2, ab, NULL, 1e-2, 1e-3);
        VN_CHECK_GRAD("dropout", fwd_dropout, 1, &a, NULL, 1e-2, 1e-3);
        vn_tensor_free(a);
        vn_tensor_free(b);
    }
}
END_TEST

START_TEST(test_dropout_statistics)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_rng_seed(vn_ctx_rng(ctx), 42, 0, 0);
    vn_tensor *x = vn_tensor_new4(1, 1, 1, 100000, false);
    vn_tensor_fill(x, 1.0f);
    vn_tensor *y = vn_dropout(ctx, x, 0.25f, true);
    int64_t zeros = 0;
    for (int64_t i = 0; i < y->numel; i++) {
        if (y->data[i] == 0.0f) zeros++;
        else ck_assert_float_eq(y->data[i], 1.0f / 0.75f);
    }
    ck_assert_int_ge(zeros, 24000);
    ck_assert_int_le(zeros, 26000);
    /* Eval mode and p = 0 are the identity. */
    vn_tensor *e = vn_dropout(ctx, x, 0.25f, false);
    for (int64_t i = 0; i < e->numel; i++) ck_assert_float_eq(e->data[i], 1.0f);
    /* The same RNG state gives the same mask. */
    vn_ctx_reset(ctx);
    vn_rng_seed(vn_ctx_rng(ctx), 42, 0, 0);
    vn_tensor *y1 = vn_dropout(ctx, x, 0.25f, true);
    vn_rng_seed(vn_ctx_rng(ctx), 42, 0, 0);
    vn_tensor *y2 = vn_dropout(ctx, x, 0.25f, true);
    ck_assert_mem_eq(y1->data, y2->data, (size_t)y1->numel * sizeof(float));
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_rng_streams)
{
    vn_rng a, b, c;
    vn_rng_seed(&a, 7, 1, 2);
    vn_rng_seed(&b, 7, 1, 2);
    vn_rng_seed(&c, 7, 2, 1);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t va = vn_rng_u64(&a), vb = vn_rng_u64(&b), vc = vn_rng_u64(&c);
        ck_assert_uint_eq(va, vb);
        same_c += va == vc;
    }
    ck_assert_int_eq(same_c, 0);
    double sum = 0, sq = 0;
    int64_t n = 200000;
    for (int64_t i = 0; i < n; i++) {
        double v = vn_rng_trunc_normal(&a, 0.0, 0.02, -2.0, 2.0);
        sum += v;
        sq += v * v;
        ck_assert(v >= -2.0 && v <= 2.0);
    }
    ck_assert_double_le(fabs(sum / n), 2e-4);
    ck_assert_double_le(fabs(sqrt(sq / n) - 0.02), 4e-4);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(vn_rng_below(&a, 7), 7);
}
END_TEST

START_TEST(test_layout_conversion)
{
    float oihw[2 * 3 * 4 * 5], ohwi[2 * 3 * 4 * 5], back[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) oihw[i] = (float)i;
    vn_oihw_to_ohwi(ohwi, oihw, 2, 3, 4, 5);
    /* element (o=1, i=2, h=3, w=4) */
    ck_assert_float_eq(ohwi[((1 * 4 + 3) * 5 + 4) * 3 + 2], oihw[((1 * 3 + 2) * 4 + 3) * 5 + 4]);
    vn_ohwi_to_oihw(back, ohwi, 2, 3, 4, 5);
    ck_assert_mem_eq(back, oihw, sizeof oihw);
}
END_TEST

/* UTF-8: well-formed text passes; stray, overlong, surrogate and out-of-range bytes do not,
 * and the escape names them as \xNN while keeping the good characters. */
START_TEST(test_utf8)
{
    ck_assert(vn_utf8_valid(""));
    ck_assert(vn_utf8_valid("chat_\xc3\xa9t\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x90\x88"));
    ck_assert(!vn_utf8_valid("caf\xe9"));             /* Latin-1 */
    ck_assert(!vn_utf8_valid("\xc0\xaf"));            /* overlong '/' */
    ck_assert(!vn_utf8_valid("\xe0\x80\xaf"));        /* overlong, 3 bytes */
    ck_assert(!vn_utf8_valid("\xed\xa0\x80"));        /* a surrogate */
    ck_assert(!vn_utf8_valid("\xf4\x90\x80\x80"));    /* past U+10FFFF */
    ck_assert(!vn_utf8_valid("\xe7\x8c"));            /* cut short */
    ck_assert(!vn_utf8_valid("\x80"));
    char buf[32];
    ck_assert_str_eq(vn_utf8_escape("caf\xe9-\xc3\xa9", buf, sizeof buf), "caf\\xe9-\xc3\xa9");
    ck_assert_str_eq(vn_utf8_escape("\xff\xff\xff", buf, 9), "\\xff\\xff"); /* cut, whole */
    ck_assert_int_eq(vn_utf8_columns("\xc3\xa9t\xc3\xa9"), 3);
}
END_TEST

/* A killed writer's temporary file: "<file>.tmp.<pid>" and, for a file written under a
 * temporary name, "<file>.tmp.<pid>.tmp.<pid>", stale only when every pid is gone. */
START_TEST(test_stale_tmp_names)
{
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    pid_t live = fork();
    if (live == 0) {
        pause();
        _exit(0);
    }
    char n[128];
    snprintf(n, sizeof n, "ckpt-s1.safetensors.tmp.%ld", (long)dead);
    ck_assert(vn_fs_stale_tmp(n));
    snprintf(n, sizeof n, "ckpt-s1.safetensors.tmp.%ld.tmp.%ld", (long)dead, (long)dead);
    ck_assert(vn_fs_stale_tmp(n));
    snprintf(n, sizeof n, "ckpt-s1.safetensors.tmp.%ld.tmp.%ld", (long)live, (long)dead);
    ck_assert(!vn_fs_stale_tmp(n)); /* its outer writer still runs */
    snprintf(n, sizeof n, "a.png.tmp.%ld", (long)live);
    ck_assert(!vn_fs_stale_tmp(n));
    snprintf(n, sizeof n, "a.png.tmp.%ld", (long)getpid());
    ck_assert(!vn_fs_stale_tmp(n)); /* this process's own */
    snprintf(n, sizeof n, "my.tmp.notes.tmp.%ld", (long)dead);
    ck_assert(vn_fs_stale_tmp(n)); /* ".tmp." earlier in the name is no segment */
    ck_assert(!vn_fs_stale_tmp("a.png"));
    ck_assert(!vn_fs_stale_tmp("a.png.tmp."));
    ck_assert(!vn_fs_stale_tmp("a.png.tmp.12x"));
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
}
END_TEST

/* The op profile counts each op's calls per direction while enabled, nothing while disabled,
 * and reports the ops it saw. */
START_TEST(test_profile_counts)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x, *w;
    float *seed = mlp_inputs(&x, &w);
    vn_profile_reset();
    for (int on = 0; on < 2; on++) {
        vn_profile_enable(on == 1);
        for (int step = 0; step < 3; step++) {
            vn_tensor *y = mlp_step(ctx, x, w);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(vn_backward_with(ctx, y, seed), VN_OK);
            vn_ctx_reset(ctx);
        }
    }
    vn_profile_enable(false);
    double sec;
    int64_t calls;
    vn_profile_get(VN_OP_LEAKY_RELU, VN_PROFILE_FORWARD, &sec, &calls);
    ck_assert_int_eq(calls, 3); /* the three enabled steps only */
    ck_assert(sec >= 0);
    vn_profile_get(VN_OP_SCALE, VN_PROFILE_BACKWARD, &sec, &calls);
    ck_assert_int_eq(calls, 3);
    vn_profile_get(VN_OP_LEAKY_RELU, VN_PROFILE_RECOMPUTE, &sec, &calls);
    ck_assert_int_eq(calls, 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(fp);
    double total = vn_profile_report(fp, 1.0);
    fclose(fp);
    ck_assert(total >= 0);
    ck_assert_ptr_nonnull(strstr(buf, "leaky_relu"));
    ck_assert_ptr_nonnull(strstr(buf, "of wall"));
    ck_assert_ptr_null(strstr(buf, "conv2d")); /* not run: no row */
    free(buf);
    vn_profile_reset();
    vn_profile_get(VN_OP_LEAKY_RELU, VN_PROFILE_FORWARD, &sec, &calls);
    ck_assert_int_eq(calls, 0);
    free(seed);
    vn_tensor_free(x);
    vn_tensor_free(w);
    vn_ctx_destroy(ctx);
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_steady_state_no_malloc);
    tcase_add_test(tc, test_backward_frees_intermediate_grads);
    tcase_add_test(tc, test_no_grad_records_nothing);
    tcase_add_test(tc, test_sticky_error);
    tcase_add_test(tc, test_backward_needs_scalar);
    tcase_add_test(tc, test_api_misuse_refused);
    tcase_add_test(tc, test_elementwise_fixtures);
    tcase_add_test(tc, test_gradcheck_elementwise);
    tcase_add_test(tc, test_dropout_statistics);
    tcase_add_test(tc, test_rng_streams);
    tcase_add_test(tc, test_layout_conversion);
    tcase_add_test(tc, test_profile_counts);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_stale_tmp_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(core_suite(), true);
}
