/* The deploy merge (and model creation) under allocation failure: every allocation of vn_vanillanet_switch_to_deploy
 * is failed in turn (tests/support/vn_failalloc.h; no ck_* call while armed). Each failure
 * must give VN_ERR_NOMEM with a message, leave the training model exactly as it was (same
 * tensors, same bytes, same names) and able to train; once no allocation fails, the merge
 * must give the same bytes as a merge of an identical model that never saw a failure. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/vn_vanillanet.h"
#include "vn_failalloc.h"
#include "vn_test.h"

static vn_vanillanet_config small_cfg(bool ada_pool)
{
    vn_vanillanet_config c = {0};
    c.n_stages = 3;
    int dims[] = {8, 8, 16, 24}, strides[] = {1, 2, 2}, ada[] = {0, 4, 2};
    memcpy(c.dims, dims, sizeof dims);
    memcpy(c.strides, strides, sizeof strides);
    if (ada_pool) memcpy(c.ada_pool, ada, sizeof ada);
    c.ada_pool_enabled = ada_pool;
    c.act_num = 2;
    c.in_chans = 3;
    c.num_classes = 10;
    return c;
}

/* Weights and BN statistics away from their initial values, so every fold matters. */
static vn_vanillanet *make_model(const vn_vanillanet_config *c)
{
    vn_vanillanet *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_vanillanet_create(c, false, &m, &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_init(m, 5);
    vn_rng rng;
    vn_rng_seed(&rng, 11, 0, 0);
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        if (e->kind == VN_STATE_COUNT) {
            *e->count = 3 + i;
            continue;
        }
        bool var = strstr(e->name, "running_var") != NULL;
        for (int64_t k = 0; k < e->tensor->numel; k++) {
            double u = vn_rng_uniform_double(&rng);
            e->tensor->data[k] = var ? (float)(0.5 + u) : e->tensor->data[k] + (float)(0.2 * (u - 0.5));
        }
    }
    return m;
}

/* A copy of every state entry: name, tensor pointer and bytes (or the count). */
typedef struct snapshot {
    int n;
    char **names;
    vn_tensor **tensors;
    float **data;
    int64_t *counts;
} snapshot;

static void snapshot_take(snapshot *s, const vn_vanillanet *m)
{
    s->n = m->state.n;
    s->names = calloc((size_t)s->n, sizeof *s->names);
    s->tensors = calloc((size_t)s->n, sizeof *s->tensors);
    s->data = calloc((size_t)s->n, sizeof *s->data);
    s->counts = calloc((size_t)s->n, sizeof *s->counts);
    ck_assert(s->names && s->tensors && s->data && s->counts);
    for (int i = 0; i < s->n; i++) {
        const vn_state_item *e = &m->state.items[i];
        s->names[i] = strdup(e->name);
        s->tensors[i] = e->tensor;
        if (e->kind == VN_STATE_COUNT) {
            s->counts[i] = *e->count;
            continue;
        }
        size_t bytes = (size_t)e->tensor->numel * sizeof(float);
        s->data[i] = malloc(bytes);
        ck_assert_ptr_nonnull(s->data[i]);
        memcpy(s->data[i], e->tensor->data, bytes);
    }
}

static void snapshot_check(const snapshot *s, const vn_vanillanet *m, long n)
{
    ck_assert_msg(!m->deploy && m->state.n == s->n, "allocation %ld: the model changed form", n);
    for (int i = 0; i < s->n; i++) {
        const vn_state_item *e = &m->state.items[i];
        ck_assert_msg(strcmp(e->name, s->names[i]) == 0 && e->tensor == s->tensors[i],
                      "allocation %ld: state entry %d is now '%s'", n, i, e->name);
        if (e->kind == VN_STATE_COUNT)
            ck_assert_msg(*e->count == s->counts[i], "allocation %ld: %s changed", n, e->name);
        else
            ck_assert_msg(memcmp(e->tensor->data, s->data[i],
                                 (size_t)e->tensor->numel * sizeof(float)) == 0,
                          "allocation %ld: %s changed", n, e->name);
    }
}

/* Puts back the values a training step changed (weights, BN statistics and counters). */
static void snapshot_restore(const snapshot *s, vn_vanillanet *m)
{
    for (int i = 0; i < s->n; i++) {
        vn_state_item *e = &m->state.items[i];
        if (e->kind == VN_STATE_COUNT) *e->count = s->counts[i];
        else memcpy(e->tensor->data, s->data[i], (size_t)e->tensor->numel * sizeof(float));
    }
}

static void snapshot_free(snapshot *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->names[i]);
        free(s->data[i]);
    }
    free(s->names);
    free(s->tensors);
    free(s->data);
    free(s->counts);
}

/* One SGD step in training mode; every parameter must get a finite gradient and the stem a
 * non-zero one. */
static void train_step(vn_vanillanet *m, long n)
{
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(2, 32, 32, 3, false);
    ck_assert(ctx && x);
    vn_test_fill_uniform(x->data, x->numel, 7, -1, 1);
    vn_vanillanet_set_training(m, true);
    int32_t labels[2] = {1, 8};
    vn_tensor *loss = vn_cross_entropy(ctx, vn_vanillanet_forward(ctx, m, x), labels, NULL, 0.0f);
    ck_assert_msg(loss && vn_backward(ctx, loss) == VN_OK, "allocation %ld: step failed: %s", n,
                  vn_ctx_error(ctx));
    ck_assert_msg(isfinite(loss->data[0]), "allocation %ld: loss %g", n, (double)loss->data[0]);
    double stem = 0;
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        if (e->kind != VN_STATE_PARAM) continue;
        for (int64_t k = 0; k < e->tensor->numel; k++) {
            float g = e->tensor->grad[k];
            ck_assert_msg(isfinite(g), "allocation %ld: %s has a non-finite gradient", n, e->name);
            if (i == 0) stem += fabs(g);
            e->tensor->data[k] -= 0.01f * g;
            e->tensor->grad[k] = 0.0f;
        }
    }
    ck_assert_msg(stem > 0, "allocation %ld: no gradient reaches %s", n, m->state.items[0].name);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
}

static void check_same(const vn_vanillanet *a, const vn_vanillanet *b)
{
    ck_assert(a->deploy && b->deploy);
    ck_assert_int_eq(a->state.n, b->state.n);
    for (int i = 0; i < a->state.n; i++) {
        const vn_state_item *x = &a->state.items[i], *y = &b->state.items[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->tensor->numel, y->tensor->numel);
        ck_assert_msg(memcmp(x->tensor->data, y->tensor->data,
                             (size_t)x->tensor->numel * sizeof(float)) == 0,
                      "%s differs from the merge without failures", x->name);
    }
}

START_TEST(test_merge_sweep)
{
    vn_vanillanet_config c = small_cfg(_i == 1);
    vn_vanillanet *m = make_model(&c), *ref = make_model(&c);
    vn_error err = {0};
    ck_assert_msg(vn_vanillanet_switch_to_deploy(ref, false, &err) == VN_OK, "%s", err.msg);
    snapshot s;
    snapshot_take(&s, m);
    long n = 1;
    for (;; n++) {
        memset(&err, 0, sizeof err);
        vn_failalloc_arm(n, false);
        int rc = vn_vanillanet_switch_to_deploy(m, false, &err);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_msg(rc == VN_OK, "no allocation failed, yet: %s", err.msg);
            break;
        }
        ck_assert_msg(rc == VN_ERR_NOMEM, "allocation %ld: status %d (%s)", n, rc, err.msg);
        ck_assert_msg(strstr(err.msg, "out of memory merging the model") &&
                      strstr(err.msg, "training model is unchanged"),
                      "allocation %ld: unclear message '%s'", n, err.msg);
        snapshot_check(&s, m, n);
        train_step(m, n);
        snapshot_restore(&s, m);
    }
    ck_assert_int_gt(n, 20); /* the sweep went through the whole merge */
    check_same(m, ref);
    ck_assert(m->training); /* the mode is kept; act_learn is 1 after a merge */
    ck_assert_float_eq(m->act_learn, 1.0f);
    snapshot_free(&s);
    vn_vanillanet_destroy(m);
    vn_vanillanet_destroy(ref);
}
END_TEST

/* Building a model from the plan: every failed allocation gives a clean error (the ASan build
 * checks that nothing leaks). */
START_TEST(test_create_sweep)
{
    vn_vanillanet_config c = small_cfg(false);
    c.shortcut = VN_SHORTCUT_IDENTITY;
    long n = 1;
    for (;; n++) {
        vn_vanillanet *m = NULL;
        vn_error err = {0};
        vn_failalloc_arm(n, false);
        int rc = vn_vanillanet_create(&c, _i == 1, &m, &err);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_msg(rc == VN_OK && m, "%s", err.msg);
            vn_vanillanet_destroy(m);
            break;
        }
        ck_assert_msg(rc == VN_ERR_NOMEM && !m, "allocation %ld: status %d", n, rc);
        ck_assert_msg(strstr(err.msg, "out of memory"), "allocation %ld: '%s'", n, err.msg);
    }
    ck_assert_int_gt(n, 20);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("merge-failalloc");
    TCase *tc = tcase_create("merge");
    tcase_add_loop_test(tc, test_merge_sweep, 0, 2);
    tcase_add_loop_test(tc, test_create_sweep, 0, 2);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}
