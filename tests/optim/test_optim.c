/* Optimizers against PyTorch/timm fixtures (tests/reference/gen_optim.py), step for step,
 * plus what a fixture cannot show: checkpoint restore is bit-exact, a non-finite gradient
 * changes nothing, results do not depend on the thread count, bad configs are refused.
 *
 * Tolerance for parameters and state after each of 5 steps: |c - torch| <= 1e-6 + 1e-5|torch|
 * (float32; the kernels follow torch's operation order, differences come from torch's own
 * reduction order in the norms and fused/unfused rounding). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim_case.h"

#define ATOL 1e-6
#define RTOL 1e-5

static vn_optim *make_opt(optim_case *c)
{
    vn_error err = {0};
    vn_optim *opt = NULL;
    int rc = vn_optim_create(&opt, &c->cfg, c->n, c->t, (const char *const *)c->names, &err);
    ck_assert_msg(rc == VN_OK, "%s: vn_optim_create: %s", c->file, err.msg);
    return opt;
}

/* Base lr and weight decay of step s: from the framework's own schedules for the
 * schedule-driven cases (checked against the official numpy values), else the fixture's. */
static void step_hparams(optim_case *c, int s, double *lr, double *wd)
{
    const double *lrs = fixture_f64(c->f, "lr", c->steps);
    const double *wds = fixture_f64(c->f, "wd", c->steps);
    *lr = lrs[s];
    *wd = wds[s];
    if (!c->sched_cosine) return;
    vn_schedule ls, ws;
    vn_error err = {0};
    /* gen_optim.py: cosine_scheduler(lr, 1e-6, 5, 1, warmup_epochs=1, warmup_steps=2) and
     * cosine_scheduler(wd, wd / 2, 5, 1). */
    vn_schedule_cosine(&ls, c->cfg.lr, 1e-6, 5, 1, 1, 2);
    vn_schedule_cosine(&ws, c->cfg.weight_decay, 0.5 * c->cfg.weight_decay, 5, 1, 0, -1);
    ck_assert_int_eq(vn_schedule_check(&ls, &err), VN_OK);
    ck_assert_int_eq(vn_schedule_check(&ws, &err), VN_OK);
    double l = vn_schedule_value(&ls, s), w = vn_schedule_value(&ws, s);
    ck_assert_msg(fabs(l - lrs[s]) <= 1e-15 * fabs(lrs[s]), "%s: lr schedule step %d: %.17g vs "
                  "official %.17g", c->file, s, l, lrs[s]);
    ck_assert_msg(fabs(w - wds[s]) <= 1e-15 * fabs(wds[s]), "%s: wd schedule step %d: %.17g vs "
                  "official %.17g", c->file, s, w, wds[s]);
    *lr = l;
    *wd = w;
}

static void do_step(optim_case *c, vn_optim *opt, int s)
{
    double lr, wd;
    step_hparams(c, s, &lr, &wd);
    vn_optim_set_lr(opt, lr);
    vn_optim_set_weight_decay(opt, wd);
    case_set_grads(c, opt, s);
    const double *gn = fixture_f64(c->f, "gnorm", c->steps);
    if (c->clip_grad > 0) {
        double total = vn_clip_grad_norm(c->t, c->n, c->clip_grad);
        ck_assert_msg(fabs(total - gn[s]) <= 1e-9 * gn[s], "%s: clip total %.9g vs %.9g",
                      c->file, total, gn[s]);
    }
    vn_error err = {0};
    int rc = vn_optim_step(opt, &err);
    ck_assert_msg(rc == VN_OK, "%s: step %d: %s", c->file, s, err.msg);
    if (c->clip_grad <= 0)
        ck_assert_msg(fabs(vn_optim_last_grad_norm(opt) - gn[s]) <= 1e-9 * gn[s] + 1e-12,
                      "%s: grad norm %.12g vs %.12g", c->file, vn_optim_last_grad_norm(opt),
                      gn[s]);
}

/* Compares every "state.<name>" of the fixture with the optimizer's entry of that name, and
 * checks the optimizer has no entry the fixture lacks. Returns the max abs error. */
static double check_state(optim_case *c, vn_optim *opt)
{
    double max_err = 0.0;
    int matched = 0;
    for (int i = 0; i < vn_st_count(c->f); i++) {
        const vn_st_entry *fe = vn_st_at(c->f, i);
        if (strncmp(fe->name, "state.", 6) != 0) continue;
        vn_ckpt_entry e;
        vn_error err = {0};
        int rc = vn_optim_state_find(opt, fe->name + 6, &e, &err);
        ck_assert_msg(rc == VN_OK, "%s: %s", c->file, err.msg);
        ck_assert_int_eq(e.numel, fe->numel);
        if (e.dtype == VN_DTYPE_I64) {
            ck_assert_int_eq(fe->dtype, VN_DTYPE_I64);
            ck_assert_int_eq(*(const int64_t *)e.data, *(const int64_t *)fe->data);
        } else {
            ck_assert_int_eq(fe->dtype, VN_DTYPE_F32);
            ck_assert_int_eq(e.ndim, fe->ndim);
            for (int d = 0; d < e.ndim; d++) ck_assert_int_eq(e.shape[d], fe->shape[d]);
            char what[300];
            snprintf(what, sizeof what, "%s %s", c->file, e.name);
            const float *got = e.data, *want = fe->data;
            ck_assert_msg(vn_test_close(what, got, want, e.numel, ATOL, RTOL), "%s", what);
            for (int64_t k = 0; k < e.numel; k++)
                if (fabs((double)got[k] - want[k]) > max_err) max_err = fabs((double)got[k] - want[k]);
        }
        matched++;
    }
    ck_assert_msg(matched == vn_optim_state_count(opt), "%s: optimizer has %d state entries, "
                  "the fixture %d", c->file, vn_optim_state_count(opt), matched);
    return max_err;
}

static const char *const fixture_cases[] = {
    "optim/sgd_plain.safetensors",       "optim/sgd_momentum.safetensors",
    "optim/sgd_nesterov.safetensors",    "optim/sgd_dampening.safetensors",
    "optim/sgd_layer_decay.safetensors", "optim/adamw.safetensors",
    "optim/adamw_nofilter.safetensors",  "optim/adamw_lr0.safetensors",
    "optim/adamw_clip.safetensors",      "optim/adamw_accum.safetensors",
    "optim/lamb_recipe.safetensors",     "optim/lamb_wd0.safetensors",
    "optim/lamb_noclip.safetensors",     "optim/lamb_zero.safetensors",
    "optim/lamb_lr0.safetensors",        "optim/lamb_layer_decay.safetensors",
    "optim/lamb_adapt.safetensors",      "optim/lamb_accum.safetensors",
};
#define N_FIXTURE_CASES ((int)(sizeof fixture_cases / sizeof fixture_cases[0]))

START_TEST(test_matches_torch)
{
    optim_case c;
    case_load(&c, fixture_cases[_i]);
    vn_optim *opt = make_opt(&c);
    double max_err = 0.0;
    for (int s = 0; s < c.steps; s++) {
        do_step(&c, opt, s);
        double e = case_check_params(&c, s, ATOL, RTOL);
        if (e > max_err) max_err = e;
    }
    ck_assert_int_eq(vn_optim_steps(opt), c.steps);
    double state_err = check_state(&c, opt);
    printf("%-40s max |param - torch| %.3g, max |state - torch| %.3g\n", c.file, max_err,
           state_err);
    vn_optim_destroy(opt);
    case_free(&c);
}
END_TEST

/* lr 0 leaves the parameters bit-identical (torch's do too), while the moments move. */
START_TEST(test_lr0_exact)
{
    const char *files[] = {"optim/adamw_lr0.safetensors", "optim/lamb_lr0.safetensors"};
    for (int f = 0; f < 2; f++) {
        optim_case c;
        case_load(&c, files[f]);
        vn_optim *opt = make_opt(&c);
        for (int s = 0; s < c.steps; s++) do_step(&c, opt, s);
        for (int i = 0; i < c.n; i++) {
            char key[256];
            snprintf(key, sizeof key, "param.%s", c.names[i]);
            const float *p0 = vn_test_f32(c.f, key, c.t[i]->numel);
            ck_assert_msg(memcmp(p0, c.t[i]->data, (size_t)c.t[i]->numel * 4) == 0,
                          "%s: %s moved with lr 0", c.file, c.names[i]);
        }
        vn_ckpt_entry e;
        ck_assert_int_eq(vn_optim_state_at(opt, 1, &e), VN_OK);
        ck_assert(vn_norm_f32(e.data, e.numel) > 0.0);
        vn_optim_destroy(opt);
        case_free(&c);
    }
}
END_TEST

/* update_freq micro-batches accumulated with += give (within float rounding) the step of
 * the full-batch gradient, their mean. The accumulated run itself is checked against torch in
 * test_matches_torch (adamw_accum, lamb_accum). */
START_TEST(test_accumulation_equals_full_batch)
{
    const char *files[] = {"optim/lamb_accum.safetensors", "optim/adamw_accum.safetensors"};
    for (int f = 0; f < 2; f++) {
        optim_case a, b;
        case_load(&a, files[f]);
        case_load(&b, files[f]);
        ck_assert_int_eq(a.update_freq, 3);
        vn_optim *oa = make_opt(&a), *ob = make_opt(&b);
        for (int s = 0; s < a.steps; s++) {
            do_step(&a, oa, s);
            /* b: one gradient, mean over the micro-batches of their unscaled gradients. */
            ck_assert_int_eq(vn_optim_zero_grad(ob), VN_OK);
            int64_t off = 0;
            for (int i = 0; i < b.n; i++) {
                for (int64_t j = 0; j < b.t[i]->numel; j++) {
                    double sum = 0.0;
                    for (int k = 0; k < b.update_freq; k++) {
                        char key[64];
                        snprintf(key, sizeof key, "grad.%d.%d", s, k);
                        sum += (double)vn_test_f32(b.f, key, b.total)[off + j] * b.update_freq;
                    }
                    b.t[i]->grad[j] = (float)(sum / b.update_freq);
                }
                off += b.t[i]->numel;
            }
            const double *lrs = fixture_f64(b.f, "lr", b.steps), *wds = fixture_f64(b.f, "wd", b.steps);
            vn_optim_set_lr(ob, lrs[s]);
            vn_optim_set_weight_decay(ob, wds[s]);
            ck_assert_int_eq(vn_optim_step(ob, NULL), VN_OK);
            for (int i = 0; i < a.n; i++)
                ck_assert_msg(vn_test_close(a.names[i], a.t[i]->data, b.t[i]->data,
                                            a.t[i]->numel, 2e-6, 2e-5),
                              "%s: accumulated step differs from the full-batch step", files[f]);
        }
        vn_optim_destroy(oa);
        vn_optim_destroy(ob);
        case_free(&a);
        case_free(&b);
    }
    /* The trainer's bookkeeping for update_freq 3. */
    int updates = 0;
    for (int64_t j = 0; j < 9; j++) {
        ck_assert_int_eq(vn_accum_iteration(j, 3), j / 3);
        if (vn_accum_is_update(j, 3)) {
            ck_assert_int_eq(j % 3, 2);
            updates++;
        }
    }
    ck_assert_int_eq(updates, 3);
    ck_assert(vn_accum_loss_scale(3) == 1.0f / 3.0f);
    ck_assert(vn_accum_loss_scale(1) == 1.0f && vn_accum_is_update(5, 1));
}
END_TEST

/* Save the named state after 2 steps, restore it into a fresh optimizer over fresh
 * parameters, continue: the result is bit-identical to the uninterrupted run. */
typedef struct saved_entry {
    char name[300];
    vn_dtype dtype;
    int ndim;
    int64_t shape[VN_MAX_DIMS];
    size_t nbytes;
    void *data;
} saved_entry;

static const char *const restore_cases[] = {
    "optim/sgd_momentum.safetensors", "optim/sgd_nesterov.safetensors",
    "optim/adamw.safetensors", "optim/lamb_recipe.safetensors",
    "optim/lamb_layer_decay.safetensors", "optim/lamb_accum.safetensors",
};

START_TEST(test_restore_bit_exact)
{
    optim_case a, b;
    case_load(&a, restore_cases[_i]);
    case_load(&b, restore_cases[_i]);
    vn_optim *oa = make_opt(&a);
    for (int s = 0; s < 2; s++) do_step(&a, oa, s);

    int ns = vn_optim_state_count(oa);
    saved_entry *saved = calloc((size_t)ns, sizeof *saved);
    ck_assert_ptr_nonnull(saved);
    for (int i = 0; i < ns; i++) {
        vn_ckpt_entry e;
        ck_assert_int_eq(vn_optim_state_at(oa, i, &e), VN_OK);
        snprintf(saved[i].name, sizeof saved[i].name, "%s", e.name);
        saved[i].dtype = e.dtype;
        saved[i].ndim = e.ndim;
        memcpy(saved[i].shape, e.shape, sizeof e.shape);
        saved[i].nbytes = vn_ckpt_entry_nbytes(&e);
        saved[i].data = malloc(saved[i].nbytes);
        memcpy(saved[i].data, e.data, saved[i].nbytes);
    }
    for (int i = 0; i < a.n; i++) memcpy(b.t[i]->data, a.t[i]->data, (size_t)a.t[i]->numel * 4);

    vn_optim *ob = make_opt(&b);
    ck_assert_int_eq(vn_optim_state_count(ob), ns);
    /* Restore by name, in reverse order to show order does not matter. */
    for (int i = ns - 1; i >= 0; i--) {
        vn_ckpt_entry e;
        vn_error err = {0};
        ck_assert_int_eq(vn_optim_state_find(ob, saved[i].name, &e, &err), VN_OK);
        int rc = vn_ckpt_entry_load(&e, saved[i].dtype, saved[i].ndim, saved[i].shape,
                                     saved[i].data, saved[i].nbytes, &err);
        ck_assert_msg(rc == VN_OK, "%s", err.msg);
    }
    vn_error err = {0};
    ck_assert_msg(vn_optim_state_loaded(ob, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_optim_steps(ob), 2);

    for (int s = 2; s < a.steps; s++) {
        do_step(&a, oa, s);
        do_step(&b, ob, s);
    }
    for (int i = 0; i < a.n; i++)
        ck_assert_msg(memcmp(a.t[i]->data, b.t[i]->data, (size_t)a.t[i]->numel * 4) == 0,
                      "%s: %s differs after restore", a.file, a.names[i]);
    for (int i = 0; i < ns; i++) {
        vn_ckpt_entry ea, eb;
        vn_optim_state_at(oa, i, &ea);
        vn_optim_state_at(ob, i, &eb);
        ck_assert_str_eq(ea.name, eb.name);
        ck_assert_msg(memcmp(ea.data, eb.data, vn_ckpt_entry_nbytes(&ea)) == 0,
                      "%s: state %s differs after restore", a.file, ea.name);
    }
    /* And the uninterrupted run still matches torch. */
    case_check_params(&b, a.steps - 1, ATOL, RTOL);
    for (int i = 0; i < ns; i++) free(saved[i].data);
    free(saved);
    vn_optim_destroy(oa);
    vn_optim_destroy(ob);
    case_free(&a);
    case_free(&b);
}
END_TEST

START_TEST(test_state_names_and_load_errors)
{
    optim_case c;
    case_load(&c, "optim/lamb_recipe.safetensors");
    vn_optim *opt = make_opt(&c);
    vn_ckpt_entry e;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_state_count(opt), 1 + 2 * c.n);
    ck_assert_int_eq(vn_optim_state_at(opt, 0, &e), VN_OK);
    ck_assert_str_eq(e.name, "optim.step");
    ck_assert_int_eq(vn_optim_state_at(opt, 1, &e), VN_OK);
    ck_assert_str_eq(e.name, "optim.exp_avg.stem1.0.weight");
    ck_assert_int_eq(vn_optim_state_at(opt, 2, &e), VN_OK);
    ck_assert_str_eq(e.name, "optim.exp_avg_sq.stem1.0.weight");
    ck_assert_int_eq(e.ndim, 4);
    ck_assert_int_eq(vn_optim_state_at(opt, 1 + 2 * c.n, &e), VN_ERR_INVALID);
    ck_assert_int_eq(vn_optim_state_find(opt, "optim.nope", &e, &err), VN_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "optim.nope"));

    /* Wrong shape, wrong dtype, wrong byte count: refused, entry untouched. */
    ck_assert_int_eq(vn_optim_state_find(opt, "optim.exp_avg.cls1.2.weight", &e, &err), VN_OK);
    float *junk = calloc((size_t)e.numel + 8, sizeof(float));
    for (int64_t k = 0; k < e.numel + 8; k++) junk[k] = 7.0f;
    int64_t bad_shape[4] = {16, 10, 1, 1};
    ck_assert_int_eq(vn_ckpt_entry_load(&e, VN_DTYPE_F32, 4, bad_shape, junk,
                                         (size_t)e.numel * 4, &err), VN_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "optim.exp_avg.cls1.2.weight"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[16, 10, 1, 1]"));
    ck_assert_int_eq(vn_ckpt_entry_load(&e, VN_DTYPE_I64, e.ndim, e.shape, junk,
                                         (size_t)e.numel * 4, &err), VN_ERR_FORMAT);
    ck_assert_int_eq(vn_ckpt_entry_load(&e, VN_DTYPE_F32, e.ndim, e.shape, junk,
                                         (size_t)e.numel * 4 - 4, &err), VN_ERR_FORMAT);
    ck_assert(vn_norm_f32(e.data, e.numel) == 0.0);
    /* A scalar saved as [1] is accepted. */
    ck_assert_int_eq(vn_optim_state_find(opt, "optim.step", &e, &err), VN_OK);
    int64_t one = 1, three = 3;
    ck_assert_int_eq(vn_ckpt_entry_load(&e, VN_DTYPE_I64, 1, &one, &three, 8, &err), VN_OK);
    ck_assert_int_eq(vn_optim_steps(opt), 3);
    ck_assert_int_eq(vn_optim_state_loaded(opt, &err), VN_OK);

    /* Validation after restore: negative steps, negative second moment, NaN. */
    int64_t neg = -1;
    vn_ckpt_entry_load(&e, VN_DTYPE_I64, 0, NULL, &neg, 8, &err);
    ck_assert_int_eq(vn_optim_state_loaded(opt, &err), VN_ERR_FORMAT);
    vn_ckpt_entry_load(&e, VN_DTYPE_I64, 0, NULL, &three, 8, &err);
    ck_assert_int_eq(vn_optim_state_find(opt, "optim.exp_avg_sq.cls2.0.bias", &e, &err), VN_OK);
    ((float *)e.data)[3] = -1.0f;
    ck_assert_int_eq(vn_optim_state_loaded(opt, &err), VN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "optim.exp_avg_sq.cls2.0.bias"));
    ((float *)e.data)[3] = NAN;
    ck_assert_int_eq(vn_optim_state_loaded(opt, &err), VN_ERR_NUMERIC);
    ((float *)e.data)[3] = 0.0f;
    ck_assert_int_eq(vn_optim_state_loaded(opt, &err), VN_OK);
    free(junk);
    vn_optim_destroy(opt);

    /* SGD without momentum has only the step count; with momentum one buffer each. */
    c.cfg.kind = VN_OPTIM_SGD;
    c.cfg.momentum = 0.0;
    opt = make_opt(&c);
    ck_assert_int_eq(vn_optim_state_count(opt), 1);
    vn_optim_destroy(opt);
    c.cfg.momentum = 0.9;
    opt = make_opt(&c);
    ck_assert_int_eq(vn_optim_state_count(opt), 1 + c.n);
    ck_assert_int_eq(vn_optim_state_at(opt, c.n, &e), VN_OK);
    ck_assert_str_eq(e.name, "optim.momentum_buffer.cls2.0.bias");
    vn_optim_destroy(opt);
    case_free(&c);
}
END_TEST

static void snapshot(optim_case *c, vn_optim *opt, float **params, float **state)
{
    *params = malloc((size_t)c->total * 4);
    int64_t off = 0;
    for (int i = 0; i < c->n; i++) {
        memcpy(*params + off, c->t[i]->data, (size_t)c->t[i]->numel * 4);
        off += c->t[i]->numel;
    }
    *state = malloc((size_t)c->total * 2 * 4);
    off = 0;
    for (int i = 1; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        memcpy(*state + off, e.data, (size_t)e.numel * 4);
        off += e.numel;
    }
}

/* A non-finite gradient: the step is refused with VN_ERR_NUMERIC naming the parameter,
 * and nothing changes (parameters, moments, step count). */
START_TEST(test_nonfinite_grad_changes_nothing)
{
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        optim_case c;
        case_load(&c, "optim/lamb_recipe.safetensors");
        vn_optim *opt = make_opt(&c);
        do_step(&c, opt, 0);
        float *p0, *s0, *p1, *s1;
        snapshot(&c, opt, &p0, &s0);
        case_set_grads(&c, opt, 1);
        c.t[6]->grad[5] = bad[b];
        vn_error err = {0};
        ck_assert_int_eq(vn_optim_step(opt, &err), VN_ERR_NUMERIC);
        ck_assert_msg(strstr(err.msg, c.names[6]) != NULL, "message '%s' lacks the name",
                      err.msg);
        ck_assert(!isfinite(vn_optim_last_grad_norm(opt)));
        ck_assert_int_eq(vn_optim_steps(opt), 1);
        snapshot(&c, opt, &p1, &s1);
        ck_assert(memcmp(p0, p1, (size_t)c.total * 4) == 0);
        ck_assert(memcmp(s0, s1, (size_t)c.total * 8) == 0);
        free(p0), free(s0), free(p1), free(s1);
        /* Recovery: the same step with good gradients matches torch. */
        do_step(&c, opt, 1);
        case_check_params(&c, 1, ATOL, RTOL);
        vn_optim_destroy(opt);
        case_free(&c);
    }
}
END_TEST

START_TEST(test_missing_grad_and_bad_params)
{
    int64_t shape[2] = {4, 3};
    vn_tensor *w = vn_tensor_new(2, shape, false); /* no gradient buffer */
    vn_tensor *v = vn_tensor_new(2, shape, true);
    w->name = "stem1.0.weight";
    v->name = "cls2.0.weight";
    vn_tensor *ts[2] = {w, v};
    vn_optim_config cfg;
    vn_optim_config_init(&cfg, VN_OPTIM_ADAMW);
    vn_optim *opt = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 2, ts, NULL, &err), VN_OK);
    ck_assert_int_eq(vn_optim_step(opt, &err), VN_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "stem1.0.weight"));
    ck_assert_int_eq(vn_optim_steps(opt), 0);
    ck_assert_int_eq(vn_optim_zero_grad(opt), VN_OK); /* allocates the buffer */
    ck_assert_int_eq(vn_optim_step(opt, &err), VN_OK);
    /* A non-finite or negative lr or weight decay is refused and changes nothing. */
    ck_assert_int_eq(vn_optim_set_lr(opt, 0.25), VN_OK);
    ck_assert_int_eq(vn_optim_set_lr(opt, NAN), VN_ERR_INVALID);
    ck_assert_int_eq(vn_optim_set_lr(opt, INFINITY), VN_ERR_INVALID);
    ck_assert_int_eq(vn_optim_set_lr(opt, -1e-3), VN_ERR_INVALID);
    ck_assert(vn_optim_lr(opt) == 0.25);
    ck_assert_int_eq(vn_optim_set_weight_decay(opt, 0.05), VN_OK);
    ck_assert_int_eq(vn_optim_set_weight_decay(opt, NAN), VN_ERR_INVALID);
    ck_assert_int_eq(vn_optim_set_weight_decay(opt, -0.1), VN_ERR_INVALID);
    ck_assert(vn_optim_weight_decay(opt) == 0.05);
    vn_optim_destroy(opt);

    /* Duplicate names, the same tensor twice, a missing name. */
    v->name = "stem1.0.weight";
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 2, ts, NULL, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "twice"));
    ck_assert_ptr_null(opt);
    vn_tensor *same[2] = {v, v};
    const char *names[2] = {"a.weight", "b.weight"};
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 2, same, names, &err), VN_ERR_INVALID);
    v->name = NULL;
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 2, ts, NULL, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "no name"));
    /* Layer decay with a name the official assigner does not know. */
    cfg.layer_decay = 0.8;
    const char *odd[2] = {"stem1.0.weight", "head.weight"};
    ck_assert_int_eq(vn_optim_create(&opt, &cfg, 2, ts, odd, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "head.weight"));
    vn_tensor_free(w);
    vn_tensor_free(v);
}
END_TEST

START_TEST(test_config_errors)
{
    vn_error err = {0};
    vn_optim_config c;
    struct {
        vn_optim_kind kind;
        int field;
        double value;
        const char *needle;
    } bad[] = {
        {VN_OPTIM_SGD, 0, -1.0, "lr"},          {VN_OPTIM_SGD, 1, NAN, "weight_decay"},
        {VN_OPTIM_SGD, 2, -0.5, "momentum"},    {VN_OPTIM_ADAMW, 3, 1.0, "beta1"},
        {VN_OPTIM_LAMB, 4, -0.1, "beta2"},      {VN_OPTIM_LAMB, 5, -1e-8, "eps"},
        {VN_OPTIM_LAMB, 6, 0.0, "layer_decay"}, {VN_OPTIM_SGD, 7, 0.1, "nesterov"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vn_optim_config_init(&c, bad[i].kind);
        ck_assert_int_eq(vn_optim_config_check(&c, &err), VN_OK);
        switch (bad[i].field) {
        case 0: c.lr = bad[i].value; break;
        case 1: c.weight_decay = bad[i].value; break;
        case 2: c.momentum = bad[i].value; break;
        case 3: c.beta1 = bad[i].value; break;
        case 4: c.beta2 = bad[i].value; break;
        case 5: c.eps = bad[i].value; break;
        case 6: c.layer_decay = bad[i].value; break;
        case 7: c.nesterov = true; c.dampening = bad[i].value; break;
        }
        ck_assert_int_eq(vn_optim_config_check(&c, &err), VN_ERR_INVALID);
        ck_assert_msg(strstr(err.msg, bad[i].needle) != NULL, "'%s' lacks '%s'", err.msg,
                      bad[i].needle);
        vn_optim *opt = (vn_optim *)&c; /* must be reset to NULL on failure */
        ck_assert_int_eq(vn_optim_create(&opt, &c, 0, NULL, NULL, &err), VN_ERR_INVALID);
        ck_assert_ptr_null(opt);
    }
    vn_optim_kind k;
    ck_assert_int_eq(vn_optim_kind_parse("LAMB", &k, &err), VN_OK);
    ck_assert_int_eq(k, VN_OPTIM_LAMB);
    ck_assert_int_eq(vn_optim_kind_parse("adam", &k, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "adam"));
}
END_TEST

/* A tensor large enough to be split into chunks (and threads): the results do not depend on
 * the thread count, and agree with a plain one-loop LAMB written here. */
static void plain_lamb(float *p, const float *g, float *m, float *v, int64_t n, double lr,
                       double wd, int64_t step, float clip)
{
    float bc1 = (float)(1.0 - pow(0.9, (double)step)), bc2s = (float)sqrt(1.0 - pow(0.999, (double)step));
    double wsq = 0, usq = 0;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] / clip;
        m[i] = 0.9f * m[i] + 0.1f * gi;
        v[i] = 0.999f * v[i] + 0.001f * gi * gi;
    }
    for (int64_t i = 0; i < n; i++) {
        float u = (m[i] / bc1) / (sqrtf(v[i]) / bc2s + 1e-8f) + (float)wd * p[i];
        wsq += (double)p[i] * p[i];
        usq += (double)u * u;
    }
    float trust = (float)(sqrt(wsq) / sqrt(usq));
    for (int64_t i = 0; i < n; i++) {
        float u = (m[i] / bc1) / (sqrtf(v[i]) / bc2s + 1e-8f) + (float)wd * p[i];
        p[i] -= (float)lr * trust * u;
    }
}

START_TEST(test_chunked_threads_deterministic)
{
    const int64_t n = 70001; /* several chunks, an odd tail */
    int64_t shape[2] = {n, 1};
    float *result[3];
    for (int run = 0; run < 3; run++) {
        vn_tensor *w = vn_tensor_new(2, shape, true);
        w->name = "stages.0.conv1.0.weight";
        vn_test_fill_uniform(w->data, n, 5, -0.1f, 0.1f);
        vn_optim_config cfg;
        vn_optim_config_init(&cfg, VN_OPTIM_LAMB);
        cfg.weight_decay = 0.35;
        cfg.lr = 3.5e-3;
        vn_optim *opt = NULL;
        ck_assert_int_eq(vn_optim_create(&opt, &cfg, 1, &w, NULL, NULL), VN_OK);
        float *m = calloc((size_t)n, 4), *v = calloc((size_t)n, 4), *ref = malloc((size_t)n * 4);
        memcpy(ref, w->data, (size_t)n * 4);
        vn_set_threads(run == 0 ? 1 : 2);
        for (int s = 0; s < 4; s++) {
            vn_test_fill_uniform(w->grad, n, 100 + (uint64_t)s, -0.02f, 0.02f);
            double gn = vn_grad_norm(&w, 1);
            ck_assert_int_eq(vn_optim_step(opt, NULL), VN_OK);
            plain_lamb(ref, w->grad, m, v, n, cfg.lr, cfg.weight_decay, s + 1,
                       gn > 1.0 ? (float)gn : 1.0f);
        }
        ck_assert(vn_test_close("chunked LAMB vs plain loop", w->data, ref, n, 1e-7, 1e-5));
        result[run] = malloc((size_t)n * 4);
        memcpy(result[run], w->data, (size_t)n * 4);
        free(m), free(v), free(ref);
        vn_optim_destroy(opt);
        vn_tensor_free(w);
    }
    ck_assert_msg(memcmp(result[0], result[1], (size_t)n * 4) == 0, "1 vs 2 threads differ");
    ck_assert_msg(memcmp(result[1], result[2], (size_t)n * 4) == 0, "run to run differ");
    for (int r = 0; r < 3; r++) free(result[r]);

    /* The norm itself: equal to a long double sum, and thread-independent. */
    float *x = malloc(300007 * 4);
    vn_test_fill_uniform(x, 300007, 9, -3.0f, 3.0f);
    long double ref = 0;
    for (int64_t i = 0; i < 300007; i++) ref += (long double)x[i] * x[i];
    vn_set_threads(1);
    double s1 = vn_sumsq_f32(x, 300007);
    vn_set_threads(2);
    double s2 = vn_sumsq_f32(x, 300007);
    ck_assert(s1 == s2);
    ck_assert(fabsl((long double)s1 - ref) <= 1e-13L * ref);
    free(x);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optimizers");
    tcase_add_loop_test(tc, test_matches_torch, 0, N_FIXTURE_CASES);
    tcase_add_test(tc, test_lr0_exact);
    tcase_add_test(tc, test_accumulation_equals_full_batch);
    tcase_add_loop_test(tc, test_restore_bit_exact, 0,
                        (int)(sizeof restore_cases / sizeof restore_cases[0]));
    tcase_add_test(tc, test_state_names_and_load_errors);
    tcase_add_test(tc, test_nonfinite_grad_changes_nothing);
    tcase_add_test(tc, test_missing_grad_and_bad_params);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_chunked_threads_deterministic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(optim_suite(), true);
}
