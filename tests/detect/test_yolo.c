/* YOLO11-VanillaNet (models/vn_yolo.h) against the PyTorch model of tests/reference/yolo_ref.py
 * built from the same weights (fixtures: tests/reference/gen_yolo.py): training outputs,
 * the input gradient and every parameter gradient of sum_l(y_l * gy_l), the BN running
 * statistics after that step, eval-mode outputs; plus names, sizes and config errors.
 *
 * Tolerances, relative to the largest magnitude of the reference tensor (the float32 network
 * against float64 PyTorch): outputs and the input gradient |got - want| <= OUT_TOL * max|want|;
 * parameter gradients, stored as float16, GRAD_TOL * max|want| + 2^-10 |want| (half a float16
 * unit of rounding plus the float32 error). */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vn_yolo.h"

#define OUT_TOL 1e-4
#define GRAD_TOL 1e-3
#define STAT_TOL 1e-4

typedef struct yolo_case {
    const char *name;
    int n_stages, dims[6], strides[5], act_num, nc;
    float depth, width;
    int max_ch;
    bool c3k;
    int reg_max;
    float act_learn;
    int64_t shape[4];
} yolo_case;

/* The same list as tests/reference/gen_yolo.py. */
static const yolo_case cases[] = {
    {"small", 3, {16, 24, 32, 48}, {2, 2, 2}, 1, 3, 0.5f, 0.125f, 1024, false, 16, 0.5f,
     {2, 64, 64, 3}},
    {"c3k", 4, {16, 16, 24, 32, 32}, {2, 2, 2, 1}, 2, 5, 1.0f, 0.125f, 1024, true, 4, 1.0f,
     {3, 96, 64, 3}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void case_config(const yolo_case *c, vn_yolo_config *cfg)
{
    vn_yolo_config_default(cfg);
    vn_vanillanet_config *b = &cfg->backbone;
    b->n_stages = c->n_stages;
    for (int i = 0; i <= c->n_stages; i++) b->dims[i] = c->dims[i];
    for (int i = 0; i < c->n_stages; i++) b->strides[i] = c->strides[i];
    b->act_num = c->act_num;
    cfg->nc = c->nc;
    cfg->depth_multiple = c->depth;
    cfg->width_multiple = c->width;
    cfg->max_channels = c->max_ch;
    cfg->c3k = c->c3k;
    cfg->reg_max = c->reg_max;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 1024), (int)exp - 25);
    uint32_t bits;
    memcpy(&bits, &v, 4);
    bits |= sign;
    memcpy(&v, &bits, 4);
    return v;
}

static const vn_st_entry *entry(const vn_st_file *f, const char *pfx, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", pfx, name);
    const vn_st_entry *e = vn_st_find(f, key);
    ck_assert_msg(e != NULL, "fixture lacks '%s' (names differ from Ultralytics'?)", key);
    return e;
}

/* Sets every state entry from q.<name> * s.<name>; counts become 3 (as randomize). */
static void load_weights(vn_yolo *m, const vn_st_file *f)
{
    const vn_state_list *l = vn_yolo_state(m);
    int n_float = 0;
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *it = &l->items[i];
        if (it->count) {
            *it->count = 3;
            continue;
        }
        const vn_st_entry *q = entry(f, "q.", it->name), *s = entry(f, "s.", it->name);
        ck_assert_msg(q->dtype == VN_DTYPE_I8 && q->numel == it->tensor->numel,
                      "%s: %lld elements in the fixture, %lld in the model", it->name,
                      (long long)q->numel, (long long)it->tensor->numel);
        float scale = *(const float *)s->data;
        const int8_t *qd = q->data;
        for (int64_t k = 0; k < q->numel; k++) it->tensor->data[k] = (float)qd[k] * scale;
        n_float++;
    }
    int n_q = 0;
    for (int i = 0; i < vn_st_count(f); i++) n_q += !strncmp(vn_st_at(f, i)->name, "q.", 2);
    ck_assert_msg(n_q == n_float, "fixture has %d weights, the model %d", n_q, n_float);
}

static double max_abs(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* |got - want| <= tol * max|want| + rel * |want|; returns the worst ratio for the log. */
static double check_rel(const char *what, const float *got, const float *want, int64_t n,
                        double tol, double rel)
{
    double scale = max_abs(want, n), worst = 0;
    bool ok = vn_test_close(what, got, want, n, tol * (scale > 0 ? scale : 1), rel);
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / (scale > 0 ? scale : 1);
        worst = d > worst ? d : worst;
    }
    ck_assert_msg(ok, "%s differs from PyTorch (tolerance %g of max %g)", what, tol, scale);
    return worst;
}

/* The outputs' gradients are seeded at once: each output flattened, all concatenated. */
static void backward_levels(vn_ctx *ctx, const vn_st_file *f, vn_tensor **y)
{
    vn_tensor *flat[VN_YOLO_LEVELS];
    int64_t total = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        flat[l] = vn_reshape(ctx, y[l], 1, &y[l]->numel);
        total += y[l]->numel;
    }
    vn_tensor *all = vn_concat(ctx, VN_YOLO_LEVELS, flat);
    ck_assert_msg(all != NULL, "%s", vn_ctx_error(ctx));
    float *seed = malloc((size_t)total * sizeof *seed);
    int64_t off = 0;
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        char key[16];
        snprintf(key, sizeof key, "gy%d", l);
        memcpy(seed + off, vn_test_f32(f, key, y[l]->numel), (size_t)y[l]->numel * sizeof(float));
        off += y[l]->numel;
    }
    ck_assert_msg(vn_backward_with(ctx, all, seed) == VN_OK, "%s", vn_ctx_error(ctx));
    free(seed);
}

static void check_param_grads(const vn_yolo *m, const vn_st_file *f, const char *cs)
{
    const vn_state_list *l = vn_yolo_state(m);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *it = &l->items[i];
        if (it->kind != VN_STATE_PARAM) continue;
        const vn_st_entry *e = entry(f, "d.", it->name);
        ck_assert(e->dtype == VN_DTYPE_F16 && e->numel == it->tensor->numel);
        ck_assert_msg(it->tensor->grad != NULL, "%s: no gradient", it->name);
        float *want = malloc((size_t)e->numel * sizeof *want);
        for (int64_t k = 0; k < e->numel; k++) want[k] = half_to_float(((const uint16_t *)e->data)[k]);
        char what[256];
        snprintf(what, sizeof what, "%s d.%s", cs, it->name);
        double w = check_rel(what, it->tensor->grad, want, e->numel, GRAD_TOL, 1.0 / 1024);
        if (w > worst) {
            worst = w;
            worst_name = it->name;
        }
        free(want);
    }
    fprintf(stderr, "%s: worst parameter gradient error %.3g of max (%s)\n", cs, worst, worst_name);
}

static void check_running_stats(const vn_yolo *m, const vn_st_file *f, const char *cs)
{
    const vn_state_list *l = vn_yolo_state(m);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *it = &l->items[i];
        if (it->kind != VN_STATE_BUFFER) continue;
        const vn_st_entry *e = entry(f, "after.", it->name);
        char what[256];
        snprintf(what, sizeof what, "%s %s after one step", cs, it->name);
        check_rel(what, it->tensor->data, e->data, e->numel, STAT_TOL, 1e-4);
    }
}

START_TEST(test_against_pytorch)
{
    const yolo_case *c = &cases[_i];
    char rel[96];
    snprintf(rel, sizeof rel, "detect/yolo_%s.safetensors", c->name);
    vn_st_file *f = vn_test_fixture(rel);
    vn_yolo_config cfg;
    case_config(c, &cfg);
    vn_error err = {0};
    vn_yolo *m = NULL;
    ck_assert_msg(vn_yolo_create(&cfg, &m, &err) == VN_OK, "%s", err.msg);
    int64_t n_params = vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM);
    ck_assert_msg(n_params == atoll(vn_st_meta(f, "n_params")), "%lld parameters, PyTorch has %s",
                  (long long)n_params, vn_st_meta(f, "n_params"));
    load_weights(m, f);
    vn_yolo_change_act(m, c->act_learn);

    vn_tensor *x = vn_test_tensor(f, "x", true);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y[VN_YOLO_LEVELS];
    ck_assert_msg(vn_yolo_forward(ctx, m, x, y) == VN_OK, "%s", vn_ctx_error(ctx));
    char what[64];
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        snprintf(what, sizeof what, "train.y%d", l);
        double w = check_rel(what, y[l]->data, vn_test_f32(f, what, y[l]->numel), y[l]->numel,
                             OUT_TOL, 0);
        fprintf(stderr, "%s %s: shape [%lld,%lld,%lld,%lld], error %.3g of max\n", c->name, what,
                (long long)y[l]->shape[0], (long long)y[l]->shape[1], (long long)y[l]->shape[2],
                (long long)y[l]->shape[3], w);
    }
    backward_levels(ctx, f, y);
    double wx = check_rel("d.x", x->grad, vn_test_f32(f, "d.x", x->numel), x->numel, OUT_TOL, 0);
    fprintf(stderr, "%s d.x: error %.3g of max\n", c->name, wx);
    check_param_grads(m, f, c->name);
    check_running_stats(m, f, c->name);

    vn_ctx_reset(ctx);
    vn_yolo_set_training(m, false);
    vn_ctx_set_grad(ctx, false);
    ck_assert_msg(vn_yolo_forward(ctx, m, x, y) == VN_OK, "%s", vn_ctx_error(ctx));
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        snprintf(what, sizeof what, "eval.y%d", l);
        check_rel(what, y[l]->data, vn_test_f32(f, what, y[l]->numel), y[l]->numel, OUT_TOL, 0);
    }
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_yolo_destroy(m);
    vn_st_close(f);
}
END_TEST

START_TEST(test_names_and_init)
{
    vn_yolo_config cfg;
    case_config(&cases[0], &cfg);
    vn_yolo *m = NULL;
    ck_assert_int_eq(vn_yolo_create(&cfg, &m, NULL), VN_OK);
    const vn_state_list *l = vn_yolo_state(m);
    const char *expect[] = {"model.0.stem1.0.weight", "model.0.stages.2.act.bn.running_var",
                            "model.1.cv2.bn.num_batches_tracked", "model.2.m.0.attn.qkv.conv.weight",
                            "model.2.m.0.attn.pe.conv.weight", "model.2.m.0.ffn.1.bn.bias",
                            "model.5.m.0.cv1.conv.weight", "model.9.conv.weight",
                            "model.14.m.0.m.1.cv2.conv.weight", "model.15.cv2.2.2.bias",
                            "model.15.cv3.1.0.0.conv.weight", "model.15.cv3.0.2.weight"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_msg(vn_state_find(l, expect[i]) != NULL, "no state entry '%s'", expect[i]);
    for (int i = 0; i < l->n; i++)
        ck_assert_msg(strncmp(l->items[i].name, "model.0.cls", 11), "classifier entry %s",
                      l->items[i].name);
    /* Depthwise convs of the head and C2PSA's positional conv: [C, 3, 3, 1]. */
    const vn_tensor *dw = vn_state_find(l, "model.15.cv3.1.0.0.conv.weight")->tensor;
    ck_assert(dw->shape[1] == 3 && dw->shape[2] == 3 && dw->shape[3] == 1);
    vn_yolo_init(m, 5);
    const float *cls_b = vn_state_find(l, "model.15.cv3.2.2.bias")->tensor->data;
    const float *box_b = vn_state_find(l, "model.15.cv2.0.2.bias")->tensor->data;
    ck_assert_float_eq_tol(cls_b[0], (float)log(5.0 / 3 / (20.0 * 20.0)), 1e-6);
    ck_assert_float_eq(box_b[0], 1.0f);
    const vn_tensor *w = vn_state_find(l, "model.9.conv.weight")->tensor;
    double bound = 1.0 / sqrt(9.0 * (double)w->shape[3]), mx = max_abs(w->data, w->numel);
    ck_assert_msg(mx <= bound && mx > 0.9 * bound, "conv init max %g, bound %g", mx, bound);
    int ch[VN_YOLO_LEVELS];
    vn_yolo_level_channels(m, ch);
    ck_assert(ch[0] == 32 && ch[1] == 64 && ch[2] == 128);
    vn_yolo_destroy(m);

    vn_yolo_config_default(&cfg);
    ck_assert_int_eq(vn_yolo_create(&cfg, &m, NULL), VN_OK);
    fprintf(stderr, "default (vanillanet_5, yolo11n scaling, 80 classes): %lld parameters\n",
            (long long)vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM));
    vn_yolo_destroy(m);
}
END_TEST

static void expect_config_error(const vn_yolo_config *cfg, const char *needle)
{
    vn_error err = {0};
    vn_yolo *m = NULL;
    ck_assert_int_ne(vn_yolo_create(cfg, &m, &err), VN_OK);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "error '%s' lacks '%s'", err.msg, needle);
}

START_TEST(test_errors)
{
    vn_yolo_config base, cfg;
    case_config(&cases[0], &base);
    cfg = base;
    cfg.nc = 0;
    expect_config_error(&cfg, "nc");
    cfg = base;
    cfg.width_multiple = 0.0625f;
    expect_config_error(&cfg, "C2PSA");
    cfg = base;
    cfg.backbone.n_stages = 2;
    expect_config_error(&cfg, "stride 32");
    cfg = base;
    cfg.reg_max = 0;
    expect_config_error(&cfg, "reg_max");
    cfg = base;
    cfg.backbone.dims[1] = 0;
    expect_config_error(&cfg, "detector backbone");

    vn_yolo *m = NULL;
    ck_assert_int_eq(vn_yolo_create(&base, &m, NULL), VN_OK);
    vn_yolo_init(m, 1);
    vn_tensor *x = vn_tensor_new4(1, 48, 64, 3, false);
    vn_ctx *ctx = vn_ctx_create();
    vn_tensor *y[VN_YOLO_LEVELS];
    ck_assert_int_ne(vn_yolo_forward(ctx, m, x, y), VN_OK);
    ck_assert_msg(strstr(vn_ctx_error(ctx), "multiple of 32"), "%s", vn_ctx_error(ctx));
    ck_assert_ptr_null(y[0]);
    vn_ctx_destroy(ctx);
    vn_tensor_free(x);
    vn_yolo_destroy(m);
}
END_TEST

static const vn_report_row *report_row(const vn_report *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->rows[i].name, name)) return &r->rows[i];
    ck_abort_msg("no report row %s", name);
    return NULL;
}

/* `vanilla info`'s table of a detector: parameters add up to the model's, the backbone rows
 * are the classifier report's (without the classifier), and a few layers computed by hand for
 * case "small" at 64x64 (P3 8x8, P4 4x4, P5 2x2; neck widths 32 / 64 / 128, features 24 / 32 / 48,
 * Detect c2 = max(16, 32 / 4, 4 x 16) = 64, c3 = max(32, 3) = 32). */
START_TEST(test_report)
{
    vn_yolo_config cfg;
    case_config(&cases[0], &cfg);
    vn_yolo *m = NULL;
    ck_assert_int_eq(vn_yolo_create(&cfg, &m, NULL), VN_OK);
    for (int form = 0; form < 2; form++) {
        vn_report r, bb;
        ck_assert_int_eq(vn_yolo_report(m, 64, &r, NULL), VN_OK);
        ck_assert_int_eq(r.total_params, vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM));
        ck_assert_int_eq(vn_vanillanet_report(&cfg.backbone, form == 1, 64, 64, &bb, NULL), VN_OK);
        int64_t bb_params = 0, bb_macs = 0, r_params = 0, r_macs = 0;
        for (int i = 0; i < bb.n; i++)
            if (strncmp(bb.rows[i].name, "cls", 3)) bb_params += bb.rows[i].params, bb_macs += bb.rows[i].macs;
        for (int i = 0; i < r.n; i++)
            if (!strncmp(r.rows[i].name, "model.0.", 8)) r_params += r.rows[i].params, r_macs += r.rows[i].macs;
        ck_assert_int_eq(r_params, bb_params);
        ck_assert_int_eq(r_macs, bb_macs);
        const vn_report_row *x = report_row(&r, "model.9");
        ck_assert_int_eq(x->macs, 9 * 32 * 32 * 16);
        ck_assert_int_eq(x->params, 9 * 32 * 32 + 2 * 32);
        ck_assert(x->out[1] == 4 && x->out[3] == 32);
        ck_assert_int_eq(report_row(&r, "model.1")->macs, 48 * 24 * 4 + 96 * 128 * 4);
        ck_assert_int_eq(report_row(&r, "model.2")->out[3], 128);
        ck_assert_int_eq(report_row(&r, "model.10")->out[3], 32 + 64);
        int64_t box = (9 * 32 * 64 + 9 * 64 * 64 + 64 * 64) * 64;
        int64_t cls = (9 * 32 + 32 * 32 + 9 * 32 + 32 * 32 + 32 * 3) * 64;
        ck_assert_int_eq(report_row(&r, "model.15 (P3)")->macs, box + cls);
        ck_assert_int_eq(report_row(&r, "model.15 (P3)")->out[3], 4 * 16 + 3);
        int64_t sum = 0;
        for (int i = 0; i < r.n; i++) sum += r.rows[i].macs;
        ck_assert_int_eq(sum, r.total_macs);
        vn_report_free(&r);
        vn_report_free(&bb);
        if (form == 0) ck_assert_int_eq(vn_yolo_switch_to_deploy(m, true, NULL), VN_OK);
    }
    vn_error err = {0};
    vn_report r;
    ck_assert_int_ne(vn_yolo_report(m, 48, &r, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "multiple of 32"), "%s", err.msg);
    vn_yolo_destroy(m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("yolo");
    TCase *tc = tcase_create("yolo");
    tcase_add_loop_test(tc, test_against_pytorch, 0, N_CASES);
    tcase_add_test(tc, test_names_and_init);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_report);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }
