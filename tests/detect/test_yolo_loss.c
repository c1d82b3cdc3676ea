/* The detection loss (models/yolo_assign.c, autograd/ops_detect_loss.c) against a PyTorch
 * re-implementation of Ultralytics 8.3's assigner and loss (tests/reference/gen_yolo_loss.py):
 * foreground anchors, assigned gts, target scores and boxes, the three loss terms, the total
 * and its gradient with respect to every Detect output; a finite-difference check of the
 * loss gradient with the targets held fixed; errors.
 * Tolerances: the assignment exactly (flags and indices) and target values to 1e-5 relative;
 * the loss terms to 1e-5 relative; gradients |got - want| <= 1e-5 max|want| + 1e-4 |want|
 * (float32 storage of per-anchor double computations). */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vn_yolo.h"

static const char *const loss_cases[] = {"basic", "wide"};
#define N_LOSS_CASES 2

typedef struct loss_fixture {
    vn_st_file *f;
    vn_tensor *p[VN_YOLO_LEVELS];
    vn_yolo_gt *gts;
    int64_t n_gt;
    int nc, reg_max;
} loss_fixture;

static void fixture_open(loss_fixture *lf, const char *name, bool rg)
{
    char rel[96];
    snprintf(rel, sizeof rel, "detect/loss_%s.safetensors", name);
    lf->f = vn_test_fixture(rel);
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        char k[8];
        snprintf(k, sizeof k, "p%d", l);
        lf->p[l] = vn_test_tensor(lf->f, k, rg);
    }
    lf->nc = atoi(vn_st_meta(lf->f, "nc"));
    lf->reg_max = atoi(vn_st_meta(lf->f, "reg_max"));
    const vn_st_entry *g = vn_st_find(lf->f, "gt");
    ck_assert_ptr_nonnull(g);
    lf->n_gt = g->shape[0];
    lf->gts = calloc((size_t)lf->n_gt, sizeof *lf->gts);
    const float *gd = g->data;
    for (int64_t i = 0; i < lf->n_gt; i++)
        lf->gts[i] = (vn_yolo_gt){(int32_t)gd[6 * i], (int32_t)gd[6 * i + 1], gd[6 * i + 2],
                                  gd[6 * i + 3], gd[6 * i + 4], gd[6 * i + 5]};
}

static void fixture_close(loss_fixture *lf)
{
    for (int l = 0; l < VN_YOLO_LEVELS; l++) vn_tensor_free(lf->p[l]);
    free(lf->gts);
    vn_st_close(lf->f);
}

START_TEST(test_assignment)
{
    loss_fixture lf;
    fixture_open(&lf, loss_cases[_i], false);
    vn_yolo_loss_params p;
    vn_yolo_loss_params_default(&p);
    vn_yolo_assignment as;
    vn_error err = {0};
    ck_assert_msg(vn_yolo_assign(lf.p, lf.nc, lf.reg_max, lf.gts, lf.n_gt, &p, &as, &err) == VN_OK,
                  "%s", err.msg);
    int64_t n = as.n_images * as.n_anchors;
    const vn_st_entry *fg = vn_st_find(lf.f, "fg"), *gi = vn_st_find(lf.f, "gt_index");
    ck_assert(fg && gi && fg->numel == n && gi->numel == n);
    int64_t n_fg = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(as.fg[i] == ((const uint8_t *)fg->data)[i], "%s: anchor %lld: fg %d, want %d",
                      loss_cases[_i], (long long)i, as.fg[i], ((const uint8_t *)fg->data)[i]);
        ck_assert_msg(as.gt_index[i] == ((const int32_t *)gi->data)[i],
                      "%s: anchor %lld assigned gt %d, want %d", loss_cases[_i], (long long)i,
                      as.gt_index[i], ((const int32_t *)gi->data)[i]);
        n_fg += as.fg[i];
    }
    ck_assert_int_eq(n_fg, atoi(vn_st_meta(lf.f, "n_fg")));
    ck_assert_msg(vn_test_close("target scores", as.score,
                                vn_test_f32(lf.f, "target_scores", n * lf.nc), n * lf.nc, 1e-6, 1e-5),
                  "target scores differ");
    const float *tb = vn_test_f32(lf.f, "target_boxes", n * 4);
    for (int64_t i = 0; i < n; i++)
        if (as.fg[i])
            ck_assert_msg(vn_test_close("target box", as.box + 4 * i, tb + 4 * i, 4, 1e-5, 1e-6),
                          "target box of anchor %lld differs", (long long)i);
    fprintf(stderr, "%s: %lld foreground anchors of %lld, score sum %.6f\n", loss_cases[_i],
            (long long)n_fg, (long long)n, as.score_sum);
    vn_yolo_assignment_free(&as);
    fixture_close(&lf);
}
END_TEST

START_TEST(test_loss_and_gradients)
{
    loss_fixture lf;
    fixture_open(&lf, loss_cases[_i], true);
    vn_yolo_loss_params p;
    vn_yolo_loss_params_default(&p);
    vn_ctx *ctx = vn_ctx_create();
    double parts[3];
    vn_tensor *loss = vn_yolo_loss(ctx, lf.p, lf.nc, lf.reg_max, lf.gts, lf.n_gt, &p, parts);
    ck_assert_msg(loss != NULL, "%s", vn_ctx_error(ctx));
    const float *want = vn_test_f32(lf.f, "parts", 3);
    float got[3] = {(float)parts[0], (float)parts[1], (float)parts[2]};
    fprintf(stderr, "%s: box %.6f cls %.6f dfl %.6f (PyTorch %.6f %.6f %.6f), loss %.5f (%.5f)\n",
            loss_cases[_i], parts[0], parts[1], parts[2], want[0], want[1], want[2],
            loss->data[0], vn_test_f32(lf.f, "loss", 1)[0]);
    ck_assert_msg(vn_test_close("parts", got, want, 3, 0, 1e-5), "loss terms differ");
    ck_assert_msg(vn_test_close("loss", loss->data, vn_test_f32(lf.f, "loss", 1), 1, 0, 1e-5),
                  "loss differs");
    ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
    for (int l = 0; l < VN_YOLO_LEVELS; l++) {
        char k[8];
        snprintf(k, sizeof k, "dp%d", l);
        const float *dw = vn_test_f32(lf.f, k, lf.p[l]->numel);
        double mx = 0;
        for (int64_t i = 0; i < lf.p[l]->numel; i++) mx = fabs(dw[i]) > mx ? fabs(dw[i]) : mx;
        ck_assert_msg(vn_test_close(k, lf.p[l]->grad, dw, lf.p[l]->numel, 1e-5 * mx, 1e-4),
                      "%s: gradient %s differs", loss_cases[_i], k);
    }
    vn_ctx_destroy(ctx);
    fixture_close(&lf);
}
END_TEST

/* Finite differences with the assignment held fixed (it is not differentiated). */
static vn_tensor *loss_fwd(vn_ctx *ctx, vn_tensor *const *in, void *user)
{
    return vn_detect_loss(ctx, VN_YOLO_LEVELS, in, user, NULL);
}

START_TEST(test_gradcheck_fixed_targets)
{
    loss_fixture lf;
    fixture_open(&lf, "basic", true);
    vn_yolo_loss_params p;
    vn_yolo_loss_params_default(&p);
    vn_yolo_assignment as;
    ck_assert_int_eq(vn_yolo_assign(lf.p, lf.nc, lf.reg_max, lf.gts, lf.n_gt, &p, &as, NULL), VN_OK);
    vn_detect_targets t = {as.n_anchors, lf.nc, lf.reg_max, as.fg, as.box, as.score, as.anchor,
                           as.score_sum, p.box, p.cls, p.dfl};
    /* The loss is a sum of ~1e2; its float32 rounding limits the differences' precision. */
    VN_CHECK_GRAD("detect_loss", loss_fwd, VN_YOLO_LEVELS, lf.p, &t, 1e-2, 1e-2);
    vn_yolo_assignment_free(&as);
    fixture_close(&lf);
}
END_TEST

/* No gts at all: every anchor is background, only the class term remains. */
START_TEST(test_no_boxes)
{
    loss_fixture lf;
    fixture_open(&lf, "basic", true);
    vn_yolo_loss_params p;
    vn_yolo_loss_params_default(&p);
    vn_ctx *ctx = vn_ctx_create();
    double parts[3];
    vn_tensor *loss = vn_yolo_loss(ctx, lf.p, lf.nc, lf.reg_max, NULL, 0, &p, parts);
    ck_assert_msg(loss != NULL, "%s", vn_ctx_error(ctx));
    ck_assert(parts[0] == 0.0 && parts[2] == 0.0 && parts[1] > 0.0);
    /* BCE against zero targets, summed, / max(0, 1), gain 0.5, times N. */
    double want = 0;
    int r = lf.reg_max;
    for (int l = 0; l < VN_YOLO_LEVELS; l++)
        for (int64_t i = 0; i < lf.p[l]->numel; i++)
            if (i % (4 * r + lf.nc) >= 4 * r) {
                double x = lf.p[l]->data[i];
                want += (x > 0 ? x : 0) + log1p(exp(-fabs(x)));
            }
    ck_assert_double_eq_tol(parts[1], 0.5 * want, 1e-9 * want);
    ck_assert_int_eq(vn_backward(ctx, loss), VN_OK);
    ck_assert_float_eq(lf.p[0]->grad[0], 0.0f); /* a distribution logit */
    vn_ctx_destroy(ctx);
    fixture_close(&lf);
}
END_TEST

START_TEST(test_errors)
{
    loss_fixture lf;
    fixture_open(&lf, "basic", false);
    vn_yolo_loss_params p;
    vn_yolo_loss_params_default(&p);
    vn_ctx *ctx = vn_ctx_create();
    vn_yolo_gt bad[2] = {{0, 7, 1, 1, 5, 5}, {9, 0, 1, 1, 5, 5}};
    ck_assert_ptr_null(vn_yolo_loss(ctx, lf.p, lf.nc, lf.reg_max, bad, 1, &p, NULL));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "class 7"), "%s", vn_ctx_error(ctx));
    vn_ctx_reset(ctx);
    ck_assert_ptr_null(vn_yolo_loss(ctx, lf.p, lf.nc, lf.reg_max, bad + 1, 1, &p, NULL));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "image 9"), "%s", vn_ctx_error(ctx));
    vn_ctx_reset(ctx);
    ck_assert_ptr_null(vn_yolo_loss(ctx, lf.p, lf.nc + 1, lf.reg_max, NULL, 0, &p, NULL));
    ck_assert_msg(strstr(vn_ctx_error(ctx), "expected [N, H, W"), "%s", vn_ctx_error(ctx));
    vn_ctx_destroy(ctx);
    fixture_close(&lf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("yolo_loss");
    TCase *tc = tcase_create("loss");
    tcase_add_loop_test(tc, test_assignment, 0, N_LOSS_CASES);
    tcase_add_loop_test(tc, test_loss_and_gradients, 0, N_LOSS_CASES);
    tcase_add_test(tc, test_gradcheck_fixed_targets);
    tcase_add_test(tc, test_no_boxes);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }
