/* Fixture loading for the optim tests (see optim_case.h). */
#include "optim_case.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *case_meta(const optim_case *c, const char *key)
{
    const char *v = vn_st_meta(c->f, key);
    ck_assert_msg(v != NULL, "%s: metadata has no '%s'", c->file, key);
    return v;
}

double case_meta_f(const optim_case *c, const char *key)
{
    const char *v = case_meta(c, key);
    char *end = NULL;
    double x = strtod(v, &end);
    ck_assert_msg(end && *end == '\0', "%s: metadata '%s' = '%s' is not a number", c->file, key,
                  v);
    return x;
}

static bool meta_bool(const optim_case *c, const char *key)
{
    return strcmp(case_meta(c, key), "1") == 0;
}

const double *fixture_f64(const vn_st_file *f, const char *name, int64_t numel)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "%s: no tensor '%s'", vn_st_path(f), name);
    ck_assert_msg(e->dtype == VN_DTYPE_F64, "%s: '%s' is not F64", vn_st_path(f), name);
    ck_assert_msg(numel < 0 || e->numel == numel, "%s: '%s' has %lld elements, want %lld",
                  vn_st_path(f), name, (long long)e->numel, (long long)numel);
    return e->data;
}

const int64_t *fixture_i64(const vn_st_file *f, const char *name, int64_t numel)
{
    const vn_st_entry *e = vn_st_find(f, name);
    ck_assert_msg(e != NULL, "%s: no tensor '%s'", vn_st_path(f), name);
    ck_assert_msg(e->dtype == VN_DTYPE_I64, "%s: '%s' is not I64", vn_st_path(f), name);
    ck_assert_msg(numel < 0 || e->numel == numel, "%s: '%s' has %lld elements, want %lld",
                  vn_st_path(f), name, (long long)e->numel, (long long)numel);
    return e->data;
}

void case_load(optim_case *c, const char *file)
{
    memset(c, 0, sizeof *c);
    c->file = file;
    c->f = vn_test_fixture(file);
    char *list = strdup(case_meta(c, "params"));
    ck_assert_ptr_nonnull(list);
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        ck_assert_int_lt(c->n, CASE_MAX_PARAMS);
        c->names[c->n] = strdup(tok);
        c->n++;
    }
    free(list);
    case_reset_params(c);

    vn_optim_kind kind;
    vn_error err = {0};
    ck_assert_int_eq(vn_optim_kind_parse(case_meta(c, "kind"), &kind, &err), VN_OK);
    vn_optim_config_init(&c->cfg, kind);
    c->cfg.lr = case_meta_f(c, "lr");
    c->cfg.weight_decay = case_meta_f(c, "weight_decay");
    c->cfg.momentum = case_meta_f(c, "momentum");
    c->cfg.dampening = case_meta_f(c, "dampening");
    c->cfg.nesterov = meta_bool(c, "nesterov");
    c->cfg.beta1 = case_meta_f(c, "beta1");
    c->cfg.beta2 = case_meta_f(c, "beta2");
    c->cfg.eps = case_meta_f(c, "eps");
    c->cfg.bias_correction = meta_bool(c, "bias_correction");
    c->cfg.max_grad_norm = case_meta_f(c, "max_grad_norm");
    c->cfg.always_adapt = meta_bool(c, "always_adapt");
    c->cfg.trust_clip = meta_bool(c, "trust_clip");
    c->cfg.filter_no_decay = meta_bool(c, "filter");
    c->cfg.layer_decay = case_meta_f(c, "layer_decay");
    c->cfg.layer_decay_num_layers = (int)case_meta_f(c, "num_layers");
    c->steps = (int)case_meta_f(c, "steps");
    c->update_freq = (int)case_meta_f(c, "update_freq");
    c->clip_grad = case_meta_f(c, "clip_grad");
    c->sched_cosine = strcmp(case_meta(c, "sched"), "cosine") == 0;
}

void case_reset_params(optim_case *c)
{
    c->total = 0;
    for (int i = 0; i < c->n; i++) {
        char key[256];
        snprintf(key, sizeof key, "param.%s", c->names[i]);
        if (c->t[i]) vn_tensor_free(c->t[i]);
        c->t[i] = vn_test_tensor(c->f, key, true);
        c->t[i]->name = c->names[i];
        c->t[i]->flags |= VN_TENSOR_PARAM;
        c->total += c->t[i]->numel;
    }
}

void case_free(optim_case *c)
{
    for (int i = 0; i < c->n; i++) {
        vn_tensor_free(c->t[i]);
        free(c->names[i]);
    }
    vn_st_close(c->f);
    memset(c, 0, sizeof *c);
}

void case_set_grads(optim_case *c, vn_optim *opt, int s)
{
    ck_assert_int_eq(vn_optim_zero_grad(opt), VN_OK);
    for (int k = 0; k < c->update_freq; k++) {
        char key[64];
        if (c->update_freq == 1) snprintf(key, sizeof key, "grad.%d", s);
        else snprintf(key, sizeof key, "grad.%d.%d", s, k);
        const float *g = vn_test_f32(c->f, key, c->total);
        int64_t off = 0;
        for (int i = 0; i < c->n; i++) {
            /* Backward accumulates micro-batch gradients with +=. */
            for (int64_t j = 0; j < c->t[i]->numel; j++) c->t[i]->grad[j] += g[off + j];
            off += c->t[i]->numel;
        }
    }
}

double case_check_params(const optim_case *c, int s, double atol, double rtol)
{
    char key[64];
    snprintf(key, sizeof key, "expect.%d", s);
    const float *want = vn_test_f32(c->f, key, c->total);
    int64_t off = 0;
    double max_err = 0.0;
    for (int i = 0; i < c->n; i++) {
        char what[256];
        snprintf(what, sizeof what, "%s step %d %s", c->file, s, c->names[i]);
        ck_assert_msg(vn_test_close(what, c->t[i]->data, want + off, c->t[i]->numel, atol, rtol),
                      "%s differs from PyTorch", what);
        for (int64_t j = 0; j < c->t[i]->numel; j++) {
            double d = fabs((double)c->t[i]->data[j] - (double)want[off + j]);
            if (d > max_err) max_err = d;
        }
        off += c->t[i]->numel;
    }
    return max_err;
}
