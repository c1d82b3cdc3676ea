/* Layers and the VanillaNet family against PyTorch fixtures (tests/reference/gen_models.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/vn_vanillanet.h"
#include "vn_test.h"

/* ---- parameter counts ----------------------------------------------------------------- */

START_TEST(test_param_counts_match_paper)
{
    /* Deploy parameter counts at 1000 classes, in millions, as the paper reports them. */
    const struct { const char *name; double millions; } want[] = {
        {"vanillanet_5", 15.52},  {"vanillanet_6", 32.51},  {"vanillanet_7", 32.80},
        {"vanillanet_8", 37.10},  {"vanillanet_9", 41.40},  {"vanillanet_10", 45.69},
        {"vanillanet_11", 49.99}, {"vanillanet_12", 54.29}, {"vanillanet_13", 58.59},
        {"vanillanet_13_x1_5", 127.80}, {"vanillanet_13_x1_5_ada_pool", 127.80}};
    int n = 0;
    for (const char *const *p = vn_vanillanet_variant_names(); *p; p++) n++;
    ck_assert_int_eq(n, 11);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vn_vanillanet_config cfg;
        vn_error err = {0};
        ck_assert_int_eq(vn_vanillanet_variant(want[i].name, &cfg, &err), VN_OK);
        double got = (double)vn_vanillanet_count_params(&cfg, true) / 1e6;
        ck_assert_msg(fabs(got - want[i].millions) < 0.005, "%s: %.4fM deploy parameters, paper %.2fM",
                      want[i].name, got, want[i].millions);
    }
    vn_vanillanet_config cfg;
    vn_vanillanet_variant("vanillanet_5", &cfg, NULL);
    double train = (double)vn_vanillanet_count_params(&cfg, false) / 1e6;
    ck_assert_msg(fabs(train - 22.33) < 0.005, "vanillanet_5 train: %.4fM, expected 22.33M", train);
    vn_error err = {0};
    ck_assert_int_eq(vn_vanillanet_variant("vanillanet_4", &cfg, &err), VN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "vanillanet_13_x1_5_ada_pool"));
}
END_TEST

static vn_vanillanet_config small_cfg(void)
{
    vn_vanillanet_config c = {0};
    c.n_stages = 3;
    int dims[] = {8, 8, 16, 24}, strides[] = {1, 2, 2};
    memcpy(c.dims, dims, sizeof dims);
    memcpy(c.strides, strides, sizeof strides);
    c.act_num = 3;
    c.in_chans = 3;
    c.num_classes = 10;
    return c;
}

START_TEST(test_count_equals_allocated)
{
    for (int sc = 0; sc < 2; sc++)
        for (int deploy = 0; deploy < 2; deploy++) {
            if (sc && deploy) continue;
            vn_vanillanet_config c = small_cfg();
            c.shortcut = sc ? VN_SHORTCUT_IDENTITY : VN_SHORTCUT_NONE;
            vn_vanillanet *m = NULL;
            ck_assert_int_eq(vn_vanillanet_create(&c, deploy, &m, NULL), VN_OK);
            ck_assert_int_eq(vn_state_numel(&m->state, VN_STATE_PARAM),
                             vn_vanillanet_count_params(&c, deploy));
            vn_vanillanet_destroy(m);
        }
}
END_TEST

/* An EMA-style copy drops its gradient buffers: no parameter keeps one or requires grad, its
 * forward (training and eval mode, the tape recording) gives the same outputs as before, and
 * a later zero_grad brings a buffer back. */
START_TEST(test_drop_grads)
{
    vn_vanillanet_config c = small_cfg();
    vn_vanillanet *m = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, NULL), VN_OK);
    vn_vanillanet_init(m, 5);
    vn_tensor *x = vn_tensor_new4(2, 32, 32, c.in_chans, false);
    vn_test_fill_uniform(x->data, x->numel, 9, -1, 1);
    for (int training = 0; training < 2; training++) {
        vn_vanillanet_set_training(m, training);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
        ck_assert_msg(y, "%s", vn_ctx_error(ctx));
        float *ref = malloc((size_t)y->numel * sizeof *ref);
        memcpy(ref, y->data, (size_t)y->numel * sizeof *ref);
        int64_t n = y->numel;
        vn_ctx_destroy(ctx);
        if (training) vn_state_drop_grads(&m->state);
        ctx = vn_ctx_create();
        y = vn_vanillanet_forward(ctx, m, x);
        ck_assert_msg(y, "%s", vn_ctx_error(ctx));
        ck_assert_mem_eq(y->data, ref, (size_t)n * sizeof *ref);
        free(ref);
        vn_ctx_destroy(ctx);
    }
    for (int i = 0; i < m->state.n; i++) {
        const vn_tensor *t = m->state.items[i].tensor;
        if (m->state.items[i].kind != VN_STATE_PARAM) continue;
        ck_assert_msg(!t->grad && !vn_tensor_requires_grad(t), "%s keeps a gradient",
                      m->state.items[i].name);
    }
    vn_tensor *w = m->state.items[0].tensor;
    ck_assert_int_eq(vn_tensor_zero_grad(w), VN_OK);
    ck_assert_ptr_nonnull(w->grad);
    vn_tensor_free(x);
    vn_vanillanet_destroy(m);
}
END_TEST

/* ---- state names and initialisation --------------------------------------------------- */

START_TEST(test_state_names_follow_official_order)
{
    const char *files[2] = {"models/small_train.safetensors", "models/small_deploy.safetensors"};
    for (int deploy = 0; deploy < 2; deploy++) {
        vn_st_file *f = vn_test_fixture(files[deploy]);
        vn_vanillanet_config c = {0};
        c.n_stages = 2;
        c.dims[0] = 8, c.dims[1] = 16, c.dims[2] = 24;
        c.strides[0] = 2, c.strides[1] = 2;
        c.act_num = 3, c.in_chans = 3, c.num_classes = 10;
        vn_vanillanet *m = NULL;
        ck_assert_int_eq(vn_vanillanet_create(&c, deploy, &m, NULL), VN_OK);
        ck_assert_int_eq(m->state.n, vn_st_count(f));
        for (int i = 0; i < m->state.n; i++)
            ck_assert_str_eq(m->state.items[i].name, vn_st_at(f, i)->name);
        vn_vanillanet_destroy(m);
        vn_st_close(f);
    }
}
END_TEST

START_TEST(test_init_is_official_and_reproducible)
{
    vn_vanillanet_config c = small_cfg();
    vn_vanillanet *a = NULL, *b = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &a, NULL), VN_OK);
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &b, NULL), VN_OK);
    vn_vanillanet_init(a, 42);
    vn_vanillanet_init(b, 42);
    double sum = 0, sq = 0;
    int64_t n = 0;
    for (int i = 0; i < a->state.n; i++) {
        const vn_state_item *e = &a->state.items[i];
        if (e->kind == VN_STATE_COUNT) {
            ck_assert_int_eq(*e->count, 0);
            continue;
        }
        ck_assert_mem_eq(e->tensor->data, b->state.items[i].tensor->data,
                         (size_t)e->tensor->numel * sizeof(float));
        const char *nm = e->name;
        size_t len = strlen(nm);
        for (int64_t k = 0; k < e->tensor->numel; k++) {
            float v = e->tensor->data[k];
            if (e->tensor->ndim == 4) {
                sum += v, sq += (double)v * v, n++;
                ck_assert(fabsf(v) <= 2.0f);
            } else if (strcmp(nm + len - 4, "bias") == 0 || strstr(nm, "running_mean")) {
                ck_assert_float_eq(v, 0.0f);
            } else {
                ck_assert_msg(v == 1.0f, "%s[%lld] = %g, expected 1", nm, (long long)k, v);
            }
        }
    }
    ck_assert_double_le(fabs(sum / n), 2e-3);
    ck_assert_double_le(fabs(sqrt(sq / n) - 0.02), 1e-3);
    vn_vanillanet_init(b, 43);
    ck_assert(memcmp(a->stem1.weight->data, b->stem1.weight->data,
                     (size_t)a->stem1.weight->numel * sizeof(float)) != 0);
    vn_vanillanet_destroy(a);
    vn_vanillanet_destroy(b);
}
END_TEST

/* ---- one block against PyTorch, training and eval ------------------------------------- */

static void load_block(vn_vanilla_block *b, vn_state_list *l, const vn_st_file *f)
{
    ck_assert_int_eq(vn_vanilla_block_init(b, 6, 10, 2, 0, 3, VN_SHORTCUT_NONE, false), VN_OK);
    vn_state_list_init(l);
    ck_assert_int_eq(vn_vanilla_block_register(b, l, "", false), VN_OK);
    char key[160];
    for (int i = 0; i < l->n; i++) {
        snprintf(key, sizeof key, "init.%s", l->items[i].name);
        const vn_st_entry *e = vn_st_find(f, key);
        ck_assert_msg(e != NULL, "fixture misses %s", key);
        if (l->items[i].kind == VN_STATE_COUNT) memcpy(l->items[i].count, e->data, 8);
        else memcpy(l->items[i].tensor->data, vn_test_f32(f, key, l->items[i].tensor->numel),
                    e->nbytes);
    }
}

START_TEST(test_block_matches_pytorch)
{
    vn_st_file *f = vn_test_fixture("models/block.safetensors");
    const char *modes[2] = {"train", "eval"};
    for (int m = 0; m < 2; m++) {
        vn_vanilla_block b;
        vn_state_list l;
        load_block(&b, &l, f);
        for (int i = 0; i < l.n; i++)
            if (l.items[i].kind == VN_STATE_PARAM) vn_tensor_zero_grad(l.items[i].tensor);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *x = vn_test_tensor(f, "x", true);
        vn_tensor *y = vn_vanilla_block_forward(ctx, &b, x, 0.3f, m == 0);
        ck_assert_msg(y != NULL, "%s", vn_ctx_error(ctx));
        char key[200];
        snprintf(key, sizeof key, "%s.y", modes[m]);
        /* Tolerances: float32 with BN normalisation over 48 values per channel. */
        ck_assert(vn_test_close(key, y->data, vn_test_f32(f, key, y->numel), y->numel, 1e-4, 1e-4));
        ck_assert_int_eq(vn_backward_with(ctx, y, vn_test_f32(f, "g", y->numel)), VN_OK);
        snprintf(key, sizeof key, "%s.dx", modes[m]);
        ck_assert(vn_test_close(key, x->grad, vn_test_f32(f, key, x->numel), x->numel, 2e-4, 1e-3));
        for (int i = 0; i < l.n; i++) {
            const vn_state_item *e = &l.items[i];
            if (e->kind == VN_STATE_PARAM) {
                snprintf(key, sizeof key, "%s.d.%s", modes[m], e->name);
                ck_assert(vn_test_close(key, e->tensor->grad, vn_test_f32(f, key, e->tensor->numel),
                                        e->tensor->numel, 2e-4, 1e-3));
            } else if (e->kind == VN_STATE_BUFFER) {
                snprintf(key, sizeof key, "%s.after.%s", modes[m], e->name);
                ck_assert(vn_test_close(key, e->tensor->data, vn_test_f32(f, key, e->tensor->numel),
                                        e->tensor->numel, 1e-5, 1e-5));
            } else {
                ck_assert_int_eq(*e->count, m == 0 ? 4 : 3); /* fixture's 3, +1 in training */
            }
        }
        vn_tensor_free(x);
        vn_ctx_destroy(ctx);
        vn_state_list_free(&l);
        vn_vanilla_block_free(&b);
    }
    vn_st_close(f);
}
END_TEST

/* ---- whole networks against PyTorch ---------------------------------------------------- */

typedef struct model_case {
    const char *name;
    int n_stages, dims[6], strides[5], ada[5], act_num, in_chans, num_classes;
    bool ada_enabled;
} model_case;

static const model_case cases[] = {
    {"small", 2, {8, 16, 24}, {2, 2}, {0}, 3, 3, 10, false},
    {"deep", 4, {8, 8, 16, 16, 24}, {1, 2, 1, 2}, {0}, 2, 1, 7, false},
    {"ada", 3, {8, 8, 16, 24}, {1, 2, 2}, {0, 5, 3}, 1, 3, 5, true},
};

static vn_vanillanet_config case_cfg(const model_case *mc)
{
    vn_vanillanet_config c = {0};
    c.n_stages = mc->n_stages;
    memcpy(c.dims, mc->dims, sizeof mc->dims);
    memcpy(c.strides, mc->strides, sizeof mc->strides);
    memcpy(c.ada_pool, mc->ada, sizeof mc->ada);
    c.ada_pool_enabled = mc->ada_enabled;
    c.act_num = mc->act_num;
    c.in_chans = mc->in_chans;
    c.num_classes = mc->num_classes;
    return c;
}

static vn_tensor *run(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x)
{
    vn_ctx_reset(ctx);
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
    ck_assert_msg(y != NULL, "forward failed: %s", vn_ctx_error(ctx));
    return y;
}

START_TEST(test_models_match_pytorch)
{
    const model_case *mc = &cases[_i];
    char path[256];
    vn_vanillanet_config cfg = case_cfg(mc);
    snprintf(path, sizeof path, "models/%s_io.safetensors", mc->name);
    vn_st_file *io = vn_test_fixture(path);
    vn_tensor *x = vn_test_tensor(io, "x", false);
    vn_ctx *ctx = vn_ctx_create();
    vn_error err = {0};

    vn_vanillanet *m = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&cfg, false, &m, &err), VN_OK);
    snprintf(path, sizeof path, "models/%s_train.safetensors", mc->name);
    ck_assert_msg(vn_vanillanet_load(m, vn_test_fixture_path(path), &err) == VN_OK, "%s", err.msg);
    /* Eval mode, act_learn 1 and 0.5; train mode (batch statistics) at 0.5. */
    vn_vanillanet_set_training(m, false);
    vn_tensor *y = run(ctx, m, x);
    const float *want = vn_test_f32(io, "eval_logits", y->numel);
    ck_assert_msg(vn_test_rel_err(y->data, want, y->numel) < 1e-4, "%s eval: rel err %g", mc->name,
                  vn_test_rel_err(y->data, want, y->numel));
    vn_vanillanet_change_act(m, 0.5f);
    y = run(ctx, m, x);
    ck_assert(vn_test_rel_err(y->data, vn_test_f32(io, "eval_logits_act05", y->numel), y->numel) < 1e-4);
    vn_vanillanet_set_training(m, true);
    y = run(ctx, m, x);
    double e = vn_test_rel_err(y->data, vn_test_f32(io, "train_logits_act05", y->numel), y->numel);
    ck_assert_msg(e < 1e-3, "%s train-mode logits: rel err %g", mc->name, e);

    /* One training step: the loss and every parameter gradient as PyTorch computes them. */
    vn_ctx_reset(ctx);
    vn_ctx_set_grad(ctx, true);
    for (int i = 0; i < m->state.n; i++)
        if (m->state.items[i].kind == VN_STATE_PARAM) vn_tensor_zero_grad(m->state.items[i].tensor);
    ck_assert_int_eq(vn_vanillanet_load(m, vn_test_fixture_path(path), &err), VN_OK);
    int32_t labels[8];
    for (int i = 0; i < (int)x->shape[0]; i++) labels[i] = i % mc->num_classes;
    vn_tensor *loss = vn_cross_entropy(ctx, vn_vanillanet_forward(ctx, m, x), labels, NULL, 0.1f);
    ck_assert_msg(loss != NULL, "%s", vn_ctx_error(ctx));
    const float *want_loss = vn_test_f32(io, "train_loss_act05", 1);
    ck_assert_msg(fabs(loss->data[0] - want_loss[0]) < 1e-5, "loss %g vs %g", loss->data[0], want_loss[0]);
    ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
    /* Tolerance relative to the largest gradient of the network: float32 through a whole
     * net, and some gradients are exactly zero in theory (a bias followed by a train-mode
     * BatchNorm), where both sides hold only rounding noise. */
    double gscale = 0;
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *e = &m->state.items[i];
        if (e->kind != VN_STATE_PARAM) continue;
        char key[200];
        snprintf(key, sizeof key, "grad.%s", e->name);
        const float *g = vn_test_f32(io, key, e->tensor->numel);
        for (int64_t k = 0; k < e->tensor->numel; k++) gscale = fmax(gscale, fabs(g[k]));
    }
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *e = &m->state.items[i];
        if (e->kind != VN_STATE_PARAM) continue;
        char key[200];
        snprintf(key, sizeof key, "grad.%s", e->name);
        const float *g = vn_test_f32(io, key, e->tensor->numel);
        vn_tensor *t = e->tensor;
        float *got = malloc((size_t)t->numel * sizeof *got);
        if (t->ndim == 4) vn_ohwi_to_oihw(got, t->grad, t->shape[0], t->shape[3], t->shape[1], t->shape[2]);
        else memcpy(got, t->grad, (size_t)t->numel * sizeof *got);
        ck_assert_msg(vn_test_close(key, got, g, t->numel, 1e-4 * gscale, 1e-3), "%s: %s", mc->name, key);
        free(got);
    }
    vn_ctx_set_grad(ctx, false);

    /* Deploy weights written by PyTorch's merge. */
    vn_vanillanet *d = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&cfg, true, &d, &err), VN_OK);
    snprintf(path, sizeof path, "models/%s_deploy.safetensors", mc->name);
    ck_assert_msg(vn_vanillanet_load(d, vn_test_fixture_path(path), &err) == VN_OK, "%s", err.msg);
    vn_vanillanet_set_training(d, false);
    y = run(ctx, d, x);
    const float *dl = vn_test_f32(io, "deploy_logits", y->numel);
    ck_assert(vn_test_rel_err(y->data, dl, y->numel) < 1e-4);

    /* Our own merge of the PyTorch training weights gives PyTorch's deploy weights. */
    vn_vanillanet *t = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&cfg, false, &t, &err), VN_OK);
    snprintf(path, sizeof path, "models/%s_train.safetensors", mc->name);
    ck_assert_int_eq(vn_vanillanet_load(t, vn_test_fixture_path(path), &err), VN_OK);
    ck_assert_int_eq(vn_vanillanet_switch_to_deploy(t, false, &err), VN_OK);
    ck_assert(t->deploy);
    ck_assert_int_eq(t->state.n, d->state.n);
    for (int i = 0; i < t->state.n; i++) {
        ck_assert_str_eq(t->state.items[i].name, d->state.items[i].name);
        vn_tensor *a = t->state.items[i].tensor, *b = d->state.items[i].tensor;
        double r = vn_test_rel_err(a->data, b->data, a->numel);
        ck_assert_msg(r < 1e-5, "%s: merged %s differs from PyTorch's (rel %g)", mc->name,
                      t->state.items[i].name, r);
    }
    vn_vanillanet_set_training(t, false);
    y = run(ctx, t, x);
    ck_assert(vn_test_rel_err(y->data, dl, y->numel) < 1e-4);

    vn_vanillanet_destroy(t);
    vn_vanillanet_destroy(d);
    vn_vanillanet_destroy(m);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_st_close(io);
}
END_TEST

/* ---- deploy equivalence on random weights ---------------------------------------------- */

static void randomize(vn_vanillanet *m, uint64_t seed)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 99, 0);
    for (int i = 0; i < m->state.n; i++) {
        vn_state_item *e = &m->state.items[i];
        if (e->kind == VN_STATE_COUNT) continue;
        vn_tensor *t = e->tensor;
        const char *nm = e->name;
        for (int64_t k = 0; k < t->numel; k++) {
            double u = vn_rng_uniform_double(&rng), g = vn_rng_normal(&rng);
            if (strstr(nm, "running_var")) t->data[k] = (float)(0.25 + 1.5 * u);
            else if (strstr(nm, "running_mean")) t->data[k] = (float)(0.2 * g);
            else if (t->ndim == 1) t->data[k] = (float)((strstr(nm, "weight") ? 1.0 : 0.0) + 0.2 * g);
            else t->data[k] = (float)(g / sqrt((double)(t->numel / t->shape[0])));
        }
    }
}

START_TEST(test_deploy_equivalence_random)
{
    struct { const char *variant; int scale_div, size, batch; } runs[] = {
        {"vanillanet_5", 16, 64, 2},
        {"vanillanet_8", 16, 64, 1},
        {"vanillanet_13", 32, 32, 2},
        {"vanillanet_13_x1_5_ada_pool", 24, 120, 1},
        {"vanillanet_6", 1, 32, 1}, /* full width: 4096 channels, small image */
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        vn_vanillanet_config c;
        ck_assert_int_eq(vn_vanillanet_variant(runs[r].variant, &c, NULL), VN_OK);
        for (int i = 0; i <= c.n_stages; i++) c.dims[i] /= runs[r].scale_div;
        c.num_classes = 17;
        vn_vanillanet *m = NULL;
        vn_error err = {0};
        ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, &err), VN_OK);
        randomize(m, 1000 + r);
        vn_vanillanet_set_training(m, false);
        vn_tensor *x = vn_tensor_new4(runs[r].batch, runs[r].size, runs[r].size, 3, false);
        vn_test_fill_uniform(x->data, x->numel, 5 + r, -2, 2);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *y = run(ctx, m, x);
        int64_t n = y->numel;
        float *ref = malloc((size_t)n * sizeof *ref);
        memcpy(ref, y->data, (size_t)n * sizeof *ref);
        ck_assert_int_eq(vn_vanillanet_switch_to_deploy(m, false, &err), VN_OK);
        y = run(ctx, m, x);
        double e = vn_test_rel_err(y->data, ref, n);
        ck_assert_msg(e <= 1e-4, "%s/%d at %d: deploy differs by %g (relative)", runs[r].variant,
                      runs[r].scale_div, runs[r].size, e);
        free(ref);
        vn_tensor_free(x);
        vn_ctx_destroy(ctx);
        vn_vanillanet_destroy(m);
    }
}
END_TEST

START_TEST(test_deploy_refusals)
{
    vn_vanillanet_config c = small_cfg();
    vn_vanillanet *m = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, NULL), VN_OK);
    vn_vanillanet_change_act(m, 0.7f);
    ck_assert_int_eq(vn_vanillanet_switch_to_deploy(m, false, &err), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "act_learn is 0.7"));
    ck_assert(!m->deploy);
    ck_assert_int_eq(vn_vanillanet_switch_to_deploy(m, true, &err), VN_OK);
    ck_assert(m->deploy);
    ck_assert_int_eq(vn_vanillanet_switch_to_deploy(m, false, &err), VN_ERR_STATE);
    vn_vanillanet_destroy(m);
    c.shortcut = VN_SHORTCUT_IDENTITY;
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, NULL), VN_OK);
    ck_assert_int_eq(vn_vanillanet_switch_to_deploy(m, false, &err), VN_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "shortcut"));
    vn_vanillanet_destroy(m);
}
END_TEST

/* ---- backbone, shortcuts, bad configs --------------------------------------------------- */

START_TEST(test_backbone_and_shortcut)
{
    for (int sc = 0; sc < 2; sc++) {
        vn_vanillanet_config c = small_cfg();
        c.shortcut = sc ? VN_SHORTCUT_IDENTITY : VN_SHORTCUT_NONE;
        vn_vanillanet *m = NULL;
        ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, NULL), VN_OK);
        vn_vanillanet_init(m, 1);
        ck_assert(m->stages[0].shortcut_identity == (sc == 1));
        ck_assert(m->stages[1].shortcut_conv == (sc == 1));
        ck_assert_int_eq(sc ? vn_state_find(&m->state, "stages.1.shortcut.weight") != NULL : 1, 1);
        vn_tensor *x = vn_tensor_new4(2, 32, 32, 3, false);
        vn_test_fill_uniform(x->data, x->numel, 3, -1, 1);
        vn_ctx *ctx = vn_ctx_create();
        vn_tensor *feats[4];
        int ch[4];
        ck_assert_int_eq(vn_vanillanet_forward_features(ctx, m, x, feats, ch), VN_OK);
        const int hw[4] = {8, 8, 4, 2}, want_ch[4] = {8, 8, 16, 24};
        for (int i = 0; i < 4; i++) {
            ck_assert_int_eq(ch[i], want_ch[i]);
            ck_assert_int_eq(feats[i]->shape[1], hw[i]);
            ck_assert_int_eq(feats[i]->shape[2], hw[i]);
            ck_assert_int_eq(feats[i]->shape[3], want_ch[i]);
        }
        /* Training step through the whole model: gradients reach the stem. */
        vn_ctx_reset(ctx);
        vn_tensor *y = vn_vanillanet_forward(ctx, m, x);
        int32_t labels[2] = {3, 7};
        vn_tensor *loss = vn_cross_entropy(ctx, y, labels, NULL, 0.1f);
        ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
        double gn = 0;
        for (int64_t i = 0; i < m->stem1.weight->numel; i++) gn += fabs(m->stem1.weight->grad[i]);
        ck_assert_double_gt(gn, 0);
        if (sc) {
            gn = 0;
            for (int64_t i = 0; i < m->stages[1].shortcut.weight->numel; i++)
                gn += fabs(m->stages[1].shortcut.weight->grad[i]);
            ck_assert_double_gt(gn, 0);
        }
        vn_tensor_free(x);
        vn_ctx_destroy(ctx);
        vn_vanillanet_destroy(m);
    }
}
END_TEST

START_TEST(test_bad_configs_and_inputs)
{
    vn_error err = {0};
    vn_vanillanet *m = NULL;
    vn_vanillanet_config c = small_cfg();
    c.dims[2] = 0;
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "dims[2]"));
    c = small_cfg();
    c.ada_pool_enabled = true;
    c.ada_pool[1] = -2; /* 0 is the plain pool (the official `if not ada_pool`); < 0 is not */
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "ada_pool[1]"));
    c = small_cfg();
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, &err), VN_OK);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(1, 32, 32, 1, false);
    ck_assert_ptr_null(vn_vanillanet_forward(ctx, m, x));
    ck_assert_ptr_nonnull(strstr(vn_ctx_error(ctx), "[N, H, W, 3]"));
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
}
END_TEST

/* ---- weight files ----------------------------------------------------------------------- */

START_TEST(test_weight_file_roundtrip_and_mismatch)
{
    char dir[4096];
    vn_test_mkdtemp(dir, sizeof dir, "models");
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    vn_vanillanet_config c = small_cfg();
    vn_vanillanet *a = NULL, *b = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &a, NULL), VN_OK);
    randomize(a, 3);
    a->stem1_bn.num_batches_tracked = 17;
    ck_assert_msg(vn_vanillanet_save(a, path, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_vanillanet_open(path, &b, &err), VN_OK);
    ck_assert_int_eq(b->state.n, a->state.n);
    for (int i = 0; i < a->state.n; i++) {
        if (a->state.items[i].kind == VN_STATE_COUNT) {
            ck_assert_int_eq(*a->state.items[i].count, *b->state.items[i].count);
            continue;
        }
        vn_tensor *ta = a->state.items[i].tensor, *tb = b->state.items[i].tensor;
        ck_assert_mem_eq(ta->data, tb->data, (size_t)ta->numel * sizeof(float));
    }
    ck_assert_int_eq(b->stem1_bn.num_batches_tracked, 17);
    vn_vanillanet_destroy(b);
    /* A different architecture: the first mismatch is named, nothing is changed. */
    vn_vanillanet_config c2 = c;
    c2.dims[3] = 32;
    ck_assert_int_eq(vn_vanillanet_create(&c2, false, &b, NULL), VN_OK);
    float before = b->stem1.weight->data[0];
    ck_assert_int_ne(vn_vanillanet_load(b, path, &err), VN_OK);
    ck_assert_ptr_nonnull(strstr(err.msg, "stages.2.conv2.0.weight"));
    ck_assert_float_eq(b->stem1.weight->data[0], before);
    vn_vanillanet_destroy(b);
    /* Deploy model from a train file: missing names. */
    ck_assert_int_eq(vn_vanillanet_create(&c, true, &b, NULL), VN_OK);
    ck_assert_int_eq(vn_vanillanet_load(b, path, &err), VN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing tensor 'stem.0.weight'"));
    vn_vanillanet_destroy(b);
    /* Truncated file. */
    FILE *fp = fopen(path, "r+b");
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fclose(fp);
    ck_assert_int_eq(truncate(path, len - 5), 0);
    ck_assert_int_ne(vn_vanillanet_open(path, &b, &err), VN_OK);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(err.msg, path));
    unlink(path);
    rmdir(dir);
    vn_vanillanet_destroy(a);
}
END_TEST

/* ---- model report ------------------------------------------------------------------------ */

/* Multiply-adds of a deploy VanillaNet written straight from the architecture (stem conv +
 * activation, per stage a 1x1 conv at the input resolution and an activation after pooling,
 * the classifier), independently of the report's layer walk. */
static int64_t deploy_macs(const vn_vanillanet_config *c, int64_t h)
{
    int64_t k2 = (2 * c->act_num + 1) * (2 * c->act_num + 1);
    h = c->ada_pool_enabled ? (h + 2 - 4) / 3 + 1 : (h - 4) / 4 + 1;
    int64_t macs = h * h * c->dims[0] * (16 * c->in_chans + k2);
    for (int i = 0; i < c->n_stages; i++) {
        macs += h * h * c->dims[i] * c->dims[i + 1];
        if (c->strides[i] > 1) h = c->ada_pool_enabled ? c->ada_pool[i] : h / c->strides[i];
        macs += h * h * c->dims[i + 1] * k2;
    }
    return macs + (int64_t)c->dims[c->n_stages] * c->num_classes;
}

START_TEST(test_report_counts)
{
    for (const char *const *name = vn_vanillanet_variant_names(); *name; name++) {
        vn_vanillanet_config c;
        ck_assert_int_eq(vn_vanillanet_variant(*name, &c, NULL), VN_OK);
        for (int deploy = 0; deploy < 2; deploy++) {
            vn_report r;
            vn_error err = {0};
            ck_assert_msg(vn_vanillanet_report(&c, deploy, 224, 224, &r, &err) == VN_OK, "%s", err.msg);
            ck_assert_int_eq(r.total_params, vn_vanillanet_count_params(&c, deploy));
            if (deploy) {
                ck_assert_int_eq(r.total_macs, deploy_macs(&c, 224));
                ck_assert_int_eq(r.rows[r.n - 1].out[3], 1000);
            } else {
                /* Training form adds conv1 per block, stem2 and cls2: strictly more work. */
                vn_report d;
                ck_assert_int_eq(vn_vanillanet_report(&c, true, 224, 224, &d, NULL), VN_OK);
                ck_assert_int_gt(r.total_macs, d.total_macs);
                vn_report_free(&d);
            }
            vn_report_free(&r);
        }
    }
    /* The paper: VanillaNet-5 is 5.2 GFLOPs (multiply-adds) at 224x224. */
    vn_vanillanet_config c;
    vn_vanillanet_variant("vanillanet_5", &c, NULL);
    vn_report r;
    ck_assert_int_eq(vn_vanillanet_report(&c, true, 224, 224, &r, NULL), VN_OK);
    ck_assert_msg(r.total_macs > 5.15e9 && r.total_macs < 5.25e9, "vanillanet_5: %lld MACs",
                  (long long)r.total_macs);
    vn_report_free(&r);
    /* Shapes agree with a real forward of a small network (with shortcuts). */
    c = small_cfg();
    c.shortcut = VN_SHORTCUT_IDENTITY;
    ck_assert_int_eq(vn_vanillanet_report(&c, false, 32, 32, &r, NULL), VN_OK);
    vn_vanillanet *m = NULL;
    ck_assert_int_eq(vn_vanillanet_create(&c, false, &m, NULL), VN_OK);
    ck_assert_int_eq(r.total_params, vn_state_numel(&m->state, VN_STATE_PARAM));
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *x = vn_tensor_new4(1, 32, 32, 3, false), *feats[4];
    int ch[4];
    ck_assert_int_eq(vn_vanillanet_forward_features(ctx, m, x, feats, ch), VN_OK);
    int stage = 0;
    for (int i = 0; i < r.n; i++) {
        const char *nm = r.rows[i].name;
        bool is_act = strcmp(nm, "stem2.2") == 0 ||
                      (strncmp(nm, "stages.", 7) == 0 && strstr(nm, ".act"));
        if (!is_act) continue;
        for (int d = 1; d < 4; d++) ck_assert_int_eq(r.rows[i].out[d], feats[stage]->shape[d]);
        stage++;
    }
    ck_assert_int_eq(stage, 4);
    vn_report_free(&r);
    ck_assert_int_ne(vn_vanillanet_report(&c, false, 2, 2, &r, NULL), VN_OK);
    vn_tensor_free(x);
    vn_ctx_destroy(ctx);
    vn_vanillanet_destroy(m);
}
END_TEST

static Suite *models_suite(void)
{
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_param_counts_match_paper);
    tcase_add_test(tc, test_count_equals_allocated);
    tcase_add_test(tc, test_drop_grads);
    tcase_add_test(tc, test_state_names_follow_official_order);
    tcase_add_test(tc, test_init_is_official_and_reproducible);
    tcase_add_test(tc, test_block_matches_pytorch);
    tcase_add_loop_test(tc, test_models_match_pytorch, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_deploy_equivalence_random);
    tcase_add_test(tc, test_deploy_refusals);
    tcase_add_test(tc, test_backbone_and_shortcut);
    tcase_add_test(tc, test_bad_configs_and_inputs);
    tcase_add_test(tc, test_weight_file_roundtrip_and_mismatch);
    tcase_add_test(tc, test_report_counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(models_suite(), true);
}
