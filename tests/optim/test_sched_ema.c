/* Schedules, parameter groups / layer decay, gradient clipping and model EMA against the
 * fixtures of tests/reference/gen_optim.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim_case.h"

static char *dup_meta(const vn_st_file *f, const char *key)
{
    const char *v = vn_st_meta(f, key);
    ck_assert_msg(v != NULL, "%s: metadata has no '%s'", vn_st_path(f), key);
    char *s = strdup(v);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Splits a comma-separated list in place; returns the count. */
static int split(char *s, char **out, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ck_assert_int_lt(n, max);
        out[n++] = tok;
    }
    return n;
}

/* ------------------------------------------------------------------------- schedules */

START_TEST(test_schedules_match_official)
{
    vn_st_file *f = vn_test_fixture("optim/schedules.safetensors");
    int checked = 0;
    for (int i = 0; i < vn_st_meta_count(f); i++) {
        const char *key = vn_st_meta_key(f, i);
        if (strncmp(key, "sched.", 6) != 0) continue;
        char *spec = dup_meta(f, key);
        char *tok[9];
        ck_assert_int_eq(split(spec, tok, 9), 9);
        vn_sched_kind kind;
        ck_assert_int_eq(vn_sched_kind_parse(tok[0], &kind, NULL), VN_OK);
        double base = strtod(tok[1], NULL), final = strtod(tok[2], NULL);
        int64_t epochs = strtoll(tok[3], NULL, 10), niter = strtoll(tok[4], NULL, 10);
        int64_t we = strtoll(tok[5], NULL, 10), ws = strtoll(tok[6], NULL, 10);
        int64_t se = strtoll(tok[7], NULL, 10);
        double gamma = strtod(tok[8], NULL);
        vn_schedule s;
        if (kind == VN_SCHED_COSINE) vn_schedule_cosine(&s, base, final, epochs, niter, we, ws);
        else if (kind == VN_SCHED_STEP)
            vn_schedule_step(&s, base, gamma, se, epochs, niter, we, ws);
        else vn_schedule_constant(&s, base, epochs, niter, we, ws);
        vn_error err = {0};
        ck_assert_msg(vn_schedule_check(&s, &err) == VN_OK, "%s: %s", key, err.msg);
        int64_t total = vn_schedule_total_iters(&s);
        const double *want = fixture_f64(f, key, total);
        /* Same formulas and operation order as numpy: equal to the last bit, except the
         * torch StepLR run, which multiplies by gamma repeatedly instead of gamma^k. */
        double rtol = strcmp(key, "sched.step_torch") == 0 ? 1e-14 : 0.0;
        double max_rel = 0.0;
        for (int64_t it = 0; it < total; it++) {
            double got = vn_schedule_value(&s, it);
            double d = fabs(got - want[it]);
            ck_assert_msg(d <= rtol * fabs(want[it]), "%s[%lld]: %.17g, official %.17g", key,
                          (long long)it, got, want[it]);
            if (want[it] != 0 && d / fabs(want[it]) > max_rel) max_rel = d / fabs(want[it]);
        }
        /* Past the end: the last value; before the start: the first. */
        ck_assert(vn_schedule_value(&s, total + 10) == want[total - 1]);
        ck_assert(vn_schedule_value(&s, -3) == want[0]);
        printf("%-24s %3lld iterations, max rel diff %.3g\n", key, (long long)total, max_rel);
        free(spec);
        checked++;
    }
    ck_assert_int_ge(checked, 8);
    vn_st_close(f);
}
END_TEST

START_TEST(test_schedule_properties_and_errors)
{
    /* The recipe: 300 epochs, warmup 5 epochs, cosine 3.5e-3 -> 1e-6. */
    vn_schedule s;
    vn_schedule_cosine(&s, 3.5e-3, 1e-6, 300, 1251, 5, -1);
    ck_assert_int_eq(vn_schedule_check(&s, NULL), VN_OK);
    ck_assert_int_eq(vn_schedule_warmup_iters(&s), 5 * 1251);
    ck_assert(vn_schedule_value(&s, 0) == 0.0);
    ck_assert(vn_schedule_value(&s, 5 * 1251 - 1) == 3.5e-3);
    ck_assert(vn_schedule_value(&s, 5 * 1251) == 3.5e-3);
    double last = vn_schedule_value(&s, 300 * 1251 - 1);
    ck_assert(last > 1e-6 && last < 1.001e-6);
    for (int64_t it = 5 * 1251; it + 1 < 300 * 1251; it += 997)
        ck_assert(vn_schedule_value(&s, it + 1) <= vn_schedule_value(&s, it));

    vn_error err = {0};
    struct {
        int what;
        const char *needle;
    } bad[] = {{0, "epochs"}, {1, "iterations per epoch"}, {2, "longer than training"},
               {3, "warmup_epochs"}, {4, "finite"}, {5, "step_epochs"}, {6, "gamma"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vn_schedule_step(&s, 0.1, 0.5, 2, 10, 4, 1, -1);
        ck_assert_int_eq(vn_schedule_check(&s, &err), VN_OK);
        switch (bad[i].what) {
        case 0: s.epochs = 0; break;
        case 1: s.niter_per_ep = 0; break;
        case 2: s.warmup_steps = 41; break;
        case 3: s.warmup_epochs = 11; break;
        case 4: s.base_value = INFINITY; break;
        case 5: s.step_epochs = 0; break;
        case 6: s.step_gamma = -1.0; break;
        }
        ck_assert_int_eq(vn_schedule_check(&s, &err), VN_ERR_INVALID);
        ck_assert_msg(strstr(err.msg, bad[i].needle) != NULL, "'%s' lacks '%s'", err.msg,
                      bad[i].needle);
    }
    vn_sched_kind k;
    ck_assert_int_eq(vn_sched_kind_parse("Cosine", &k, &err), VN_OK);
    ck_assert_int_eq(k, VN_SCHED_COSINE);
    ck_assert_int_eq(vn_sched_kind_parse("poly", &k, &err), VN_ERR_INVALID);
    /* warmup_steps alone (the official code asserts here): warmup, then cosine. */
    vn_schedule_cosine(&s, 1.0, 0.0, 2, 5, 0, 4);
    ck_assert_int_eq(vn_schedule_check(&s, NULL), VN_OK);
    ck_assert(vn_schedule_value(&s, 0) == 0.0 && vn_schedule_value(&s, 3) == 1.0);
    ck_assert(vn_schedule_value(&s, 4) == 1.0);
}
END_TEST

/* ------------------------------------------------------------------- groups, layer decay */

START_TEST(test_groups_and_layer_decay)
{
    vn_st_file *f = vn_test_fixture("optim/groups.safetensors");
    /* The optimizer's groups on the case parameters: no decay for 1-D and biases; layer
     * ids and scales as the official assigner, for 2 stages and decay 0.5. */
    optim_case c;
    case_load(&c, "optim/sgd_layer_decay.safetensors");
    ck_assert(c.cfg.layer_decay == 0.5 && c.cfg.layer_decay_num_layers == 2);
    vn_optim *opt = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_create(&opt, &c.cfg, c.n, c.t, NULL, &err), VN_OK);
    const int64_t *decay = fixture_i64(f, "decay", c.n);
    const int64_t *ids = fixture_i64(f, "small.layer_id", c.n);
    const double *scales = fixture_f64(f, "small.scale", c.n);
    ck_assert_int_eq(vn_optim_param_count(opt), c.n);
    for (int i = 0; i < c.n; i++) {
        vn_optim_param_info info;
        ck_assert_int_eq(vn_optim_param_info_at(opt, i, &info), VN_OK);
        ck_assert_str_eq(info.name, c.names[i]);
        ck_assert_msg(info.decay == (decay[i] != 0), "%s: decay %d, official %lld", info.name,
                      info.decay, (long long)decay[i]);
        ck_assert_int_eq(info.layer_id, ids[i]);
        ck_assert(info.lr_scale == scales[i]);
    }
    vn_optim_param_info info;
    ck_assert_int_eq(vn_optim_param_info_at(opt, c.n, &info), VN_ERR_INVALID);
    vn_optim_set_lr(opt, 0.1);
    double lo, hi;
    vn_optim_lr_range(opt, &lo, &hi);
    ck_assert(lo == 0.1 * 0.125 && hi == 0.1);
    vn_optim_destroy(opt);

    /* Flag-based no-decay, and names: ".alpha"/".beta" as the official filter. */
    int64_t sh2[2] = {3, 3};
    vn_tensor *t = vn_tensor_new(2, sh2, true);
    ck_assert(!vn_param_is_no_decay("stages.0.conv1.0.weight", t));
    ck_assert(vn_param_is_no_decay("stages.0.conv1.0.bias", t));
    ck_assert(vn_param_is_no_decay("x.alpha", t) && vn_param_is_no_decay("x.beta", t));
    t->flags |= VN_TENSOR_NO_DECAY;
    ck_assert(vn_param_is_no_decay("stages.0.conv1.0.weight", t));
    vn_tensor_free(t);

    /* A vanillanet_6 name list, num_layers 4, decay 0.8. */
    char *list = dup_meta(f, "v6");
    char *names[32];
    int n = split(list, names, 32);
    const int64_t *v6_ids = fixture_i64(f, "v6.layer_id", n);
    const double *v6_scale = fixture_f64(f, "v6.scale", n);
    for (int i = 0; i < n - 1; i++) {
        int id = -1;
        ck_assert_int_eq(vn_layer_id_vanillanet(names[i], 4, &id, &err), VN_OK);
        ck_assert_int_eq(id, v6_ids[i]);
        ck_assert(vn_layer_decay_scale(0.8, 4, id) == v6_scale[i]);
    }
    int id = -1;
    ck_assert_int_eq(vn_layer_id_vanillanet(names[n - 1], 4, &id, &err), VN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, names[n - 1]));
    ck_assert_int_eq(vn_layer_id_vanillanet("stages.x.weight", 4, &id, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_layer_id_vanillanet("head.weight", 4, &id, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_layer_id_vanillanet("stages.4.act.weight", 4, &id, &err), VN_OK);
    ck_assert_int_eq(id, 5);
    free(list);
    case_free(&c);
    vn_st_close(f);
}
END_TEST

/* --------------------------------------------------------------------------- clipping */

START_TEST(test_clip_grad_norm)
{
    vn_st_file *f = vn_test_fixture("optim/clip.safetensors");
    char *list = dup_meta(f, "params");
    char *names[32];
    int n = split(list, names, 32);
    int ncases = atoi(vn_st_meta(f, "cases"));
    ck_assert_int_eq(ncases, 3);
    for (int ci = 0; ci < ncases; ci++) {
        vn_tensor *ts[32];
        for (int i = 0; i < n; i++) {
            char key[256];
            snprintf(key, sizeof key, "case%d.grad.%s", ci, names[i]);
            const vn_st_entry *e = vn_st_find(f, key);
            ck_assert_ptr_nonnull(e);
            ts[i] = vn_tensor_new(e->ndim, e->shape, true);
            memcpy(ts[i]->grad, vn_test_f32(f, key, ts[i]->numel), (size_t)ts[i]->numel * 4);
        }
        char key[64];
        snprintf(key, sizeof key, "case%d.max_norm", ci);
        double max_norm = strtod(vn_st_meta(f, key), NULL);
        snprintf(key, sizeof key, "case%d.total", ci);
        double want_total = fixture_f64(f, key, 1)[0];
        double before = vn_grad_norm(ts, n);
        double total = vn_clip_grad_norm(ts, n, max_norm);
        ck_assert(total == before);
        /* torch sums float32 norms; ours is double: agree to float precision. */
        ck_assert_msg(fabs(total - want_total) <= 1e-6 * want_total, "total %.9g vs %.9g",
                      total, want_total);
        for (int i = 0; i < n; i++) {
            char k2[256];
            snprintf(k2, sizeof k2, "case%d.clipped.%s", ci, names[i]);
            ck_assert(vn_test_close(k2, ts[i]->grad, vn_test_f32(f, k2, ts[i]->numel),
                                    ts[i]->numel, 1e-9, 1e-6));
        }
        double after = vn_grad_norm(ts, n);
        if (want_total > max_norm) ck_assert(fabs(after - max_norm) < 1e-5 * max_norm);
        else ck_assert(after == before);
        printf("clip case %d: total %.6g (torch %.6g), max_norm %g, after %.6g\n", ci, total,
               want_total, max_norm, after);
        for (int i = 0; i < n; i++) vn_tensor_free(ts[i]);
    }
    /* Zero gradients: norm 0, nothing scaled; NaN: reported, gradients untouched. */
    int64_t sh[1] = {5};
    vn_tensor *t = vn_tensor_new(1, sh, true);
    ck_assert(vn_clip_grad_norm(&t, 1, 1.0) == 0.0);
    t->grad[2] = NAN;
    t->grad[3] = 4.0f;
    ck_assert(isnan(vn_clip_grad_norm(&t, 1, 1.0)));
    ck_assert(t->grad[3] == 4.0f);
    /* Tensors without gradients are skipped. */
    vn_tensor *nog = vn_tensor_new(1, sh, false);
    vn_tensor *both[2] = {nog, t};
    t->grad[2] = 3.0f;
    ck_assert(vn_grad_norm(both, 2) == 5.0);
    vn_tensor_free(nog);
    vn_tensor_free(t);
    free(list);
    vn_st_close(f);
}
END_TEST

/* -------------------------------------------------------------------------------- EMA */

typedef struct ema_model {
    int n;
    vn_tensor *t[16];
    char *keys[16];
    int64_t counter; /* num_batches_tracked */
} ema_model;

/* Loads "<prefix><key>" for every key; the int64 key goes to the counter. */
static void ema_model_load(ema_model *m, vn_st_file *f, const char *prefix, char **keys,
                           int nkeys, bool fresh)
{
    if (fresh) memset(m, 0, sizeof *m);
    int k = 0;
    for (int i = 0; i < nkeys; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, keys[i]);
        const vn_st_entry *e = vn_st_find(f, key);
        ck_assert_msg(e != NULL, "no %s", key);
        if (e->dtype == VN_DTYPE_I64) {
            m->counter = *(const int64_t *)e->data;
            continue;
        }
        if (fresh) {
            m->t[k] = vn_tensor_new(e->ndim, e->shape, false);
            m->t[k]->name = keys[i];
            m->keys[k] = keys[i];
        }
        memcpy(m->t[k]->data, vn_test_f32(f, key, m->t[k]->numel), (size_t)m->t[k]->numel * 4);
        k++;
    }
    m->n = k;
}

static void ema_model_free(ema_model *m)
{
    for (int i = 0; i < m->n; i++) vn_tensor_free(m->t[i]);
}

START_TEST(test_ema_matches_timm)
{
    vn_st_file *f = vn_test_fixture("optim/ema.safetensors");
    char *klist = dup_meta(f, "keys"), *dlist = dup_meta(f, "decays");
    char *keys[16], *dstr[4];
    int nkeys = split(klist, keys, 16), nd = split(dlist, dstr, 4);
    int steps = atoi(vn_st_meta(f, "steps"));
    ck_assert_int_eq(nd, 2);
    ema_model live, emas[2];
    ema_model_load(&live, f, "model.0.", keys, nkeys, true);
    vn_ema *e[2];
    vn_error err = {0};
    for (int d = 0; d < nd; d++) {
        /* The EMA models start from other values: creation copies the live model. */
        ema_model_load(&emas[d], f, "model.3.", keys, nkeys, true);
        int rc = vn_ema_create(&e[d], strtod(dstr[d], NULL), live.n, emas[d].t, live.t, NULL,
                               "model_ema.", &err);
        ck_assert_msg(rc == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_ema_add_counter(e[d], "bn.num_batches_tracked", &emas[d].counter,
                                            &live.counter, &err), VN_OK);
        ck_assert_int_eq(emas[d].counter, live.counter);
        for (int i = 0; i < live.n; i++)
            ck_assert(memcmp(emas[d].t[i]->data, live.t[i]->data, (size_t)live.t[i]->numel * 4) == 0);
    }
    char prefix_buf[32];
    for (int s = 1; s <= steps; s++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "model.%d.", s);
        ema_model_load(&live, f, prefix, keys, nkeys, false);
        for (int d = 0; d < nd; d++) {
            vn_ema_update(e[d]);
            ema_model want;
            snprintf(prefix, sizeof prefix, "ema%d.%d.", d, s);
            ema_model_load(&want, f, prefix, keys, nkeys, true);
            for (int i = 0; i < live.n; i++) {
                char what[128];
                snprintf(what, sizeof what, "ema %s step %d %s", dstr[d], s, keys[i]);
                /* Same three float32 roundings as torch: bit-exact. */
                ck_assert_msg(vn_test_close(what, emas[d].t[i]->data, want.t[i]->data,
                                            live.t[i]->numel, 0.0, 0.0), "%s", what);
            }
            ck_assert_msg(emas[d].counter == want.counter,
                          "num_batches_tracked: %lld, timm %lld (decay %s, step %d)",
                          (long long)emas[d].counter, (long long)want.counter, dstr[d], s);
            ema_model_free(&want);
        }
    }
    printf("ema: %d decays x %d updates bit-exact; num_batches_tracked %lld / %lld (model %lld)\n",
           nd, steps, (long long)emas[0].counter, (long long)emas[1].counter,
           (long long)live.counter);

    /* Named state: the EMA model's tensors under the prefix, then the counter. */
    ck_assert_int_eq(vn_ema_state_count(e[0]), live.n + 1);
    vn_ckpt_entry st;
    ck_assert_int_eq(vn_ema_state_at(e[0], 0, &st), VN_OK);
    ck_assert_str_eq(st.name, "model_ema.conv.weight");
    ck_assert_ptr_eq(st.data, emas[0].t[0]->data);
    ck_assert_int_eq(vn_ema_state_find(e[0], "model_ema.bn.num_batches_tracked", &st, &err),
                     VN_OK);
    ck_assert_int_eq(st.dtype, VN_DTYPE_I64);
    ck_assert_ptr_eq(st.data, &emas[0].counter);
    ck_assert_int_eq(vn_ema_state_find(e[0], "bn.weight", &st, &err), VN_ERR_NOT_FOUND);
    ck_assert(vn_ema_decay(e[1]) == strtod(dstr[1], NULL));

    /* Restore through the named state: snapshot, move on, load the snapshot back. */
    int ns = vn_ema_state_count(e[0]);
    void *snap[17];
    size_t snap_bytes[17];
    for (int i = 0; i < ns; i++) {
        ck_assert_int_eq(vn_ema_state_at(e[0], i, &st), VN_OK);
        snap_bytes[i] = vn_ckpt_entry_nbytes(&st);
        snap[i] = malloc(snap_bytes[i]);
        memcpy(snap[i], st.data, snap_bytes[i]);
    }
    ema_model_load(&live, f, "model.1.", keys, nkeys, false);
    vn_ema_update(e[0]);
    for (int i = 0; i < ns; i++) {
        ck_assert_int_eq(vn_ema_state_at(e[0], i, &st), VN_OK);
        ck_assert_int_eq(vn_ckpt_entry_load(&st, st.dtype, st.ndim, st.shape, snap[i],
                                             snap_bytes[i], &err), VN_OK);
    }
    ema_model want;
    snprintf(prefix_buf, sizeof prefix_buf, "ema0.%d.", steps);
    ema_model_load(&want, f, prefix_buf, keys, nkeys, true);
    for (int i = 0; i < live.n; i++)
        ck_assert(memcmp(emas[0].t[i]->data, want.t[i]->data, (size_t)live.t[i]->numel * 4) == 0);
    ck_assert_int_eq(emas[0].counter, want.counter);
    ema_model_free(&want);
    for (int i = 0; i < ns; i++) free(snap[i]);

    /* Restart: copy_from_model. */
    vn_ema_copy_from_model(e[1]);
    for (int i = 0; i < live.n; i++)
        ck_assert(memcmp(emas[1].t[i]->data, live.t[i]->data, (size_t)live.t[i]->numel * 4) == 0);

    for (int d = 0; d < nd; d++) {
        vn_ema_destroy(e[d]);
        ema_model_free(&emas[d]);
    }
    ema_model_free(&live);
    free(klist);
    free(dlist);
    vn_st_close(f);
}
END_TEST

START_TEST(test_ema_errors_and_blend)
{
    int64_t a[2] = {3, 4}, b[2] = {4, 3};
    vn_tensor *x = vn_tensor_new(2, a, false), *y = vn_tensor_new(2, b, false);
    x->name = "cls2.0.weight";
    vn_ema *e = (vn_ema *)x;
    vn_error err = {0};
    ck_assert_int_eq(vn_ema_create(&e, 0.999, 1, &x, &y, NULL, NULL, &err), VN_ERR_SHAPE);
    ck_assert_ptr_null(e);
    ck_assert_ptr_nonnull(strstr(err.msg, "cls2.0.weight"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[3, 4]"));
    ck_assert_int_eq(vn_ema_create(&e, 0.999, 1, &x, &x, NULL, NULL, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_create(&e, 0.0, 1, &x, &y, NULL, NULL, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_create(&e, 1.5, 1, &x, &y, NULL, NULL, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_create(&e, NAN, 1, &x, &y, NULL, NULL, &err), VN_ERR_INVALID);
    /* decay 1 freezes the EMA. */
    vn_tensor *z = vn_tensor_new(2, a, false);
    vn_tensor_fill(z, 2.0f);
    ck_assert_int_eq(vn_ema_create(&e, 1.0, 1, &x, &z, NULL, "ema.", &err), VN_OK);
    vn_tensor_fill(z, 5.0f);
    vn_ema_update(e);
    ck_assert(x->data[7] == 2.0f);
    int64_t c0 = 1, c1 = 1;
    ck_assert_int_eq(vn_ema_add_counter(e, "n", &c0, &c0, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_add_counter(e, "n", &c0, &c1, &err), VN_OK);
    vn_ema_destroy(e);
    /* The float32 blend of an int64 counter, truncated as torch's copy_ does. */
    ck_assert_int_eq(vn_ema_blend_i64(1000, 2000, 0.9), 1100);
    ck_assert_int_eq(vn_ema_blend_i64(1000, 1005, 0.9), 1000);
    ck_assert_int_eq(vn_ema_blend_i64(-10, -20, 0.5), -15);
    vn_tensor_free(x);
    vn_tensor_free(y);
    vn_tensor_free(z);
}
END_TEST

/* Ultralytics 8.3 ModelEMA's ramp d = decay (1 - exp(-updates / tau)) and three updates at
 * the ramped decays against torch 1.13 (v *= d; v += (1 - d) * x, float32; values printed by
 * torch, exact). */
START_TEST(test_ema_ramped_decay)
{
    ck_assert_double_eq_tol(vn_ema_ramped_decay(0.9999, 2000, 1), 0.000499825033328626, 1e-15);
    ck_assert_double_eq_tol(vn_ema_ramped_decay(0.9999, 2000, 100), 0.048765698441736054, 1e-15);
    ck_assert_double_eq_tol(vn_ema_ramped_decay(0.9999, 2000, 2000), 0.6320573467726748, 1e-15);
    ck_assert_double_eq_tol(vn_ema_ramped_decay(0.9999, 2000, 20000), 0.9998546046102305, 1e-15);
    ck_assert(vn_ema_ramped_decay(0.99, 0, 5) == 0.99);
    int64_t sh[1] = {3};
    vn_tensor *v = vn_tensor_new(1, sh, false), *x = vn_tensor_new(1, sh, false);
    v->name = "w";
    const float v0[3] = {1.0f, -2.0f, 0.5f}, x0[3] = {3.0f, 0.25f, -1.5f};
    memcpy(x->data, v0, sizeof v0);
    vn_ema *e = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_ema_create(&e, 0.9999, 1, &v, &x, NULL, NULL, &err), VN_OK);
    memcpy(x->data, x0, sizeof x0);
    for (int64_t u = 1; u <= 3; u++) {
        ck_assert_int_eq(vn_ema_set_decay(e, vn_ema_ramped_decay(0.9999, 2000, u), &err), VN_OK);
        vn_ema_update(e);
        for (int i = 0; i < 3; i++) x->data[i] *= 1.5f;
    }
    ck_assert(v->data[0] == 0x1.afc8b8p+2f);
    ck_assert(v->data[1] == 0x1.1fdb24p-1f);
    ck_assert(v->data[2] == -0x1.afc8b8p+1f);
    /* Out of range: refused, the decay unchanged. */
    double d = vn_ema_decay(e);
    ck_assert_int_eq(vn_ema_set_decay(e, 1.5, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_set_decay(e, -0.1, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_ema_set_decay(e, NAN, &err), VN_ERR_INVALID);
    ck_assert(vn_ema_decay(e) == d);
    ck_assert_int_eq(vn_ema_set_decay(e, 0.0, &err), VN_OK);
    vn_ema_update(e);
    ck_assert(v->data[1] == x->data[1]);
    vn_ema_destroy(e);
    vn_tensor_free(v);
    vn_tensor_free(x);
}
END_TEST

static Suite *sched_suite(void)
{
    Suite *s = suite_create("optim-sched-ema");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_schedules_match_official);
    tcase_add_test(tc, test_schedule_properties_and_errors);
    tcase_add_test(tc, test_groups_and_layer_decay);
    tcase_add_test(tc, test_clip_grad_norm);
    tcase_add_test(tc, test_ema_matches_timm);
    tcase_add_test(tc, test_ema_errors_and_blend);
    tcase_add_test(tc, test_ema_ramped_decay);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return vn_test_run(sched_suite(), true);
}
